"""The raydojo Serve application: ``serve run deploy/serve/raydojo.yaml``.

    DojoIngress (FastAPI: /healthz, /docs, /v1/...) ──handles──► ASRModel │ ExplainModel │ EmbedModel

``build_app(args)`` is the import path named in the config; it binds the model deployment
of every capability whose checkpoint is configured and whose code is installed, and hands
their handles to the ingress. Routes come from each capability's ``router``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from services import __version__
from services.serve.common import LATENCY, REQUESTS, AppArgs, BadInput, Runtime

# capability name -> (module with `router` and `bind`, the AppArgs field of its checkpoint or None)
CAPABILITIES: dict[str, tuple[str, str | None]] = {
    "asr": ("services.asr.serve", "asr_checkpoint"),
    "explain": ("services.explain.serve", "explain_checkpoint"),
    "embed": ("services.metric.serve", "embed_checkpoint"),
    "graph": ("services.gcn.serve", None),
}
OPEN_PATHS = ("/healthz",)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _modules() -> dict[str, Any]:
    return {name: importlib.import_module(mod) for name, (mod, _) in CAPABILITIES.items() if _installed(mod)}


def make_fastapi() -> FastAPI:
    """The ASGI app, built on each ingress replica."""
    app = FastAPI(title="raydojo", version=__version__,
                  description="Speech-to-text, explanations, embeddings and graph classification on Ray Serve.")
    metrics: dict[str, Any] = {}

    @app.middleware("http")
    async def api_key_and_metrics(request: Request, call_next):
        t0 = time.perf_counter()
        root = request.scope.get("root_path", "")  # Serve's route prefix
        path = request.url.path[len(root):] if request.url.path.startswith(root) else request.url.path
        if Runtime.api_keys and path not in OPEN_PATHS:
            if request.headers.get("x-api-key") not in Runtime.api_keys:
                response = JSONResponse({"detail": "missing or invalid X-API-Key header"}, status_code=401)
                return _observe(metrics, request, response, t0)
        return _observe(metrics, request, await call_next(request), t0)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput):
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(errors) or "invalid request"}, status_code=422)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness and the capabilities this application serves."""
        return {"status": "ok", "version": __version__, "capabilities": sorted(Runtime.handles)}

    for mod in _modules().values():
        app.include_router(mod.router)
    return app


def _observe(metrics: dict[str, Any], request: Request, response, t0: float):
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    if not metrics:
        from services.common.metrics import MetricSet

        metrics["set"] = MetricSet([REQUESTS, LATENCY], {})
    m = metrics["set"]
    m.inc(REQUESTS, 1, {"route": path, "method": request.method, "status": str(response.status_code)})
    m.observe(LATENCY, (time.perf_counter() - t0) * 1e3, {"route": path, "method": request.method})
    return response


@serve.deployment(name="DojoIngress")
@serve.ingress(make_fastapi)
class DojoIngress:
    def __init__(self, handles: dict[str, Any], args: dict[str, Any]):
        Runtime.handles = dict(handles)
        Runtime.args = AppArgs(**args)
        keys = os.environ.get(Runtime.args.api_keys_env, "")
        Runtime.api_keys = frozenset(k.strip() for k in keys.split(",") if k.strip())


def build_app(args: dict[str, Any]) -> Application:
    """Import path of the Serve config: bind every configured capability behind the ingress."""
    app_args = AppArgs(**(args or {}))
    handles: dict[str, Any] = {}
    for name, mod in _modules().items():
        field = CAPABILITIES[name][1]
        if field is not None and getattr(app_args, field) is None:
            continue  # not configured
        bound = mod.bind(app_args)
        if bound is not None:
            handles[name] = bound
    return DojoIngress.bind(handles, app_args.model_dump())
