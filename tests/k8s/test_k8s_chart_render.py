"""The chart renders for every values set, lints clean, and everything it renders validates offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8s import chart_tools as ct
from tests.k8s import manifest_checks as mc
from tests.k8s.conftest import VALUE_SETS

pytestmark = pytest.mark.k8s
SETS = sorted(VALUE_SETS)


@pytest.mark.parametrize("name", SETS)
def test_builtin_resources_validate_strict(render_set, name):
    docs = [d for d in render_set(name)["docs"] if not mc.is_custom(d)]
    assert docs, "nothing built-in rendered"
    for d in docs:
        mc.validate_builtin(d, mc.KUBE_VERSION)


@pytest.mark.parametrize("name", SETS)
def test_custom_resources_validate_against_crds(render_set, crd_schemas, name):
    docs = [d for d in render_set(name)["docs"] if mc.is_custom(d)]
    assert any(d["kind"] in ("RayService", "RayCluster") for d in docs)
    for d in docs:
        mc.validate_custom(d, crd_schemas)


@pytest.mark.parametrize("name", SETS)
def test_pods_are_restricted_and_bounded(render_set, name):
    violations = [v for d in render_set(name)["docs"] for v in mc.pod_violations(d)]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("name", SETS)
def test_kuberay_admission_rules(render_set, name):
    violations = [v for d in render_set(name)["docs"] for v in mc.kuberay_violations(d)]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("name", ["default", "gpu-values", "ci", "raycluster-shared-jobs"])
def test_lint_is_clean(chart_copy, name):
    files, overrides = VALUE_SETS[name]
    result = ct.lint(chart_copy, ct.load_values(*files, overrides=overrides))
    assert result["errors"] == [] and result["messages"] == [], result


def test_lint_reports_a_broken_template(chart_copy, tmp_path):
    """The clean-lint assertion above can fail: a template with a syntax error is an error."""
    broken = tmp_path / "raydojo"
    shutil.copytree(chart_copy, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\n{{ .Values.nameOverride \n")
    result = ct.lint(broken, {})
    assert any(m["severity"] >= 3 for m in result["messages"]) or result["errors"], result


def test_validators_catch_what_they_should(render_set, crd_schemas):
    """Negative controls: a typo, a wrong type, a root container and a missing limit are all caught."""
    import copy

    docs = render_set("default")["docs"]
    svc = copy.deepcopy(next(d for d in docs if d["kind"] == "RayService"))
    head = svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["securityContex"] = {}
    with pytest.raises(AssertionError, match="securityContex"):
        mc.validate_custom(svc, crd_schemas)
    del head["containers"][0]["securityContex"]
    svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "4"
    with pytest.raises(AssertionError, match="maxReplicas"):
        mc.validate_custom(svc, crd_schemas)
    head["containers"][0]["securityContext"]["runAsNonRoot"] = False
    del head["containers"][0]["resources"]["limits"]["memory"]
    problems = "\n".join(mc.pod_violations(svc))
    assert "may run as root" in problems and "no limits for ['memory']" in problems
    pvc = copy.deepcopy(next(d for d in docs if d["kind"] == "PersistentVolumeClaim"))
    pvc["spec"]["accessMode"] = ["ReadWriteMany"]
    with pytest.raises(AssertionError, match="accessMode"):
        mc.validate_builtin(pvc)


def test_kubernetes_validate_cli_on_the_ci_render(render_set, tmp_path):
    """The acceptance command itself: `kubernetes-validate -k <min version> --strict FILE` on the built-ins."""
    cli = Path(sys.executable).parent / "kubernetes-validate"
    docs = [d for d in render_set("ci")["docs"] if not mc.is_custom(d)]
    f = tmp_path / "builtins.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    p = subprocess.run([str(cli), "-k", mc.KUBE_VERSION, "--strict", str(f)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "ERROR" not in p.stdout, p.stdout + p.stderr
    assert p.stdout.count("INFO") == len(docs)
