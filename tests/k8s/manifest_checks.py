"""Offline checks of rendered Kubernetes manifests.

* built-in kinds: `kubernetes-validate --strict` for the chart's minimum Kubernetes version;
* custom resources (RayCluster, RayService, RayJob, PodMonitor, ServiceMonitor, PrometheusRule): the
  CRDs' openAPIV3Schema with jsonschema, after what the API server does first (fill `default:`s, drop
  non-nullable nulls), and strict about unknown fields as `kubectl apply --validate=strict` is;
* the "restricted" Pod Security Standard and requests/limits on every container;
* KubeRay's own admission rules that matter here (name lengths, auth needs rayVersion, replicas).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas"
KUBE_VERSION = "1.30"  # helm/raydojo/Chart.yaml kubeVersion ">=1.30.0-0"
CUSTOM_GROUPS = ("ray.io", "monitoring.coreos.com")


def is_custom(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def kn(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"


# ----------------------------------------------------------------------------- built-in kinds


def validate_builtin(doc: dict[str, Any], version: str = KUBE_VERSION) -> None:
    """Raise AssertionError naming the resource and the problem (kubernetes-validate, strict)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        raise AssertionError(f"{kn(doc)} fails Kubernetes {version} (strict) at {path}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(f"{kn(doc)}: {exc.message}") from None


# ----------------------------------------------------------------------------- custom resources


def _loader():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def crd_schemas(root: Path = SCHEMAS) -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): strict openAPIV3Schema} for every served version of every CRD under root."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(root.rglob("*.yaml")):
        with path.open() as f:
            for crd in yaml.load_all(f, Loader=_loader()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    if v.get("served", True):
                        out[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return out


def _strict(schema: Any) -> Any:
    """Reject unknown fields where the CRD lists its fields (the API server would silently prune them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _apply_defaults(schema: dict[str, Any], inst: Any) -> Any:
    """Fill `default:` values and drop nulls of non-nullable fields, as the API server does."""
    if isinstance(inst, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in inst and inst[name] is None and not sub.get("nullable"):
                del inst[name]
            if name not in inst and "default" in sub:
                inst[name] = copy.deepcopy(sub["default"])
            if name in inst:
                inst[name] = _apply_defaults(sub, inst[name])
    if isinstance(inst, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k in list(inst):
            if k not in schema.get("properties", {}):
                inst[k] = _apply_defaults(schema["additionalProperties"], inst[k])
    if isinstance(inst, list) and isinstance(schema.get("items"), dict):
        inst = [_apply_defaults(schema["items"], i) for i in inst]
    return inst


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_custom(doc: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Raise AssertionError listing every schema violation of one custom resource."""
    import jsonschema

    key = (doc["apiVersion"], doc["kind"])
    if key not in schemas:
        raise AssertionError(f"{kn(doc)}: no CRD schema for {key} under {SCHEMAS}")
    name = doc.get("metadata", {}).get("name", "")
    if not name or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise AssertionError(f"{kn(doc)}: metadata.name {name!r} is not a DNS-1123 subdomain")
    schema = schemas[key]
    inst = _apply_defaults(schema, copy.deepcopy(doc))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(inst), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:10]]
        raise AssertionError(f"{kn(doc)} violates its CRD schema:\n  " + "\n  ".join(lines))


