"""k8s/ for users without Helm: `kubectl kustomize` of the base and every overlay renders and validates."""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest
import yaml

from tests.k8s import chart_tools as ct
from tests.k8s import manifest_checks as mc
from tests.k8s.conftest import by_kind, one

pytestmark = pytest.mark.k8s
TARGETS = ["base", "overlays/cpu", "overlays/gpu", "nvidia-device-plugin"]


@functools.cache
def _kustomize(target: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    p = subprocess.run([kubectl, "kustomize", str(ct.K8S / target)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return tuple(d for d in yaml.safe_load_all(p.stdout) if d)


def test_every_overlay_is_listed():
    overlays = {p.parent.relative_to(ct.K8S).as_posix() for p in ct.K8S.rglob("kustomization.yaml")}
    assert overlays == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates(target, crd_schemas):
    docs = _kustomize(target)
    assert docs
    for d in docs:
        if mc.is_custom(d):
            mc.validate_custom(d, crd_schemas)
        else:
            mc.validate_builtin(d, mc.KUBE_VERSION)
        assert not mc.kuberay_violations(d), mc.kuberay_violations(d)


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_restricted_and_bounded(target):
    for d in _kustomize(target):
        problems = mc.pod_violations(d)
        if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "nvidia-device-plugin-daemonset":
            # exactly two known exceptions: a hostPath to the kubelet's socket directory, written as root
            assert d["metadata"]["namespace"] == "kube-system"
            where = f"{mc.kn(d)} spec.template"
            assert sorted(problems) == [
                f"{where}: container nvidia-device-plugin-ctr may run as root (runAsNonRoot)",
                f"{where}: volume kubelet-device-plugins-dir uses ['hostPath']"]
        else:
            assert problems == []


@pytest.mark.parametrize("target", ["base", "overlays/cpu", "overlays/gpu"])
def test_namespace_is_restricted_and_holds_everything_else(target):
    docs = _kustomize(target)
    ns = one(list(docs), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for d in docs:
        if d["kind"] not in ("Namespace",) and d["metadata"].get("namespace") != "kube-system":
            assert d["metadata"]["namespace"] == "raydojo", mc.kn(d)
    assert not by_kind(list(docs), "ConfigMap"), "the serve-config ConfigMap is local-only"


@pytest.mark.parametrize("target", ["base", "overlays/cpu", "overlays/gpu"])
def test_serve_config_is_the_local_config(target):
    svc = one(list(_kustomize(target)), "RayService")
    assert svc["spec"]["serveConfigV2"] == ct.SERVE_CONFIG.read_text()


def test_example_job_is_the_deploy_jobs_spec():
    spec = yaml.safe_load((ct.JOB_SPECS / "a3c.yaml").read_text())
    job = one(list(_kustomize("base")), "RayJob")
    assert job["spec"]["entrypoint"] == f"{spec['entrypoint']} --run-dir /mnt/dojo/runs/a3c"
    assert job["spec"]["entrypointNumCpus"] == spec["entrypoint_num_cpus"]


def test_gpu_overlay_matches_the_charts_gpu_values(render_set):
    docs = list(_kustomize("overlays/gpu"))
    chart = render_set("gpu-values")["docs"]
    assert one(docs, "RayJob")["spec"]["entrypoint"] == one(chart, "RayJob")["spec"]["entrypoint"]
    k_groups = {g["groupName"]: g for g in one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    c_groups = {g["groupName"]: g for g in one(chart, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert set(k_groups) == set(c_groups) == {"cpu", "gpu"}
    for key in ("minReplicas", "maxReplicas", "rayStartParams"):
        assert k_groups["gpu"][key] == c_groups["gpu"][key], key
    k_pod, c_pod = k_groups["gpu"]["template"]["spec"], c_groups["gpu"]["template"]["spec"]
    assert k_pod["tolerations"] == c_pod["tolerations"] and k_pod["affinity"] == c_pod["affinity"]
    assert k_pod["containers"][0]["resources"] == c_pod["containers"][0]["resources"]
    job_groups = [g["groupName"] for g in one(docs, "RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    assert job_groups == ["cpu", "gpu"]  # the parameter server's GPU (--ps-gpus 1)
    assert not [g for g in one(list(_kustomize("overlays/cpu")), "RayService")["spec"]["rayClusterConfig"][
        "workerGroupSpecs"] if g["groupName"] != "cpu"]


def test_device_plugin_version_matches_the_chart_dependency():
    dep = {d["name"]: d for d in ct.subchart_dependencies()}["nvidia-device-plugin"]
    ds = one(list(_kustomize("nvidia-device-plugin")), "DaemonSet")
    image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"nvcr.io/nvidia/k8s-device-plugin:v{dep['version']}"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ds["spec"]["template"]["spec"][
        "tolerations"]
    assert one(list(_kustomize("overlays/gpu")), "DaemonSet")["metadata"]["namespace"] == "kube-system"


def test_base_mirrors_the_chart_defaults(render_set):
    """The hand-written base and the chart's default render describe the same Serve cluster."""
    k = one(list(_kustomize("base")), "RayService")["spec"]["rayClusterConfig"]
    c = one(render_set("default")["docs"], "RayService")["spec"]["rayClusterConfig"]
    for key in ("rayVersion", "enableInTreeAutoscaling"):
        assert k[key] == c[key]
    assert k["authOptions"]["mode"] == c["authOptions"]["mode"] == "token"
    assert k["headGroupSpec"]["rayStartParams"] == c["headGroupSpec"]["rayStartParams"]
    kh, ch = (x["headGroupSpec"]["template"]["spec"] for x in (k, c))
    assert kh["securityContext"] == ch["securityContext"]
    assert kh["containers"][0]["ports"] == ch["containers"][0]["ports"]
    assert kh["containers"][0]["resources"] == ch["containers"][0]["resources"]
    assert [(g["groupName"], g["minReplicas"], g["maxReplicas"]) for g in k["workerGroupSpecs"]] == [
        (g["groupName"], g["minReplicas"], g["maxReplicas"]) for g in c["workerGroupSpecs"]]
