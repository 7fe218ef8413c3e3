"""What the ingress and every capability's routes share: typed app args, deployment handles,
clean 4xx errors, request metrics.

A capability (ASR, explain, embed, graph) lives in ``services/<area>/serve.py`` and exports
  * ``router``: a FastAPI ``APIRouter`` with its routes (they call ``handle("<name>")``),
  * ``bind(args: AppArgs) -> Application | None``: its bound model deployment (deployment names
    are fixed by deploy/serve/raydojo.yaml), or None when it needs no model deployment.
``services/serve/app.py`` includes the routers and binds the deployments.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from services.common.metrics import define

log = logging.getLogger("ray.serve")


class AppArgs(BaseModel):
    """Arguments of ``services.serve.app:build_app`` (the `args:` block of deploy/serve/raydojo.yaml)."""

    model_config = ConfigDict(extra="forbid")

    storage_root: str = Field(".", description="Root of the checkpoint run-dirs (DOJO_STORAGE_ROOT overrides it)")
    asr_checkpoint: str | None = Field(None, description="Run-dir of `dojo asr train`, relative to storage_root")
    explain_checkpoint: str | None = Field(None, description="Run-dir of `dojo explain train`")
    embed_checkpoint: str | None = Field(None, description="Run-dir of `dojo metric train`")
    api_keys_env: str = Field("DOJO_SERVE_API_KEYS", description="Env var with comma-separated API keys")
    max_audio_seconds: float = Field(30.0, gt=0, description="Longest accepted audio")
    max_image_side: int = Field(512, gt=0, description="Largest accepted image side in pixels")

    def checkpoint_path(self, relative: str) -> str:
        """Absolute location of a run-dir: DOJO_STORAGE_ROOT (or storage_root) joined with ``relative``."""
        root = os.environ.get("DOJO_STORAGE_ROOT") or self.storage_root
        if "://" in relative or relative.startswith("/"):
            return relative
        if "://" in root:
            return root.rstrip("/") + "/" + relative
        return str(Path(root).resolve() / relative)


class Runtime:
    """Per-replica state of the ingress, set in its constructor."""

    handles: dict[str, Any] = {}
    args: AppArgs = AppArgs()
    api_keys: frozenset[str] = frozenset()


def handle(name: str) -> RetryingHandle:
    """The deployment handle of capability ``name``; 503 naming it when it is not deployed."""
    h = Runtime.handles.get(name)
    if h is None:
        raise HTTPException(status_code=503, detail=f"capability {name!r} is not deployed in this application "
                                                     f"(configure its checkpoint in deploy/serve/raydojo.yaml)")
    return RetryingHandle(name, h)


class RetryingHandle:
    """A deployment handle whose calls are sent again when the replica answering them dies mid-call.

    Every model deployment's methods are pure functions of their arguments, so a call that a crashed replica
    (killed, out of memory, its node lost) never answered can be repeated: Serve routes it to a live replica,
    or holds it until the controller has started the replacement. Without this, requests in flight at a
    replica's death got a 500. After ``RETRIES`` more deaths the client gets a 503 that says to retry.
    ``await handle("asr").transcribe.remote(...)`` reads as with a plain DeploymentHandle.
    """

    RETRIES = 2

    def __init__(self, name: str, h: Any):
        self._name, self._h = name, h

    def __getattr__(self, method: str) -> _RetryingMethod:
        return _RetryingMethod(self._name, method, getattr(self._h, method))


class _RetryingMethod:
    def __init__(self, name: str, method: str, bound: Any):
        self._name, self._method, self._bound = name, method, bound

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        from ray.exceptions import RayActorError

        for attempt in range(RetryingHandle.RETRIES + 1):
            try:
                return await self._bound.remote(*args, **kwargs)
            except RayActorError as exc:
                if attempt == RetryingHandle.RETRIES:
                    raise HTTPException(
                        status_code=503, headers={"Retry-After": "10"},
                        detail=f"the {self._name!r} model replica answering this request died ({attempt + 1} times "
                               f"in a row): Serve is starting a new one; retry shortly") from exc
                log.warning("%s.%s: the replica died mid-call (%s); sending it again (%d of %d)", self._name,
                            self._method, type(exc).__name__, attempt + 1, RetryingHandle.RETRIES)
                _resent_metrics().inc(RESENT, 1, {"capability": self._name, "method": self._method})


class BadInput(Exception):
    """Raised by routes or model deployments for client errors; the ingress turns it into a 4xx."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.message, self.status_code = message, status_code

    def __reduce__(self):  # survive the trip through Ray from a model deployment
        return (BadInput, (self.message, self.status_code))


class StartupError(RuntimeError):
    """A deployment cannot start (e.g. its checkpoint is missing); the message says what to run."""


REQ_TAGS = ("route", "method", "status")
REQUESTS = define("dojo_serve_requests", "counter", "HTTP requests answered by the ingress", REQ_TAGS)
LATENCY = define(
    "dojo_serve_request_latency_ms", "histogram", "Ingress request latency", ("route", "method"),
    boundaries=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000), unit="ms",
)
RESENT = define("dojo_serve_model_calls_resent", "counter",
                "Model deployment calls sent again because the replica answering them died", ("capability", "method"))


@functools.cache
def _resent_metrics():
    """This process's MetricSet for RESENT, made on first use (Ray metrics need a connected worker)."""
    from services.common.metrics import MetricSet

    return MetricSet([RESENT], {})
