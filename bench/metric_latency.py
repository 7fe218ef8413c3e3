"""Latency of /v1/embed and /v1/similar: sequential HTTP requests against a local Serve app with the
committed triplet checkpoint (p50/p99), and the same calls on the deployment's class in-process.

    .venv/bin/python bench/metric_latency.py --requests 200 > bench/results/metric_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CKPT = str(REPO / "deploy" / "models" / "metric" / "triplet-mnist")


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2)


def summary(ms: list[float]) -> dict:
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "mean_ms": round(statistics.mean(ms), 2), "n": len(ms)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()
    from ray import serve

    from services.common.data import load
    from services.common.ray_utils import init_ray
    from services.metric.serve import EmbedModel
    from services.serve.app import build_app

    x, _ = load("mnist", "test")
    # in-process: the deployment's class without Ray
    model = EmbedModel.func_or_class(CKPT)
    out: dict = {"load_avg_1m": os.getloadavg()[0]}
    for name, call in (("embed_inprocess", lambda i: model.embed(x[i])),
                       ("similar_inprocess", lambda i: model.similar(x[i], a.k))):
        ms = []
        for i in range(a.requests):
            t0 = time.perf_counter()
            call(i)
            ms.append((time.perf_counter() - t0) * 1e3)
        out[name] = summary(ms[5:])
    init_ray(num_cpus=4)
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app({"embed_checkpoint": CKPT, "api_keys_env": "DOJO_BENCH_NO_KEYS"}), name="bench",
              route_prefix="/bench")
    url = "http://127.0.0.1:8000/bench"
    with httpx.Client(timeout=60) as c:
        for route, extra in (("/v1/embed", {}), ("/v1/similar", {"k": a.k})):
            ms = []
            for i in range(a.requests):
                body = {"pixels": x[i].tolist(), **extra}
                t0 = time.perf_counter()
                r = c.post(url + route, json=body)
                ms.append((time.perf_counter() - t0) * 1e3)
                assert r.status_code == 200, r.text
            out[route.split("/")[-1] + "_http"] = summary(ms[5:])
            print(route, out[route.split("/")[-1] + "_http"], file=sys.stderr, flush=True)
    serve.delete("bench")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
