"""GCN training speed vs graph size: full-batch epochs/s of the two-layer GCN (spectral and
spatial) on stochastic block models of 1k .. 100k nodes (≈ 8 neighbours per node), CPU.

    .venv/bin/python bench/gcn_scaling.py --sizes 1000 10000 100000 > bench/results/gcn_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from services.gcn.graphs import sbm
from services.gcn.layers import GCN


def epochs_per_s(kind: str, g, epochs: int) -> float:
    model = GCN(g.x.shape[1], 16, g.num_classes, 0.5, kind=kind)
    a = model.propagation(g.edge_index, g.num_nodes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for i in range(epochs + 2):
        if i == 2:
            t0 = time.perf_counter()  # two warm-up epochs
        loss = torch.nn.functional.cross_entropy(model(g.x, a)[g.train_mask], g.y[g.train_mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return epochs / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for n in a.sizes:
        t0 = time.perf_counter()
        g = sbm(nodes=n, seed=0)
        gen_s = time.perf_counter() - t0
        for kind in ("spectral", "spatial"):
            rows.append({"nodes": n, "edges": g.num_edges, "model": kind, "epochs_per_s": round(epochs_per_s(kind, g, a.epochs), 2),
                         "graph_build_s": round(gen_s, 2)})
            print(json.dumps(rows[-1]), flush=True, file=__import__("sys").stderr)
    print(json.dumps({"threads": a.threads, "load_avg_1m": os.getloadavg()[0], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
