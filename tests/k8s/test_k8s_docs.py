"""Every command of the Kubernetes docs is exercised as far as it can be without a cluster.

The commands of docs/kubernetes.md (and of the README's "Install on Kubernetes (Helm)" section, once it
is there) are parsed one by one: `helm install` is rendered with exactly its flags and values files, and
every name a later command uses (Services to port-forward, Secrets to read, RayService / RayJob to get)
must exist in that render; `ray job submit` must run the chart's RayJob entrypoint (executed against a
real token-protected Ray in test_k8s_job_submit.py); `curl` must hit the Serve contract's port, header
and health route (answered for real after `serve deploy` of the same config in test_k8s_job_submit.py).
A command no rule knows fails the test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import bash_commands
from tests.k8s import chart_tools as ct
from tests.k8s.conftest import by_kind

pytestmark = pytest.mark.k8s
DOCS = ct.REPO / "docs" / "kubernetes.md"
README = ct.REPO / "README.md"
SECTION = "## Install on Kubernetes (Helm)"


def section(markdown: str, title: str) -> str | None:
    if title not in markdown:
        return None
    rest = markdown.split(title, 1)[1]
    return rest.split("\n## ", 1)[0]


class Cluster:
    """What the documented commands would have created, as far as rendering can tell."""

    def __init__(self, chart_copy: Path):
        self.chart_copy = chart_copy
        self.installs: dict[tuple[str, str], list[dict]] = {}  # (namespace, release) -> docs
        self.namespaces: set[str] = set()
        self.env: set[str] = set()
        self.steps: set[str] = set()

    def docs(self, ns: str) -> list[dict]:
        return [d for (n, _), docs in self.installs.items() if n == ns for d in docs]

    def names(self, ns: str, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in by_kind(self.docs(ns), kind)}

    # -- one handler per command shape
    def run(self, cmd: str) -> None:
        argv = shlex.split(cmd.rstrip("&").strip())
        if argv[:2] == ["docker", "build"]:
            tag = argv[argv.index("-t") + 1]
            assert argv[argv.index("-f") + 1] == "Dockerfile.gpu" and tag == self.default_image()
        elif argv[:2] == ["docker", "push"]:
            assert argv[2] == self.default_image()
        elif argv[:3] == ["helm", "repo", "add"]:
            assert argv[3] == "prometheus-community" and argv[4].startswith("https://")
        elif argv[:2] == ["helm", "install"] and argv[3] == "prometheus-community/kube-prometheus-stack":
            values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
            assert argv[2] == values["monitoring"]["podMonitors"]["labels"]["release"]  # its default selector
            ns = argv[argv.index("-n") + 1]
            peers = values["networkPolicy"]["metricsFrom"]
            assert peers[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == ns
            sets = dict(a.split("=", 1) for a in argv[argv.index("--set"):][1::2])
            assert sets["grafana.sidecar.dashboards.searchNamespace"] == "ALL"  # dashboards live in our namespace
            assert sets["grafana.sidecar.dashboards.folderAnnotation"] == "grafana_folder"  # dashboards.yaml
            self.namespaces.add(ns)
            self.steps.add("monitoring")
        elif argv[:3] == ["helm", "dependency", "update"]:
            assert (ct.REPO / argv[3]).resolve() == ct.CHART and ct.subchart_dependencies()
        elif argv[:3] == ["kubectl", "create", "namespace"]:
            self.namespaces.add(argv[3])
        elif argv[:3] == ["kubectl", "label", "namespace"]:
            assert argv[3] in self.namespaces and argv[4] == "pod-security.kubernetes.io/enforce=restricted"
        elif argv[:2] == ["helm", "install"]:
            self.helm_install(argv[2:])
        elif argv[0] == "kubectl" and "port-forward" in argv:
            self.port_forward(argv)
        elif argv[0] == "kubectl" and argv[3:5] == ["get", "secret"]:
            self.read_secret(argv, cmd)
        elif argv[0] == "kubectl" and argv[3] == "get":
            assert argv[5] in self.names(argv[2], {"rayservice": "RayService", "rayjob": "RayJob",
                                                   "raycluster": "RayCluster"}[argv[4]]), cmd
        elif argv[0] == "export" and "$(" in cmd:
            var = argv[1].split("=", 1)[0]
            self.read_secret(shlex.split(cmd.split("$(", 1)[1].rsplit(")", 1)[0].split("|")[0]), cmd)
            self.env.add(var)
        elif argv[0] == "export":
            name, value = argv[1].split("=", 1)
            assert (name, value) == ("RAY_AUTH_MODE", "token")
            self.env.add(name)
        elif argv[:3] == ["ray", "job", "submit"]:
            self.job_submit(argv)
        elif argv[0] == "curl":
            self.curl(argv)
        elif argv[:2] == ["kubectl", "-n"] and argv[3:6] == ["create", "secret", "generic"]:
            self.manual_secret(argv)
        elif argv[:2] == ["kubectl", "create"] and argv[2] == "-k":
            dep = {d["name"]: d for d in ct.subchart_dependencies()}["kuberay-operator"]
            assert argv[3].endswith(f"ref=v{dep['version']}"), "same KubeRay as the chart"
        elif argv[:2] == ["kubectl", "apply"] and argv[2] == "-k":
            assert (ct.REPO / argv[3] / "kustomization.yaml").exists()  # rendered in test_k8s_kustomize
            self.steps.add("kustomize")
        else:
            raise AssertionError(f"no test covers the documented command: {cmd}")

    def default_image(self) -> str:
        chart = yaml.safe_load((ct.CHART / "Chart.yaml").read_text())
        values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
        return f"{values['image']['repository']}:{chart['appVersion']}-gpu"

    def helm_install(self, args: list[str]) -> None:
        release, chart, rest = args[0], args[1], args[2:]
        assert (ct.REPO / chart).resolve() == ct.CHART
        ns, files, overrides = "default", [], {}
        i = 0
        while i < len(rest):
            flag, val = rest[i], rest[i + 1] if i + 1 < len(rest) else None
            if flag in ("-n", "--namespace"):
                ns = val
            elif flag in ("-f", "--values"):
                files.append(ct.REPO / val)
            elif flag == "--set":
                key, v = val.split("=", 1)
                node = overrides
                *parents, leaf = key.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = yaml.safe_load(v)
            else:
                raise AssertionError(f"helm install flag not understood by the test: {flag}")
            i += 2
        assert ns in self.namespaces, f"namespace {ns} is created before the install"
        out = ct.render(self.chart_copy, ct.load_values(*files, overrides=overrides), release, ns)
        self.installs[(ns, release)] = out["docs"]
        self.steps.add("install")

    def port_forward(self, argv: list[str]) -> None:
        ns = argv[argv.index("-n") + 1]
        target = next(a for a in argv if a.startswith("svc/"))[4:]
        local, remote = next(a for a in argv if re.fullmatch(r"\d+:\d+", a)).split(":")
        if ns == "prometheus-system":
            assert (target, remote) == ("prometheus-grafana", "80") and "monitoring" in self.steps
            self.steps.add("grafana")
            return
        services = {f"{n}-head-svc": "8265" for n in self.names(ns, "RayService") | self.names(ns, "RayCluster")}
        services |= {f"{n}-serve-svc": "8000" for n in self.names(ns, "RayService")}  # KubeRay's Services
        assert services.get(target) == remote, f"{target}:{remote} is not a Service KubeRay makes here"
        self.steps.add(f"port-forward {remote}")

    def read_secret(self, argv: list[str], cmd: str) -> None:
        ns, name = argv[argv.index("-n") + 1], argv[argv.index("secret") + 1]
        key = re.search(r"\{\.data\.([^}]+)\}", cmd).group(1)
        if (ns, name) == ("prometheus-system", "prometheus-grafana"):
            assert key == "admin-password"  # kube-prometheus-stack's Grafana
            return
        secrets = {d["metadata"]["name"]: d for d in by_kind(self.docs(ns), "Secret")}
        assert name in secrets and key in secrets[name]["data"], f"secret {name} key {key} not rendered"

    def job_submit(self, argv: list[str]) -> None:
        assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= self.env, "the token is exported first"
        assert argv[argv.index("--address") + 1] == "http://127.0.0.1:8265" and "port-forward 8265" in self.steps
        entry = argv[argv.index("--") + 1:]
        spec = yaml.safe_load((ct.JOB_SPECS / "a3c.yaml").read_text())
        assert int(argv[argv.index("--entrypoint-num-cpus") + 1]) == spec["entrypoint_num_cpus"]
        assert entry[-2] == "--run-dir" and entry[:-2] == shlex.split(spec["entrypoint"])
        roots = {e["value"] for d in self.docs("raydojo") for e in _ray_env(d) if e["name"] == "DOJO_STORAGE_ROOT"}
        assert any(entry[-1].startswith(r + "/") for r in roots), "run-dir on the storage every pod mounts"
        self.steps.add("job")

    def curl(self, argv: list[str]) -> None:
        contract = yaml.safe_load(ct.SERVE_CONFIG.read_text())
        header = argv[argv.index("-H") + 1]
        assert header == "X-API-Key: $DOJO_API_KEY" and "DOJO_API_KEY" in self.env
        assert "X-API-Key" in ct.SERVE_CONFIG.read_text() and "GET /healthz" in ct.SERVE_CONFIG.read_text()
        url = argv[-1]
        assert url == f"http://127.0.0.1:{contract['http_options']['port']}/healthz"
        assert "port-forward 8000" in self.steps
        self.steps.add("curl")

    def manual_secret(self, argv: list[str]) -> None:
        name, literal = argv[6], argv[7]
        key = literal.split("=", 2)[1]
        base = "\n".join(p.read_text() for p in (ct.K8S / "base").glob("*.yaml"))
        assert f"secretName: {name}" in base or f"name: {name}, key: {key}" in base, f"{name}/{key} unused"
        assert literal.startswith(f"--from-literal={key}=")


def _ray_env(doc):
    from tests.k8s import manifest_checks as mc

    for _, pod, _ in mc.pod_specs(doc):
        for c in pod["containers"]:
            yield from c.get("env", [])


def _check(markdown: str, chart_copy: Path) -> Cluster:
    cluster = Cluster(chart_copy)
    for cmd in bash_commands(markdown):
        cluster.run(cmd)
    return cluster


def test_install_section_of_the_kubernetes_docs(chart_copy):
    text = section(DOCS.read_text(), SECTION)
    assert text, f"{DOCS} lacks {SECTION!r}"
    steps = _check(text, chart_copy).steps
    assert {"install", "port-forward 8265", "job", "port-forward 8000", "curl", "monitoring", "grafana"} <= steps


def test_install_section_uses_the_gpu_values_file():
    cmds = [c for c in bash_commands(section(DOCS.read_text(), SECTION)) if c.startswith("helm install raydojo")]
    assert cmds == ["helm install raydojo helm/raydojo -n raydojo -f helm/raydojo/values-gpu.yaml"]


def test_readme_install_section_when_present(chart_copy):
    text = section(README.read_text(), SECTION) if README.exists() else None
    if text is None:
        pytest.skip(f"README.md has no {SECTION!r} section yet (its text is the one in docs/kubernetes.md)")
    assert {"install", "job", "curl", "grafana"} <= _check(text, chart_copy).steps


def test_every_other_command_of_the_docs(chart_copy):
    text = DOCS.read_text()
    install = section(text, SECTION)
    rest = text.replace(install, "")
    cluster = _check(install, chart_copy)  # later blocks may rely on the install
    for cmd in bash_commands(rest):
        if cmd.startswith(("python tests/k8s/chart_tools.py", "pytest -m k8s")):
            continue  # the tools themselves: test_k8s_chart_values.py runs them
        cluster.run(cmd)
    assert "kustomize" in cluster.steps


def test_unknown_commands_are_not_waved_through(chart_copy):
    with pytest.raises(AssertionError, match="no test covers"):
        Cluster(chart_copy).run("kubectl delete namespace raydojo")
    c = Cluster(chart_copy)
    c.namespaces.add("raydojo")
    c.run("helm install raydojo helm/raydojo -n raydojo")
    with pytest.raises(AssertionError, match="not a Service KubeRay makes"):
        c.run("kubectl -n raydojo port-forward svc/raydojo-dashboard 8265:8265 &")
    with pytest.raises(AssertionError, match="not rendered"):
        c.run("kubectl -n raydojo get secret raydojo-token -o jsonpath='{.data.auth_token}'")
