"""Starting or joining Ray the same way from `dojo`, tests and `ray job submit`."""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)


def init_ray(num_cpus: int | None = None, metrics_export_port: int | None = None, **kwargs) -> dict:
    """Join the cluster named by ``RAY_ADDRESS`` (a Ray job sets it), else start a local Ray.

    A local Ray is sized to the machine (``num_cpus`` raises it when a run asks for more
    logical CPUs than there are cores). Ray's token authentication stays at its default (on).
    Returns the cluster's resources.
    """
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    kwargs.setdefault("log_to_driver", True)
    kwargs.setdefault("logging_level", logging.WARNING)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        cpus = max(os.cpu_count() or 1, num_cpus or 0)
        extra = {}
        if metrics_export_port is not None:
            extra["_metrics_export_port"] = metrics_export_port
        kwargs.setdefault("include_dashboard", False)
        ray.init(num_cpus=cpus, **extra, **kwargs)
    return ray.cluster_resources()


def require_gpus(flag: str, n: float, resources: dict) -> None:
    """Refuse a request for ``n`` GPUs that the local Ray this process started cannot meet (its actors or
    tasks would wait forever) with a ConfigError naming ``flag``. A joined cluster (``RAY_ADDRESS``) may
    still grow GPU nodes through its autoscaler (KubeRay's GPU worker group can scale from zero): only warn."""
    have = resources.get("GPU", 0)
    if n <= have:
        return
    msg = f"{flag} {n:g}: the Ray cluster has {have:g} GPUs"
    if os.environ.get("RAY_ADDRESS"):
        log.warning("%s now; waiting for its autoscaler to add a GPU node", msg)
        return
    from services.common.config import ConfigError

    raise ConfigError(msg)


@contextlib.contextmanager
def ray_session(**kwargs):
    """``init_ray(**kwargs)`` for a block of library code: yields the cluster's resources and, on leaving, shuts
    down only a Ray that this block started. A Ray already running in the process (a caller's, a test session's)
    is left as it was, where ``shutdown_ray_if_local`` would stop it."""
    import ray

    started = not ray.is_initialized()
    try:
        yield init_ray(**kwargs)
    finally:
        if started:
            shutdown_ray_if_local()


def shutdown_ray_if_local() -> None:
    """Shut down a Ray this process started (leave a joined cluster running)."""
    import ray

    if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        ray.shutdown()
