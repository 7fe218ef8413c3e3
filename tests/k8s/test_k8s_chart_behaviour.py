"""What the chart renders, setting by setting: serving, GPUs, jobs, auth, storage, network, monitoring."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess

import pytest
import yaml

from tests.k8s import chart_tools as ct
from tests.k8s import manifest_checks as mc
from tests.k8s.conftest import by_kind, one

pytestmark = pytest.mark.k8s
FULL = "dojo-raydojo"  # release "dojo" -> resource prefix


def ray_pods(docs):
    """(resource, where, pod spec) of every Ray pod (not job submitters)."""
    return [(d, w, p) for d in docs for w, p, _ in mc.pod_specs(d)
            if d["kind"] in ("RayCluster", "RayService", "RayJob") and "submitter" not in w]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


# ----------------------------------------------------------------------------- serving


def test_serve_config_is_the_local_config_verbatim(render_set):
    svc = one(render_set("default")["docs"], "RayService")
    assert svc["spec"]["serveConfigV2"].rstrip("\n") == ct.SERVE_CONFIG.read_text().rstrip("\n")
    assert yaml.safe_load(svc["spec"]["serveConfigV2"]) == yaml.safe_load(ct.SERVE_CONFIG.read_text())


def test_serve_config_validates_with_ray_serve_schema():
    from ray.serve.schema import ServeDeploySchema

    cfg = ServeDeploySchema.model_validate(yaml.safe_load(ct.SERVE_CONFIG.read_text()))
    names = [d.name for d in cfg.applications[0].deployments]
    assert set(names) <= {"DojoIngress", "ASRModel", "ExplainModel", "EmbedModel"} and "DojoIngress" in names
    assert cfg.applications[0].import_path == "services.serve.app:build_app"
    # the minimum replicas fit a 2-CPU machine (make run / serve run locally)
    cpus = sum(d.ray_actor_options.num_cpus * d.autoscaling_config["min_replicas"]
               for d in cfg.applications[0].deployments)
    assert cpus <= 1.5


def test_serve_config_names_only_deployments_the_app_can_bind():
    """Serve refuses a `deployments:` entry for a deployment the application does not have: every entry
    names the ingress or a model deployment defined by an installed capability module."""
    import importlib

    from ray.serve import Deployment
    from ray.serve._private.build_app import build_app as build

    from services.serve import app as serve_app

    app = yaml.safe_load(ct.SERVE_CONFIG.read_text())["applications"][0]
    assert app["import_path"] == "services.serve.app:build_app"
    # the real app, ingress only (model deployments need checkpoints their own issues produce)
    args = {**app["args"], **{k: None for k in ("asr_checkpoint", "explain_checkpoint", "embed_checkpoint")}}
    built = build(serve_app.build_app(args), name=app["name"])
    assert built.ingress_deployment_name == "DojoIngress"
    available = {d.name for d in built.deployments}
    for module, _ in serve_app.CAPABILITIES.values():
        if serve_app._installed(module):
            mod = importlib.import_module(module)
            available |= {v.name for v in vars(mod).values() if isinstance(v, Deployment)}
    assert {d["name"] for d in app["deployments"]} <= available


def test_deployment_overrides_change_only_what_they_name(render_set):
    r = render_set("ci")
    expected = yaml.safe_load(ct.SERVE_CONFIG.read_text())
    overrides = r["values"]["serve"]["deploymentOverrides"]
    for d in expected["applications"][0]["deployments"]:
        ct._deep_merge(d, copy.deepcopy(overrides.get(d["name"], {})))
    got = yaml.safe_load(one(r["docs"], "RayService")["spec"]["serveConfigV2"])
    assert got == expected
    assert got != yaml.safe_load(ct.SERVE_CONFIG.read_text())


def test_unknown_deployment_override_fails_clearly(chart_copy):
    import helm_python

    with pytest.raises(helm_python.HelmError, match='unknown deployment "ASR".*has DojoIngress'):
        ct.render(chart_copy, {"serve": {"deploymentOverrides": {"ASR": {"num_replicas": 2}}}})


def test_gpu_values_serve_the_models_committed_in_the_image(render_set):
    """values-gpu.yaml points the checkpoints at deploy/models inside the image (Dockerfile.gpu copies
    deploy/ to /home/ray/raydojo); only those arguments change."""
    import re

    got = yaml.safe_load(one(render_set("gpu-values")["docs"], "RayService")["spec"]["serveConfigV2"])
    expected = yaml.safe_load(ct.SERVE_CONFIG.read_text())
    args = got["applications"][0]["args"]
    workdir = re.search(r"^WORKDIR (\S+raydojo)$", (ct.REPO / "Dockerfile.gpu").read_text(), re.M).group(1)
    for key, sub in (("asr_checkpoint", "asr"), ("explain_checkpoint", "explain"),
                     ("embed_checkpoint", "metric/triplet-mnist")):
        assert args[key] == f"{workdir}/deploy/models/{sub}"
        assert (ct.REPO / "deploy" / "models" / sub / ("model.pt" if sub != "explain" else "result.json")).exists()
        expected["applications"][0]["args"][key] = args[key]
    got["applications"][0]["deployments"] = expected["applications"][0]["deployments"]  # GPU overrides aside
    assert got == expected


def test_unknown_app_argument_fails_clearly(chart_copy):
    import helm_python

    with pytest.raises(helm_python.HelmError, match='unknown argument "asr_model".*asr_checkpoint'):
        ct.render(chart_copy, {"serve": {"appArgs": {"asr_model": "x"}}})


def test_raycluster_instead_of_rayservice_when_serving_is_off(render_set):
    on, off = render_set("default")["docs"], render_set("raycluster-shared-jobs")["docs"]
    assert by_kind(on, "RayService") and not by_kind(on, "RayCluster")
    assert by_kind(off, "RayCluster") and not by_kind(off, "RayService")
    assert one(off, "RayCluster")["metadata"]["name"] == FULL
    # no Serve data plane, no API-key Secret
    assert not [s for s in by_kind(off, "Secret") if "api-keys" in s["metadata"]["name"]]


# ----------------------------------------------------------------------------- GPUs


def test_gpu_worker_groups(render_set):
    docs = render_set("ci")["docs"]
    values = render_set("ci")["values"]["cluster"]["gpuWorkerGroups"]
    svc = one(docs, "RayService")["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in svc["workerGroupSpecs"]}
    assert set(groups) == {"cpu"} | {g["name"] for g in values}
    for v in values:
        g = groups[v["name"]]
        pod = g["template"]["spec"]
        c = pod["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == v["gpus"] == c["resources"]["requests"]["nvidia.com/gpu"]
        assert g["rayStartParams"]["num-gpus"] == str(v["gpus"])
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert (g["minReplicas"], g["replicas"], g["maxReplicas"]) == (v["minReplicas"], v["replicas"], v["maxReplicas"])
    default_affinity = groups["gpu"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = default_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {t["matchExpressions"][0]["key"] for t in terms}
    assert "nvidia.com/gpu.present" in keys and "cloud.google.com/gke-accelerator" in keys
    custom = groups["gpu-a100x4"]["template"]["spec"]
    assert custom["affinity"] == {}
    assert custom["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert {"key": "spot", "operator": "Exists", "effect": "NoSchedule"} in custom["tolerations"]
    # CPU workers and the head never ask for GPUs
    for c in [svc["headGroupSpec"]] + [groups["cpu"]]:
        assert "nvidia.com/gpu" not in json.dumps(c["template"]["spec"]["containers"][0]["resources"])


def test_default_install_has_no_gpu_groups_and_gpu_values_add_one(render_set):
    groups = lambda docs: [g["groupName"] for g in one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]]  # noqa: E731
    assert groups(render_set("default")["docs"]) == ["cpu"]
    assert groups(render_set("gpu-values")["docs"]) == ["cpu", "gpu"]


# ----------------------------------------------------------------------------- jobs


def _job_specs():
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(ct.JOB_SPECS.glob("*.yaml"))}


def test_job_defaults_equal_the_ray_job_specs(chart_copy):
    specs = _job_specs()
    values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
    assert set(specs) == set(values["jobs"]), "deploy/jobs and values.jobs list different jobs"
    assert [n for n, j in values["jobs"].items() if j["enabled"]] == ["a3c"]
    docs = ct.render(chart_copy, {"jobs": {n: {"enabled": True} for n in specs}})["docs"]
    jobs = {j["metadata"]["labels"]["raydojo.io/job"]: j for j in by_kind(docs, "RayJob")}
    assert set(jobs) == set(specs)
    for name, spec in specs.items():
        assert jobs[name]["metadata"]["name"] == f"{FULL}-{name}"
        assert jobs[name]["spec"]["entrypoint"] == f"{spec['entrypoint']} --run-dir /mnt/dojo/runs/{name}"
        assert jobs[name]["spec"]["entrypointNumCpus"] == spec["entrypoint_num_cpus"]


def test_job_entrypoints_quote_and_format_arguments(render_set):
    jobs = {j["metadata"]["labels"]["raydojo.io/job"]: j for j in by_kind(render_set("ci")["docs"], "RayJob")}
    assert jobs["asr"]["spec"]["entrypoint"] == (
        "dojo asr train --auto-resume --note 'two words' --voices en-us en-gb --run-dir /mnt/dojo/runs/asr")
    a3c = jobs["a3c"]["spec"]["entrypoint"]
    assert "--max-frames 2000000 " in a3c and "e+" not in a3c  # no scientific notation
    assert " --lstm " in a3c and "--ps-gpus 0.5" in a3c
    assert jobs["explain"]["spec"]["entrypoint"].endswith("--run-dir /mnt/dojo/models/explain-latest")


def test_jobs_auto_resume_so_that_a_retry_goes_on_from_its_checkpoints(chart_copy):
    docs = ct.render(chart_copy, {"jobs": {"asr": {"enabled": True, "autoResume": False}}})["docs"]
    jobs = {j["metadata"]["labels"]["raydojo.io/job"]: j["spec"] for j in by_kind(docs, "RayJob")}
    assert jobs["a3c"]["entrypoint"].startswith("dojo a3c train --auto-resume ") and jobs["a3c"]["backoffLimit"] == 2
    assert "--auto-resume" not in jobs["asr"]["entrypoint"]  # a job can turn it off
    docs = ct.render(chart_copy, {"jobDefaults": {"autoResume": False}})["docs"]
    assert "--auto-resume" not in one(docs, "RayJob")["spec"]["entrypoint"]


def test_jobs_get_their_own_cluster_with_overrides(render_set):
    docs = render_set("ci")["docs"]
    jobs = {j["metadata"]["labels"]["raydojo.io/job"]: j["spec"] for j in by_kind(docs, "RayJob")}
    gan = jobs["gan"]
    assert [g["groupName"] for g in gan["rayClusterSpec"]["workerGroupSpecs"]] == ["gpu", "gpu-a100x4"]
    assert yaml.safe_load(gan["runtimeEnvYAML"]) == {"env_vars": {"DOJO_SWEEP_NOTE": "ci"}}
    assert jobs["maml"]["ttlSecondsAfterFinished"] == 60 and jobs["a3c"]["ttlSecondsAfterFinished"] == 600
    for spec in jobs.values():
        assert spec["shutdownAfterJobFinishes"] is True and "clusterSelector" not in spec
        assert spec["activeDeadlineSeconds"] == 86400 and spec["backoffLimit"] == 1
        assert spec["submitterPodTemplate"]["spec"]["containers"][0]["image"].endswith(":0.1.0-gpu-ci")


def test_shared_jobs_select_the_chart_cluster(render_set):
    docs = render_set("raycluster-shared-jobs")["docs"]
    cluster = one(docs, "RayCluster")["metadata"]["name"]
    jobs = by_kind(docs, "RayJob")
    assert len(jobs) == 2
    for j in jobs:
        assert j["spec"]["clusterSelector"] == {"ray.io/cluster": cluster}
        assert "rayClusterSpec" not in j["spec"] and j["spec"]["shutdownAfterJobFinishes"] is False


# ----------------------------------------------------------------------------- auth, API keys, storage


def test_token_auth_on_every_cluster_with_one_generated_secret(render_set):
    docs = render_set("ci")["docs"]
    secret = one(docs, "Secret", f"{FULL}-ray-token")
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    assert len(token) >= 32 and token.isalnum()
    clusters = [c for d in docs for c in mc.ray_cluster_specs(d)]
    assert len(clusters) == 6  # the Serve cluster and five job clusters
    for c in clusters:
        assert c["authOptions"] == {"mode": "token", "secretName": f"{FULL}-ray-token"}
        assert c["rayVersion"] == "2.60.0"


def test_existing_secrets_and_claim_are_used_not_created(render_set):
    docs = render_set("existing-secrets-and-claim")["docs"]
    assert not by_kind(docs, "Secret") and not by_kind(docs, "PersistentVolumeClaim")
    svc = one(docs, "RayService")["spec"]["rayClusterConfig"]
    assert svc["authOptions"]["secretName"] == "my-ray-token"
    head = svc["headGroupSpec"]["template"]["spec"]
    assert env_of(head["containers"][0])["DOJO_SERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-api-keys", "key": "api-keys"}
    assert {"name": "dojo-storage", "persistentVolumeClaim": {"claimName": "shared-models"}} in head["volumes"]


def test_auth_off_renders_no_auth(render_set):
    docs = render_set("auth-and-apikeys-off")["docs"]
    assert not by_kind(docs, "Secret")
    for d in docs:
        for c in mc.ray_cluster_specs(d):
            assert "authOptions" not in c
    assert all("DOJO_SERVE_API_KEYS" not in env_of(p["containers"][0]) for _, _, p in ray_pods(docs))


def test_api_keys_reach_only_the_serve_cluster(render_set):
    docs = render_set("default")["docs"]
    assert base64.b64decode(one(docs, "Secret", f"{FULL}-serve-api-keys")["data"]["api-keys"])
    for d, where, pod in ray_pods(docs):
        has = "DOJO_SERVE_API_KEYS" in env_of(pod["containers"][0])
        assert has == (d["kind"] == "RayService"), (mc.kn(d), where)


def test_storage_pvc_is_mounted_in_every_ray_pod(render_set):
    docs = render_set("default")["docs"]
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pods = ray_pods(docs)
    assert len(pods) == 4  # Serve head + cpu, A3C job head + cpu
    for _, _, pod in pods:
        c = pod["containers"][0]
        assert {"name": "dojo-storage", "mountPath": "/mnt/dojo"} in c["volumeMounts"]
        assert env_of(c)["DOJO_STORAGE_ROOT"]["value"] == "/mnt/dojo"
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols[mounts["/tmp/ray"]]["emptyDir"]["sizeLimit"] == "20Gi"
        assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def test_storage_uri_replaces_the_pvc(render_set):
    docs = render_set("storage-uri")["docs"]
    assert not by_kind(docs, "PersistentVolumeClaim")
    for _, _, pod in ray_pods(docs):
        assert env_of(pod["containers"][0])["DOJO_STORAGE_ROOT"]["value"] == "s3://dojo-bucket/raydojo"
        assert "dojo-storage" not in {v["name"] for v in pod["volumes"]}
    job = one(docs, "RayJob")
    assert job["spec"]["entrypoint"].endswith("--run-dir s3://dojo-bucket/raydojo/runs/a3c")


# ----------------------------------------------------------------------------- network, monitoring


def _labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_network_policy_covers_every_ray_pod_and_keeps_ray_ports_inside(render_set):
    for name in ("default", "ci"):
        docs = render_set(name)["docs"]
        pol = one(docs, "NetworkPolicy")["spec"]
        sel = dict(pol["podSelector"]["matchLabels"])
        assert sel.pop("ray.io/is-ray-node") == "yes"  # KubeRay labels every Ray pod with it
        for d in docs:
            for group in _pod_templates(d):
                assert _labels_match(sel, group["metadata"]["labels"]), mc.kn(d)
        assert pol["policyTypes"] == ["Ingress"]
        first, *rest = pol["ingress"]
        assert first == {"from": [{"podSelector": {}}]}  # the release namespace, all ports
        for rule in rest:  # everyone else only on named ports, never GCS 6379 or client 10001
            ports = {p["port"] for p in rule["ports"]}
            assert ports & {6379, 10001} == set() and ports
    ci_rules = one(render_set("ci")["docs"], "NetworkPolicy")["spec"]["ingress"]
    assert {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": [{"protocol": "TCP", "port": 8000}]} in ci_rules
    assert any(r.get("ports") == [{"protocol": "TCP", "port": 8265}] for r in ci_rules)
    assert not any(8265 in {p["port"] for p in r.get("ports", [])}
                   for r in one(render_set("default")["docs"], "NetworkPolicy")["spec"]["ingress"])


def _pod_templates(doc):
    spec = doc.get("spec", {})
    for c in mc.ray_cluster_specs(doc):
        yield c["headGroupSpec"]["template"]
        yield from (g["template"] for g in c.get("workerGroupSpecs", []))
    if doc["kind"] == "RayJob":
        yield spec["submitterPodTemplate"]


def test_pod_monitors_scrape_the_ports_the_pods_expose(render_set):
    docs = render_set("ci")["docs"]
    mons = {m["metadata"]["name"]: m["spec"] for m in by_kind(docs, "PodMonitor")}
    assert set(mons) == {f"{FULL}-head", f"{FULL}-worker"}
    svc = one(docs, "RayService")["spec"]["rayClusterConfig"]
    head_ports = {p["name"]: p["containerPort"] for p in svc["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    head_eps = [e["port"] for e in mons[f"{FULL}-head"]["podMetricsEndpoints"]]
    assert {n: head_ports[n] for n in head_eps} == {"metrics": 8080, "as-metrics": 44217, "dash-metrics": 44227}
    for g in svc["workerGroupSpecs"]:
        ports = {p["name"]: p["containerPort"] for p in g["template"]["spec"]["containers"][0]["ports"]}
        assert ports["metrics"] == 8080
    assert [e["port"] for e in mons[f"{FULL}-worker"]["podMetricsEndpoints"]] == ["metrics"]
    for name, m in mons.items():
        assert m["selector"]["matchLabels"]["ray.io/node-type"] == name.rsplit("-", 1)[1]
        assert m["namespaceSelector"] == {"matchNames": ["dojo"]}
        for e in m["podMetricsEndpoints"]:
            assert e["interval"] == "15s"
            assert {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                    "targetLabel": "ray_io_cluster"} in e["relabelings"]
    labels = by_kind(docs, "PodMonitor")[0]["metadata"]["labels"]
    assert labels["release"] == "prometheus"
    assert not by_kind(render_set("default")["docs"], "PodMonitor")


def test_prometheus_rule_carries_the_shared_alerts(render_set, chart_copy):
    rule = one(render_set("ci")["docs"], "PrometheusRule")
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    shared = yaml.safe_load(ct.ALERT_RULES.read_text())["groups"] if ct.ALERT_RULES.exists() else []
    for g in shared:  # deploy/prometheus/rules.yml, verbatim: the same alerts as a local Prometheus
        assert groups[g["name"]] == g
    own = [r["alert"] for r in groups["raydojo-kubernetes"]["rules"]]
    assert own == ["RayDojoHeadDown", "RayDojoServeReplicaUnhealthy", "RayDojoA3CStalled"]
    assert 'namespace="dojo", ray_io_cluster=~"dojo-raydojo.*"' in groups["raydojo-kubernetes"]["rules"][0]["expr"]
    off = ct.render(chart_copy, {"serve": {"enabled": False}, "monitoring": {"prometheusRule": {"enabled": True}}})
    own_off = [r["alert"] for g in one(off["docs"], "PrometheusRule")["spec"]["groups"] for r in g["rules"]
               if g["name"] == "raydojo-kubernetes"]
    assert own_off == ["RayDojoHeadDown"]  # no Serve, no Serve alert


def test_prometheus_rules_pass_promtool(render_set, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus, `make system-packages`)")
    rule = one(render_set("ci")["docs"], "PrometheusRule")
    n = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump(rule["spec"]))
    p = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and f"SUCCESS: {n} rules found" in p.stdout, p.stdout + p.stderr


def test_shipped_dashboards_become_configmaps(render_set):
    """Whatever deploy/grafana holds (synced into the chart; possibly nothing yet) ships, one ConfigMap each."""
    files = sorted((ct.CHART / "dashboards").glob("*.json"))
    cms = {c["metadata"]["name"]: c for c in by_kind(render_set("default")["docs"], "ConfigMap")}
    assert set(cms) == {f"{FULL}-dashboard-{f.stem.lower().replace('_', '-')}" for f in files}
    for f in files:
        cm = cms[f"{FULL}-dashboard-{f.stem.lower().replace('_', '-')}"]
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_dashboards_ship_as_sidecar_configmaps(chart_copy, tmp_path):
    chart = tmp_path / "raydojo"
    shutil.copytree(chart_copy, chart)
    for old in (chart / "dashboards").glob("*.json"):
        old.unlink()
    assert not by_kind(ct.render(chart, {})["docs"], "ConfigMap")  # no dashboards: renders fine
    boards = {"ray_overview.json": {"title": "Ray overview", "panels": []},
              "a3c.json": {"title": "A3C", "panels": [{"type": "timeseries"}]}}
    for fname, body in boards.items():
        (chart / "dashboards" / fname).write_text(json.dumps(body, indent=2))
    values = ct.load_values(ct.CHART / "ci" / "ci-values.yaml")
    cms = {c["metadata"]["name"]: c for c in by_kind(ct.render(chart, values)["docs"], "ConfigMap")}
    assert set(cms) == {f"{FULL}-dashboard-ray-overview", f"{FULL}-dashboard-a3c"}
    for cm in cms.values():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "raydojo"
        assert cm["metadata"]["namespace"] == "prometheus-system"
        ((fname, text),) = cm["data"].items()
        assert json.loads(text) == boards[fname]
        mc.validate_builtin(cm)
    off = ct.render(chart, {"monitoring": {"dashboards": {"enabled": False}}})["docs"]
    assert not by_kind(off, "ConfigMap")


# ----------------------------------------------------------------------------- notes, cross-field checks


def test_notes_name_what_the_release_created(render_set):
    r = render_set("default")
    notes, docs = r["notes"], r["docs"]
    assert f"port-forward svc/{FULL}-head-svc 8265:8265" in notes  # KubeRay's head Service of the RayService
    assert f"port-forward svc/{FULL}-serve-svc 8000:8000" in notes
    for s in by_kind(docs, "Secret"):
        assert f"get secret {s['metadata']['name']} " in notes
    assert "ray job submit --address http://127.0.0.1:8265 --entrypoint-num-cpus 1 -- dojo a3c train" in notes
    assert 'curl -H "X-API-Key: $DOJO_API_KEY"' in notes
    off = render_set("raycluster-shared-jobs")["notes"]
    assert "get raycluster dojo-raydojo" in off and "serve-svc" not in off


@pytest.mark.parametrize("overrides, message", [
    ({"jobDefaults": {"cluster": "shared"}}, "jobs.a3c.cluster=shared needs serve.enabled=false"),
    ({"cluster": {"cpuWorkers": {"replicas": 9}}}, r"cluster.cpuWorkers: need minReplicas <= replicas <= maxReplicas"),
    ({"storage": {"type": "uri"}}, "storage.uri must be set"),
    ({"storage": {"type": "uri", "uri": "bucket/raydojo"}}, "must be a URI with a scheme"),
    ({"cluster": {"gpuWorkerGroups": [{"name": "cpu", "gpus": 1, "replicas": 0, "minReplicas": 0,
                                       "maxReplicas": 1, "resources": {"requests": {}, "limits": {}}}]}},
     'worker group name "cpu" is used twice'),
    ({"fullnameOverride": "1dojo"}, "must start with a lowercase letter"),
    ({"fullnameOverride": "a-very-long-release-name-for-raydojo-xyz", "jobs": {"explain": {"enabled": True}}},
     "has 48 characters, KubeRay allows 47"),
])
def test_cross_field_mistakes_fail_with_one_clear_line(chart_copy, overrides, message):
    import helm_python

    with pytest.raises(helm_python.HelmError, match=message):
        ct.render(chart_copy, overrides)


def test_release_name_becomes_the_prefix(chart_copy):
    docs = ct.render(chart_copy, {}, release="raydojo", namespace="ml")["docs"]
    assert one(docs, "RayService")["metadata"]["name"] == "raydojo"
    assert one(docs, "RayJob")["metadata"]["name"] == "raydojo-a3c"


def test_chart_metadata_pins_optional_dependencies():
    chart = yaml.safe_load((ct.CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert deps["kuberay-operator"]["version"] == "1.7.0"
    assert deps["nvidia-device-plugin"]["version"] == "0.20.0"
    for name, d in deps.items():
        assert d["condition"] == f"{name}.enabled" and d["repository"].startswith("https://")
    values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
    assert values["kuberay-operator"]["enabled"] is True and values["nvidia-device-plugin"]["enabled"] is False
    assert chart["kubeVersion"] == f">={mc.KUBE_VERSION}.0-0"
    assert not (ct.CHART / "charts").exists(), "subcharts are fetched by `helm dependency update`, not vendored"


def test_every_kubernetes_resource_is_labelled_for_the_release(render_set):
    for d in render_set("ci")["docs"]:
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "dojo" and labels["team"] == "ml-platform", mc.kn(d)


def test_a3c_entrypoints_parse_with_the_real_cli(render_set):
    """Every A3C command the chart renders (RayJobs, NOTES) is accepted by `dojo a3c train`'s own parser."""
    import shlex

    from services.a3c.train import TrainArgs
    from services.common.config import parse

    commands = []
    for name in ("default", "gpu-values", "ci", "storage-uri"):
        r = render_set(name)
        commands += [j["spec"]["entrypoint"] for j in by_kind(r["docs"], "RayJob")
                     if j["metadata"]["labels"]["raydojo.io/job"] == "a3c"]
        commands += [line.split(" -- ", 1)[1] for line in r["notes"].splitlines() if "ray job submit" in line]
    assert len(commands) == 8
    for cmd in commands:
        argv = shlex.split(cmd)
        assert argv[:3] == ["dojo", "a3c", "train"]
        args = parse(TrainArgs, argv[3:], "dojo a3c train")  # exits 2 on a bad flag or value
        assert args.run_dir.split("/runs/")[0] in ("/mnt/dojo", "s3://dojo-bucket/raydojo")


