"""Fixtures of the explain tests: the committed checkpoint (deploy/models/explain) and its models."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO

COMMITTED = REPO / "deploy" / "models" / "explain"


@pytest.fixture(scope="session")
def bundles():
    from services.explain.train import load_bundles

    return load_bundles(str(COMMITTED))


@pytest.fixture(scope="session")
def url(ray_local):
    """The Serve application with the committed checkpoint, over real HTTP (deleted at the end)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from services.serve.app import build_app

    # port 8000 as in the Serve contract; DOJO_TEST_SERVE_PORT moves it where several engineers' test
    # sessions share one machine (Serve's proxy binds with SO_REUSEPORT, so sessions would steal requests)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ.get("DOJO_TEST_SERVE_PORT", "8000"))})
    port = _get_global_client().http_config.port  # the port Serve really listens on in this session
    serve.run(build_app({"explain_checkpoint": str(COMMITTED), "api_keys_env": "DOJO_TEST_NO_KEYS"}),
              name="explain-test", route_prefix="/explain-test")
    yield f"http://127.0.0.1:{port}/explain-test"
    serve.delete("explain-test")
