"""Grafana dashboards as Python data, rendered to JSON under deploy/grafana/ (`dojo dashboards render`).

Every panel's PromQL filters on ``ray_io_cluster`` and ``namespace`` — the labels the Helm
chart's PodMonitors attach on Kubernetes and the local Prometheus config attaches on one
machine — so one dashboard serves both. Panels whose data only exists with a GPU or a
DCGM exporter carry ``needs`` and are checked for validity only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "deploy" / "grafana"
CHART_DIR = REPO / "helm" / "raydojo" / "dashboards"
SEL = 'ray_io_cluster=~"$cluster", namespace=~"$namespace"'


@dataclasses.dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    kind: Literal["timeseries", "stat"] = "timeseries"
    needs: Literal["", "gpu", "dcgm"] = ""


@dataclasses.dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    extra_vars: tuple[tuple[str, str], ...] = ()  # (name, label_values query)


def _p(title: str, expr: str, legend: str = "", **kw) -> Panel:
    return Panel(title, (Target(expr, legend),), **kw)


def _a3c(metric: str) -> str:
    return f'ray_dojo_a3c_{metric}{{{SEL}, run=~"$run"}}'


A3C = Dashboard(
    uid="raydojo-a3c",
    title="Training: A3C",
    extra_vars=(("run", f"label_values(ray_dojo_a3c_frames_total{{{SEL}}}, run)"),),
    panels=(
        _p("Frames per second", f"sum by (run) (rate({_a3c('frames_total')}[1m]))", "{{run}}", unit="short",
           description="Environment frames consumed by all workers per second"),
        _p("Mean return (last 100 episodes)", f"max by (run) ({_a3c('return_mean_100')})", "{{run}}"),
        _p("Last episode return", f"max by (run) ({_a3c('episode_return')})", "{{run}}"),
        _p("Episodes per minute", f"sum by (run) (rate({_a3c('episodes_total')}[1m])) * 60", "{{run}}"),
        _p("Policy entropy", f"max by (run) ({_a3c('policy_entropy')})", "{{run}}", unit="none"),
        Panel("Losses", (Target(f"max by (run) ({_a3c('value_loss')})", "value {{run}}"),
                         Target(f"max by (run) ({_a3c('policy_loss')})", "policy {{run}}"))),
        _p("Gradient norm (before clipping)", f"max by (run) ({_a3c('grad_norm')})", "{{run}}"),
        Panel("Gradients applied / dropped per second",
              (Target(f"sum by (run) (rate({_a3c('grads_applied_total')}[1m]))", "applied {{run}}"),
               Target(f"sum by (run) (rate({_a3c('grads_dropped_total')}[1m])) or vector(0)", "dropped"))),
        Panel("Gradient staleness (p50 / p99)",
              (Target(f"histogram_quantile(0.5, sum by (le, run) (rate({_a3c('staleness_bucket')}[5m])))",
                      "p50 {{run}}"),
               Target(f"histogram_quantile(0.99, sum by (le, run) (rate({_a3c('staleness_bucket')}[5m])))",
                      "p99 {{run}}")),
              description="Server version minus the version a gradient was computed on"),
        Panel("Worker and server restarts (1h)",
              (Target(f"sum by (run) (increase({_a3c('worker_restarts_total')}[1h])) or vector(0)", "workers"),
               Target(f"sum by (run) (increase({_a3c('server_restarts_total')}[1h])) or vector(0)", "server")),
              kind="stat"),
    ),
)

SWEEPS = Dashboard(
    uid="raydojo-sweeps",
    title="Sweeps: GAN and MAML",
    extra_vars=(("sweep", f"label_values(ray_dojo_sweep_trial_results_total{{{SEL}}}, sweep)"),),
    panels=(
        _p("Trials finished by status",
           f'sum by (status) (ray_dojo_sweep_trials_finished_total{{{SEL}, sweep=~"$sweep"}})', "{{status}}",
           kind="stat"),
        _p("Best metric so far", f'max by (sweep, family) (ray_dojo_sweep_best_metric{{{SEL}, sweep=~"$sweep"}})',
           "{{family}} {{sweep}}"),
        _p("Trial results per minute",
           f'sum by (sweep) (rate(ray_dojo_sweep_trial_results_total{{{SEL}, sweep=~"$sweep"}}[1m])) * 60',
           "{{sweep}}"),
        _p("Trial actors alive", f'sum(ray_actors{{{SEL}, State="ALIVE"}})', "alive actors"),
    ),
)

SERVING = Dashboard(
    uid="raydojo-serving",
    title="Serving: ASR, explain, embeddings",
    panels=(
        _p("Requests per second by route", f"sum by (route) (rate(ray_dojo_serve_requests_total{{{SEL}}}[1m]))",
           "{{route}}", unit="reqps"),
        _p("Responses by status", f"sum by (status) (rate(ray_dojo_serve_requests_total{{{SEL}}}[1m]))",
           "{{status}}", unit="reqps"),
        Panel("Ingress latency p50 / p99 (ms)",
              (Target(f"histogram_quantile(0.5, sum by (le, route) (rate(ray_dojo_serve_request_latency_ms_bucket"
                      f"{{{SEL}}}[5m])))", "p50 {{route}}"),
               Target(f"histogram_quantile(0.99, sum by (le, route) (rate(ray_dojo_serve_request_latency_ms_bucket"
                      f"{{{SEL}}}[5m])))", "p99 {{route}}")), unit="ms"),
        _p("Client-error ratio (4xx)",
           f'sum(rate(ray_dojo_serve_requests_total{{{SEL}, status=~"4.."}}[5m])) '
           f"/ sum(rate(ray_dojo_serve_requests_total{{{SEL}}}[5m]))", "4xx", unit="percentunit"),
        _p("Server-error ratio (5xx)",
           f'(sum(rate(ray_dojo_serve_requests_total{{{SEL}, status=~"5.."}}[5m])) or vector(0)) '
           f"/ sum(rate(ray_dojo_serve_requests_total{{{SEL}}}[5m]))", "5xx", unit="percentunit"),
        _p("Replica processing latency p99 by deployment (ms)",
           f"histogram_quantile(0.99, sum by (le, deployment) (rate(ray_serve_deployment_processing_latency_ms_bucket"
           f"{{{SEL}}}[5m])))", "{{deployment}}", unit="ms"),
        _p("Healthy replicas by deployment", f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{SEL}}})",
           "{{deployment}}"),
        _p("Ongoing requests at replicas",
           f"sum by (deployment) (ray_serve_num_ongoing_requests_at_replicas{{{SEL}}})", "{{deployment}}"),
        # the model deployments
        _p("Speech to text: requests by decoder and status",
           f"sum by (decoder, status) (rate(ray_dojo_asr_requests_total{{{SEL}}}[1m]))", "{{decoder}} {{status}}",
           unit="reqps"),
        Panel("Speech to text: latency p50 / p99 (ms)",
              (Target(f"histogram_quantile(0.5, sum by (le, decoder) (rate(ray_dojo_asr_request_latency_ms_bucket"
                      f"{{{SEL}}}[5m])))", "p50 {{decoder}}"),
               Target(f"histogram_quantile(0.99, sum by (le, decoder) (rate(ray_dojo_asr_request_latency_ms_bucket"
                      f"{{{SEL}}}[5m])))", "p99 {{decoder}}")), unit="ms"),
        _p("Speech to text: real-time factor p50",
           f"histogram_quantile(0.5, sum by (le) (rate(ray_dojo_asr_rtf_bucket{{{SEL}}}[5m])))", "RTF"),
        _p("Speech to text: audio seconds per second",
           f"sum(rate(ray_dojo_asr_audio_seconds_total{{{SEL}}}[1m]))", "audio s/s"),
        _p("Speech to text: mean batch size",
           f"sum(rate(ray_dojo_asr_batch_size_sum{{{SEL}}}[5m])) / sum(rate(ray_dojo_asr_batch_size_count{{{SEL}}}[5m]))",
           "utterances per batch"),
        _p("Explanations per second by method",
           f"sum by (method) (rate(ray_dojo_explain_explanations_total{{{SEL}}}[1m]))", "{{method}}", unit="ops"),
        _p("Explanation compute p99 by method (ms)",
           f"histogram_quantile(0.99, sum by (le, method) (rate(ray_dojo_explain_latency_ms_bucket{{{SEL}}}[5m])))",
           "{{method}}", unit="ms"),
        _p("Images embedded per second by endpoint",
           f"sum by (endpoint) (rate(ray_dojo_embed_images_total{{{SEL}}}[1m]))", "{{endpoint}}", unit="ops"),
    ),
)

CLUSTER = Dashboard(
    uid="raydojo-cluster",
    title="Cluster and GPU",
    panels=(
        _p("CPU utilisation by node (%)", f"avg by (NodeAddress) (ray_node_cpu_utilization{{{SEL}}})",
           "{{NodeAddress}}", unit="percent"),
        _p("Memory used by node", f"sum by (NodeAddress) (ray_node_mem_used{{{SEL}}})", "{{NodeAddress}}",
           unit="bytes"),
        _p("Logical CPUs used / total",
           f'sum by (State) (ray_resources{{{SEL}, Name="CPU"}})', "{{State}}"),
        _p("Object store memory used", f"sum by (NodeAddress) (ray_object_store_memory{{{SEL}}})",
           "{{NodeAddress}}", unit="bytes"),
        _p("Active nodes", f"max(ray_cluster_active_nodes{{{SEL}}})", "nodes", kind="stat"),
        _p("Actors by state", f"sum by (State) (ray_actors{{{SEL}}})", "{{State}}"),
        _p("GPU utilisation by node (%)", f"avg by (NodeAddress) (ray_node_gpus_utilization{{{SEL}}})",
           "{{NodeAddress}}", unit="percent", needs="gpu"),
        _p("GPU memory used by node", f"sum by (NodeAddress) (ray_node_gram_used{{{SEL}}})", "{{NodeAddress}}",
           unit="decmbytes", needs="gpu"),
        _p("GPUs used / total", f'sum by (State) (ray_resources{{{SEL}, Name="GPU"}})', "{{State}}", needs="gpu"),
        _p("DCGM GPU utilisation (%)", "avg by (gpu, Hostname) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}} {{gpu}}",
           unit="percent", needs="dcgm"),
    ),
)

DASHBOARDS = (A3C, SWEEPS, SERVING, CLUSTER)


def _var(name: str, query: str) -> dict:
    return {"name": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": name}, "definition": query, "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"selected": True, "text": "All", "value": "$__all"}, "refresh": 2}


def render(d: Dashboard) -> dict:
    """Grafana dashboard JSON (schemaVersion 39)."""
    panels = []
    for i, p in enumerate(d.panels):
        panels.append({
            "id": i + 1,
            "type": p.kind,
            "title": p.title,
            "description": p.description + (f" (needs {p.needs})" if p.needs else ""),
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p.kind == "timeseries" else {},
            "targets": [{"refId": chr(65 + j), "expr": t.expr, "legendFormat": t.legend,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for j, t in enumerate(p.targets)],
        })
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}, "label": "Data source"},
        _var("cluster", "label_values(ray_node_cpu_count, ray_io_cluster)"),
        _var("namespace", 'label_values(ray_node_cpu_count{ray_io_cluster=~"$cluster"}, namespace)'),
        *(_var(n, q) for n, q in d.extra_vars),
    ]
    return {"uid": d.uid, "title": d.title, "tags": ["raydojo"], "timezone": "browser", "schemaVersion": 39,
            "version": 1, "editable": True, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": variables}, "panels": panels}


def rendered() -> dict[str, str]:
    """{file name: JSON text} for every dashboard."""
    return {f"{d.uid}.json": json.dumps(render(d), indent=2, sort_keys=True) + "\n" for d in DASHBOARDS}


DOC = REPO / "docs" / "dashboards.md"
NEEDS = {"gpu": "GPU nodes only", "dcgm": "DCGM exporter only"}


def panel_doc() -> str:
    """docs/dashboards.md: every dashboard's panels and their queries."""
    out = ["# Dashboards\n",
           "Generated by `dojo dashboards render` from `services/platform/dashboards.py` (a test fails when it is",
           "out of date). The JSON is in `deploy/grafana/` and ships with the Helm chart",
           "(`helm/raydojo/dashboards/`, folder \"raydojo\"). Every query filters on the template variables",
           "`$cluster` (`ray_io_cluster`) and `$namespace`; `tests/platform/test_observability.py` evaluates each",
           "one against a real Prometheus scraping a real run.\n"]
    for d in DASHBOARDS:
        out += [f"## {d.title} (`{d.uid}.json`)\n", "| panel | unit | query | data |", "| --- | --- | --- | --- |"]
        for p in d.panels:
            query = "<br>".join(f"`{t.expr}`".replace("|", "\\|") for t in p.targets)
            out.append(f"| {p.title} | {p.unit} | {query} | {NEEDS.get(p.needs, 'always')} |")
        out.append("")
    return "\n".join(out)


def write(out_dirs: tuple[Path, ...] = (OUT_DIR, CHART_DIR), doc: Path | None = DOC) -> list[Path]:
    """Write deploy/grafana/*.json, the Helm chart's copy and docs/dashboards.md; returns the written paths."""
    written = []
    for out in out_dirs:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            (out / name).write_text(text)
            written.append(out / name)
    if doc is not None:
        doc.write_text(panel_doc())
        written.append(doc)
    return written


def main(argv: list[str] | None = None) -> None:
    for p in write():
        print(f"wrote {p.relative_to(REPO)}")


if __name__ == "__main__":
    main()
