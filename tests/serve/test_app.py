"""The Serve application skeleton over real HTTP: health, OpenAPI, API keys, metrics, clean 4xx."""

from __future__ import annotations

import httpx
import pytest
from ray import serve

from services.serve.app import DojoIngress, build_app
from services.serve.common import AppArgs


@pytest.fixture(scope="module")
def serve_app(ray_local):
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app({"api_keys_env": "DOJO_TEST_NO_KEYS"}), name="skeleton", route_prefix="/skeleton")
    yield "http://127.0.0.1:8000/skeleton"
    serve.delete("skeleton")


def test_health_and_openapi(serve_app):
    r = httpx.get(f"{serve_app}/healthz", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    spec = httpx.get(f"{serve_app}/openapi.json", timeout=30).json()
    assert spec["info"]["title"] == "raydojo" and "/healthz" in spec["paths"]


def test_unknown_route_is_404_not_500(serve_app):
    assert httpx.post(f"{serve_app}/v1/nope", content=b"x", timeout=30).status_code == 404


def test_app_args_reject_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        AppArgs(**{"asr_checkpoint": "runs/asr", "typo": 1})
    with pytest.raises(ValueError):
        AppArgs(max_audio_seconds=-1)


def test_api_keys_are_enforced(ray_local):
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    env = {"env_vars": {"DOJO_TEST_KEYS": "k1, k2"}}  # what the chart fills from a Secret
    app = DojoIngress.options(ray_actor_options={"runtime_env": env}).bind(
        {}, AppArgs(api_keys_env="DOJO_TEST_KEYS").model_dump())
    serve.run(app, name="keyed", route_prefix="/keyed")
    base = "http://127.0.0.1:8000/keyed"
    try:
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200  # health stays open
        r = httpx.get(f"{base}/openapi.json", timeout=30)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert httpx.get(f"{base}/openapi.json", headers={"X-API-Key": "nope"}, timeout=30).status_code == 401
        assert httpx.get(f"{base}/openapi.json", headers={"X-API-Key": "k2"}, timeout=30).status_code == 200
    finally:
        serve.delete("keyed")
