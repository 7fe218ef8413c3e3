"""Starting or joining Ray the same way from `dojo`, tests and `ray job submit`."""

from __future__ import annotations

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


def shutdown_ray_if_local() -> None:
    """Shut down a Ray this process started (leave a joined cluster running)."""
    import ray

    if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        ray.shutdown()
