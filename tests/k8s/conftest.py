"""Fixtures of the Kubernetes tests: the chart prepared once, each values set rendered once."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.k8s import chart_tools as ct
from tests.k8s import manifest_checks as mc

CHART = ct.CHART
# name -> (values files, overrides); every one must render, lint clean and validate.
VALUE_SETS: dict[str, tuple[list[Path], dict[str, Any]]] = {
    "default": ([], {}),
    # (not "gpu": tests/conftest.py skips items whose keywords, parameter ids included, contain "gpu")
    "gpu-values": ([CHART / "values-gpu.yaml"], {}),
    "ci": ([CHART / "ci" / "ci-values.yaml"], {}),
    "raycluster-shared-jobs": ([], {"serve": {"enabled": False},
                                    "jobDefaults": {"cluster": "shared"},
                                    "jobs": {"gan": {"enabled": True}}}),
    "auth-and-apikeys-off": ([], {"auth": {"enabled": False}, "serve": {"apiKeys": {"enabled": False}}}),
    "existing-secrets-and-claim": ([], {"auth": {"existingSecret": "my-ray-token"},
                                        "serve": {"apiKeys": {"existingSecret": "my-api-keys"}},
                                        "storage": {"pvc": {"existingClaim": "shared-models"}}}),
    "storage-uri": ([], {"storage": {"type": "uri", "uri": "s3://dojo-bucket/raydojo/"}}),
    "minimal": ([], {"cluster": {"autoscaling": {"enabled": False}, "cpuWorkers": {"enabled": False}},
                     "networkPolicy": {"enabled": False}, "jobs": {"a3c": {"enabled": False}},
                     "monitoring": {"dashboards": {"enabled": False}}}),
}


@pytest.fixture(scope="session")
def chart_copy(tmp_path_factory) -> Path:
    """The chart with stand-in subcharts (what `helm dependency update` would add)."""
    return ct.prepare_chart(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def render_set(chart_copy):
    """render_set(name) -> {"docs", "manifest", "notes", "values"}, rendered once per session."""

    @functools.cache
    def _render(name: str) -> dict[str, Any]:
        files, overrides = VALUE_SETS[name]
        values = ct.load_values(*files, overrides=json.loads(json.dumps(overrides)))
        out = ct.render(chart_copy, values)
        return {**out, "values": values}

    return _render


@pytest.fixture(scope="session")
def crd_schemas():
    if not mc.SCHEMAS.is_dir():
        pytest.skip(f"CRD schemas not found at {mc.SCHEMAS} (a checkout without ../shared): "
                    "custom resources are not validated")
    return mc.crd_schemas(mc.SCHEMAS)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]