# ----------------------------------------------------------------------------- pods: restricted + resources


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(where, pod spec, injected containers) for every pod a resource creates, KubeRay kinds included.

    Injected containers: the autoscaler sidecar KubeRay adds to a head, as autoscalerOptions configure it.
    """
    kind, spec = doc["kind"], doc.get("spec", {})
    clusters = []
    if kind == "RayCluster":
        clusters.append(("spec", spec))
    elif kind == "RayService":
        clusters.append(("spec.rayClusterConfig", spec["rayClusterConfig"]))
    elif kind == "RayJob":
        if "rayClusterSpec" in spec:
            clusters.append(("spec.rayClusterSpec", spec["rayClusterSpec"]))
        if "submitterPodTemplate" in spec:
            yield "spec.submitterPodTemplate", spec["submitterPodTemplate"]["spec"], []
    elif kind in ("Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"):
        yield "spec.template", spec["template"]["spec"], []
    elif kind == "Pod":
        yield "spec", spec, []
    for where, c in clusters:
        yield f"{where}.headGroupSpec", c["headGroupSpec"]["template"]["spec"], autoscaler_container(c)
        for g in c.get("workerGroupSpecs", []):
            yield f"{where}.workerGroupSpecs[{g['groupName']}]", g["template"]["spec"], []


def ray_cluster_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        yield spec
    elif doc["kind"] == "RayService":
        yield spec["rayClusterConfig"]
    elif doc["kind"] == "RayJob" and "rayClusterSpec" in spec:
        yield spec["rayClusterSpec"]


_ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                    "projected", "secret"}


def restricted_violations(pod: dict[str, Any], extra_containers: list[dict[str, Any]] = ()) -> list[str]:
    """Violations of the Pod Security Standard "restricted" (v1.30) by one pod spec."""
    bad = []
    psc = pod.get("securityContext", {})
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(f):
            bad.append(f"{f} is set")
    for vol in pod.get("volumes", []):
        types = set(vol) - {"name"}
        if not types <= _ALLOWED_VOLUMES:
            bad.append(f"volume {vol['name']} uses {sorted(types - _ALLOWED_VOLUMES)}")
    containers = pod.get("containers", []) + pod.get("initContainers", []) + list(extra_containers)
    for c in containers:
        sc = c.get("securityContext", {})
        who = f"container {c['name']}"
        if sc.get("privileged"):
            bad.append(f"{who} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{who} does not set allowPrivilegeEscalation: false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{who} does not drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{who} adds capabilities {caps['add']}")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            bad.append(f"{who} may run as root (runAsNonRoot)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{who} runs as uid 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{who} has seccompProfile {seccomp!r}")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                bad.append(f"{who} uses hostPort {p['hostPort']}")
    return bad


def resource_violations(containers: list[dict[str, Any]]) -> list[str]:
    bad = []
    for c in containers:
        r = c.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(r.get(kind) or {})
            if missing:
                bad.append(f"container {c['name']} has no {kind} for {sorted(missing)}")
    return bad


def autoscaler_container(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The sidecar KubeRay injects into the head when in-tree autoscaling is on, as configured."""
    if not cluster.get("enableInTreeAutoscaling"):
        return []
    opts = cluster.get("autoscalerOptions") or {}
    return [{"name": "autoscaler (autoscalerOptions)", "securityContext": opts.get("securityContext", {}),
             "resources": opts.get("resources")}]


def pod_violations(doc: dict[str, Any]) -> list[str]:
    """Restricted-profile and resources violations of every pod a resource creates."""
    bad = []
    for where, pod, extra in pod_specs(doc):
        containers = pod.get("containers", []) + pod.get("initContainers", []) + extra
        bad += [f"{kn(doc)} {where}: {v}" for v in restricted_violations(pod, extra)]
        bad += [f"{kn(doc)} {where}: {v}" for v in resource_violations(containers)]
    return bad


# ----------------------------------------------------------------------------- KubeRay admission rules

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = {"RayCluster": 53, "RayService": 47, "RayJob": 47}  # KubeRay utils/constant.go


def kuberay_violations(doc: dict[str, Any]) -> list[str]:
    """The checks of KubeRay's ValidateRay*Metadata/Spec that static manifests can fail."""
    if doc["kind"] not in MAX_NAME:
        return []
    bad = []
    name = doc["metadata"]["name"]
    if len(name) > MAX_NAME[doc["kind"]] or not _DNS1035.match(name):
        bad.append(f"name {name!r} must be a DNS-1035 label of at most {MAX_NAME[doc['kind']]} characters")
    spec = doc["spec"]
    if doc["kind"] == "RayJob":
        if "clusterSelector" in spec and not spec["clusterSelector"].get("ray.io/cluster"):
            bad.append("clusterSelector needs the key ray.io/cluster")
        if "clusterSelector" not in spec and "rayClusterSpec" not in spec:
            bad.append("one of rayClusterSpec or clusterSelector must be set")
        if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
            bad.append("activeDeadlineSeconds must be positive")
        if not spec.get("entrypoint", "").strip():
            bad.append("entrypoint is empty")
    for c in ray_cluster_specs(doc):
        if (c.get("authOptions") or {}).get("mode") == "token":
            v = c.get("rayVersion", "")
            if not re.match(r"^\d+\.\d+\.\d+$", v) or tuple(map(int, v.split("."))) < (2, 52, 0):
                bad.append(f"authOptions.mode token needs rayVersion >= 2.52.0 (got {v!r})")
        groups = [("head", c["headGroupSpec"])] + [(g["groupName"], g) for g in c.get("workerGroupSpecs", [])]
        for gname, g in groups:
            rsp = g.get("rayStartParams", {})
            if any(k in rsp for k in ("num-cpus", "num-gpus", "memory", "resources")) and g.get("resources"):
                bad.append(f"group {gname}: resources set both in rayStartParams and resources")
            if "labels" in rsp:
                bad.append(f"group {gname}: rayStartParams['labels'] is not supported")
            if any(not isinstance(v, str) for v in rsp.values()):
                bad.append(f"group {gname}: rayStartParams values must be strings")
        for g in c.get("workerGroupSpecs", []):
            if not g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]:
                bad.append(f"group {g['groupName']}: needs minReplicas <= replicas <= maxReplicas")
            gpus = (g["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
                    .get("nvidia.com/gpu"))
            if gpus is not None and str(gpus) != g.get("rayStartParams", {}).get("num-gpus"):
                bad.append(f"group {g['groupName']}: nvidia.com/gpu limit {gpus} differs from num-gpus")
    return [f"{kn(doc)}: {b}" for b in bad]
