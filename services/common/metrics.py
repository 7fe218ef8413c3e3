"""The metrics contract: every metric is defined once here-by-name, with a description and fixed tag keys.

Definitions (``define``) are plain data collected in ``REGISTRY`` (docs/metrics.md is
generated from it). ``MetricSet`` instantiates them with ``ray.util.metrics`` inside the
process that reports them (an actor, a Serve replica, a driver attached to Ray). Ray
exports them on its metrics port with a ``ray_`` prefix; counters gain ``_total``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()
    unit: str = ""

    @property
    def scraped_name(self) -> str:
        """The name Prometheus sees when scraping Ray's metrics port."""
        return "ray_" + self.name + ("_total" if self.kind == "counter" else "")


REGISTRY: dict[str, MetricSpec] = {}


def define(
    name: str,
    kind: Kind,
    description: str,
    tag_keys: tuple[str, ...],
    boundaries: tuple[float, ...] = (),
    unit: str = "",
) -> MetricSpec:
    """Register a metric; names are ``dojo_<area>_...``, descriptions are mandatory."""
    if not name.startswith("dojo_"):
        raise ValueError(f"metric {name!r} must start with 'dojo_'")
    if not description.strip() or not description.isascii():
        raise ValueError(f"metric {name!r} needs a description in ASCII (Ray's exporter rejects others)")
    if kind == "histogram" and (not boundaries or min(boundaries) <= 0):
        raise ValueError(f"histogram {name!r} needs positive boundaries (Ray's rule)")
    spec = MetricSpec(name, kind, description, tuple(tag_keys), tuple(boundaries), unit)
    if name in REGISTRY and REGISTRY[name] != spec:
        raise ValueError(f"metric {name!r} defined twice with different specs")
    REGISTRY[name] = spec
    return spec


class MetricSet:
    """Live ``ray.util.metrics`` objects for a group of specs, with default tag values."""

    def __init__(self, specs: list[MetricSpec], default_tags: dict[str, str]):
        from ray.util import metrics as rm

        self._metrics = {}
        self._specs = {s.name: s for s in specs}
        for s in specs:
            tags = {k: v for k, v in default_tags.items() if k in s.tag_keys}
            if s.kind == "counter":
                m = rm.Counter(s.name, description=s.description, tag_keys=s.tag_keys)
            elif s.kind == "gauge":
                m = rm.Gauge(s.name, description=s.description, tag_keys=s.tag_keys)
            else:
                m = rm.Histogram(
                    s.name, description=s.description, boundaries=list(s.boundaries), tag_keys=s.tag_keys
                )
            if tags:
                m.set_default_tags(tags)
            self._metrics[s.name] = m

    def inc(self, spec: MetricSpec, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value > 0:
            self._metrics[spec.name].inc(value, tags=tags)

    def set(self, spec: MetricSpec, value: float, tags: dict[str, str] | None = None) -> None:
        self._metrics[spec.name].set(float(value), tags=tags)

    def observe(self, spec: MetricSpec, value: float, tags: dict[str, str] | None = None) -> None:
        self._metrics[spec.name].observe(float(value), tags=tags)


def markdown_table(prefix: str = "dojo_") -> str:
    """The metrics table for the docs, from the registry."""
    rows = ["| scraped as | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for s in sorted(REGISTRY.values(), key=lambda s: s.name):
        if s.name.startswith(prefix):
            labels = ", ".join(f"`{k}`" for k in s.tag_keys)
            unit = f" ({s.unit})" if s.unit else ""
            rows.append(f"| `{s.scraped_name}` | {s.kind} | {labels} | {s.description}{unit} |")
    return "\n".join(rows)


def load_all() -> dict[str, MetricSpec]:
    """Import every ``services.<area>.metrics`` module so that REGISTRY holds the whole contract."""
    import importlib
    import pkgutil

    import services

    for mod in pkgutil.iter_modules(services.__path__):
        if mod.ispkg:
            try:
                importlib.import_module(f"services.{mod.name}.metrics")
            except ModuleNotFoundError as exc:
                if exc.name != f"services.{mod.name}.metrics":
                    raise
    return REGISTRY


def render_doc() -> str:
    """docs/metrics.md, generated from the registry (``python -m services.common.metrics``)."""
    load_all()
    return (
        "# Metrics\n\n"
        "Generated from the code's metric definitions by `python -m services.common.metrics`;\n"
        "a test fails when this file is out of date. Every metric is exported through Ray's\n"
        "metrics port (`ray start --metrics-export-port`, 8080 on KubeRay pods) with a `ray_`\n"
        "prefix; counters gain `_total`. Ray adds its own labels (`SessionName`, `NodeAddress`,\n"
        "`WorkerId`, ...) and, on KubeRay, the PodMonitor adds `ray_io_cluster`.\n\n"
        + markdown_table()
        + "\n"
    )


if __name__ == "__main__":
    import pathlib

    from services.common import metrics as registry  # not __main__: the module the areas register into

    out = pathlib.Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    out.write_text(registry.render_doc())
    print(f"wrote {out}")
