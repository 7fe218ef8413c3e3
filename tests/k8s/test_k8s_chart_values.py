"""values.yaml is the manual: every key documented, the README table current, bad values rejected clearly."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.k8s import chart_tools as ct

pytestmark = pytest.mark.k8s

GPU_GROUP = {"name": "gpu", "gpus": 1, "replicas": 0, "minReplicas": 0, "maxReplicas": 2,
             "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}}


def _gpu(**change):
    return {"cluster": {"gpuWorkerGroups": [{**GPU_GROUP, **change}]}}


# (kind of mistake, values, what Helm's message must say)
BAD_VALUES = [
    ("wrong type", {"cluster": {"cpuWorkers": {"replicas": "2"}}},
     r"at '/cluster/cpuWorkers/replicas': got string, want integer"),
    ("negative GPU count", _gpu(gpus=-1), r"at '/cluster/gpuWorkerGroups/0/gpus': minimum: got -1, want 1"),
    ("zero GPUs in a GPU group", _gpu(gpus=0), r"gpuWorkerGroups/0/gpus': minimum: got 0, want 1"),
    ("fractional GPUs per pod", _gpu(gpus=0.5), r"gpuWorkerGroups/0/gpus': got number, want integer"),
    ("negative replicas", {"cluster": {"cpuWorkers": {"minReplicas": -1}}},
     r"cpuWorkers/minReplicas': minimum: got -1, want 0"),
    ("unknown top-level key", {"gpus": 2}, r"additional properties 'gpus' not allowed"),
    ("unknown key in a closed object", {"cluster": {"head": {"cpus": 4}}},
     r"at '/cluster/head': additional properties 'cpus' not allowed"),
    ("misspelled GPU group key", _gpu(gpu=1), r"gpuWorkerGroups/0': additional properties 'gpu' not allowed"),
    ("GPU group without resources", {"cluster": {"gpuWorkerGroups": [
        {k: v for k, v in GPU_GROUP.items() if k != "resources"}]}},
     r"gpuWorkerGroups/0': missing property 'resources'"),
    ("resources without limits", {"cluster": {"head": {"resources": {"requests": {"cpu": "1"}, "limits": None}}}},
     r"cluster/head/resources': missing property 'limits'"),
    ("enum", {"storage": {"type": "nfs"}}, r"at '/storage/type': value must be one of 'pvc', 'uri'"),
    ("bad group name", _gpu(name="GPU_A100"), r"gpuWorkerGroups/0/name': .*does not match pattern"),
    ("pod running as root", {"podSecurityContext": {"runAsNonRoot": False}},
     r"at '/podSecurityContext/runAsNonRoot': value must be true"),
    ("privilege escalation", {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
     r"containerSecurityContext/allowPrivilegeEscalation': value must be false"),
    ("bad job name", {"jobs": {"A3C-Pong": {"enabled": True, "command": ["a3c", "train"]}}},
     r"at '/jobs': additional properties 'A3C-Pong' not allowed"),
    ("job command not area+verb", {"jobs": {"a3c": {"command": ["a3c", "train", "--workers"]}}},
     r"at '/jobs/a3c/command': maxItems: got 3, want 2"),
    ("unknown cluster mode", {"jobs": {"a3c": {"cluster": "mine"}}},
     r"at '/jobs/a3c/cluster': value must be one of 'own', 'shared'"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, r"at '/image/pullPolicy': value must be one of"),
    ("scrape interval not a duration", {"monitoring": {"podMonitors": {"interval": "30 seconds"}}},
     r"at '/monitoring/podMonitors/interval': .*does not match pattern"),
    ("Ray version not x.y.z", {"rayVersion": "latest"}, r"at '/rayVersion': .*does not match pattern"),
]


@pytest.mark.parametrize("kind, values, message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_schema_rejects_bad_values_with_clear_messages(chart_copy, kind, values, message):
    import helm_python

    with pytest.raises(helm_python.HelmError) as err:
        ct.render(chart_copy, json.loads(json.dumps(values)))
    text = str(err.value)
    assert "values don't meet the specifications of the schema" in text
    assert re.search(message, text), text


def test_schema_accepts_every_shipped_values_file(chart_copy):
    for f in [ct.CHART / "values.yaml", ct.CHART / "values-gpu.yaml", *sorted((ct.CHART / "ci").glob("*.yaml"))]:
        ct.render(chart_copy, ct.load_values(f))


def test_every_value_is_documented():
    text = (ct.CHART / "values.yaml").read_text()
    documented = {k for k, _ in ct.documented_keys(text)}

    def covered(key):
        parts = key.split(".")
        return any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))

    leaves = ct.leaf_keys(yaml.safe_load(text))
    assert len(leaves) > 60
    assert [k for k in leaves if not covered(k)] == []
    for k, desc in ct.documented_keys(text):
        assert len(desc) >= 10, f"{k}: description too short"


def test_undocumented_key_is_noticed():
    """Negative control for the parser: a key without `# --` is not in the documented set."""
    text = "a:\n  # -- documented leaf\n  b: 1\n  c: 2\n# -- top list\nd: []\n"
    assert ct.documented_keys(text) == [("a.b", "documented leaf"), ("d", "top list")]


def test_readme_values_table_is_current():
    assert ct.readme_current(), "run `python tests/k8s/chart_tools.py readme`"
    table = ct.values_table()
    assert "| `serve.deploymentOverrides` | object | `{}` |" in table
    assert table.count("\n") == len(ct.documented_keys((ct.CHART / "values.yaml").read_text())) + 2


def test_copies_of_serve_config_and_dashboards_are_current():
    assert ct.out_of_date() == [], "run `python tests/k8s/chart_tools.py sync`"


def test_chart_tools_check_and_template_cli(capsys):
    assert ct.main(["check"]) == 0
    assert "current" in capsys.readouterr().out
    assert ct.main(["template", "-f", str(ct.CHART / "values-gpu.yaml"), "--release", "rd"]) == 0
    out = capsys.readouterr().out
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert "RayService" in kinds and "PodMonitor" in kinds
    assert ct.main(["template", "--set-json", '{"storage": {"type": "nfs"}}']) == 2
    assert "storage/type" in capsys.readouterr().err