def _cpus(q) -> float:
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


@pytest.mark.parametrize("name", ["default", "gpu-values", "ci"])
def test_a3c_job_fits_its_cluster_at_full_scale(render_set, name):
    """The job's Ray resource demand (workers x worker CPUs + driver, parameter-server GPUs) fits the
    most its autoscaled cluster can offer, or the job would wait forever."""
    import shlex

    from services.a3c.train import TrainArgs
    from services.common.config import parse

    job = next(j for j in by_kind(render_set(name)["docs"], "RayJob") if j["metadata"]["name"].endswith("-a3c"))
    args = parse(TrainArgs, shlex.split(job["spec"]["entrypoint"])[3:], "dojo a3c train")
    cpu_need = args.workers * args.worker_cpus + job["spec"]["entrypointNumCpus"]
    cluster = job["spec"]["rayClusterSpec"]
    cpu_cap = _cpus(cluster["headGroupSpec"]["rayStartParams"]["num-cpus"])
    gpu_cap = 0
    for g in cluster["workerGroupSpecs"]:
        limit = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        cpu_cap += g["maxReplicas"] * _cpus(limit["cpu"])
        gpu_cap += g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", "0"))
    assert cpu_need <= cpu_cap and args.ps_gpus <= gpu_cap, (cpu_need, cpu_cap, args.ps_gpus, gpu_cap)


def test_gpu_values_keep_host_path_pods_out_of_the_restricted_namespace():
    """The device plugin, GFD and NFD mount host paths; the release namespace is labelled restricted."""
    plugin = yaml.safe_load((ct.CHART / "values-gpu.yaml").read_text())["nvidia-device-plugin"]
    assert plugin["enabled"] and plugin["namespaceOverride"] == "kube-system"
    assert plugin["gfd"] == {"enabled": True, "namespaceOverride": "kube-system"}
    assert plugin["nfd"]["namespaceOverride"] == "kube-system"
