"""Retrieval metrics on held-out data and ``dojo metric eval``.

- Recall@1: share of queries whose nearest other item has the query's label.
- MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"): for a query with R
  same-class items among the others, the mean over its R nearest of precision@i at each
  relevant position i (irrelevant positions count 0), divided by R.
- kNN accuracy: majority vote of the k nearest *training* embeddings.
All neighbours are by Euclidean distance between unit-length embeddings.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from typing import Any, Literal

import numpy as np
import torch

from services.common.config import ConfigError, fail, parse, require
from services.common.data import load
from services.common.rundir import RunDir
from services.metric.model import EmbeddingNet, build_embedding

MODEL_FILE, INDEX_FILE = "model.pt", "index.npz"


@torch.no_grad()
def embed(net: EmbeddingNet, images: np.ndarray | torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """(N, 28, 28) images in [0, 1] → (N, D) embeddings, in eval mode, on the net's device."""
    net.eval()
    device = next(net.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32)
    return torch.cat([net(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def recall_at_1(emb: torch.Tensor, labels: torch.Tensor, chunk: int = 2048) -> float:
    """Leave-one-out Recall@1 within ``emb`` (N, D)."""
    hits = 0
    for s in _chunks(len(emb), chunk):
        d = torch.cdist(emb[s], emb)                                              # (C, N)
        d[torch.arange(d.shape[0]), torch.arange(s.start, s.stop)] = float("inf")
        hits += int((labels[d.argmin(1)] == labels[s]).sum())
    return hits / len(emb)


def map_at_r(emb: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> float:
    """Leave-one-out MAP@R within ``emb`` (N, D)."""
    counts = torch.bincount(labels)
    r_all = counts[labels] - 1                                                    # (N,) R per query
    r_max = int(r_all.max())
    total = 0.0
    for s in _chunks(len(emb), chunk):
        d = torch.cdist(emb[s], emb)
        d[torch.arange(d.shape[0]), torch.arange(s.start, s.stop)] = float("inf")
        idx = d.topk(r_max, dim=1, largest=False).indices                         # (C, r_max)
        rel = (labels[idx] == labels[s, None]).float()
        r = r_all[s].float()
        ranks = torch.arange(1, r_max + 1, dtype=torch.float32)
        within = (ranks[None, :] <= r[:, None]).float()
        rel = rel * within
        prec = rel.cumsum(1) / ranks[None, :]
        total += float(((prec * rel).sum(1) / r.clamp_min(1)).sum())
    return total / len(emb)


def knn_accuracy(q: torch.Tensor, ql: torch.Tensor, ref: torch.Tensor, rl: torch.Tensor, k: int = 5,
                 chunk: int = 1024) -> float:
    """Majority vote of the ``k`` nearest references (ties → the nearer neighbour's class)."""
    n_cls = int(max(ql.max(), rl.max())) + 1
    hits = 0
    for s in _chunks(len(q), chunk):
        d, idx = torch.cdist(q[s], ref).topk(k, dim=1, largest=False)             # (C, k)
        votes = torch.zeros(d.shape[0], n_cls)
        votes.scatter_add_(1, rl[idx], torch.ones_like(d) + 1e-3 / (1 + torch.arange(k)))  # rank tie-break
        hits += int((votes.argmax(1) == ql[s]).sum())
    return hits / len(q)


def retrieval_metrics(net: EmbeddingNet, data: str, split: str = "test", knn_k: int = 5,
                      reference: str = "train") -> dict[str, float]:
    """Recall@1, MAP@R (within ``split``) and kNN accuracy (vs ``reference``) of a trained net."""
    x, y = load(data, split)
    xr, yr = load(data, reference)
    e, er = embed(net, x), embed(net, xr)
    y_t, yr_t = torch.as_tensor(y), torch.as_tensor(yr)
    return {
        "recall_at_1": recall_at_1(e, y_t),
        "map_at_r": map_at_r(e, y_t),
        "knn_accuracy": knn_accuracy(e, y_t, er, yr_t, k=knn_k),
        "n_queries": int(len(y)),
    }


def load_model(run_dir: str | RunDir, device: str = "cpu") -> tuple[EmbeddingNet, dict[str, Any]]:
    """The exported embedding net (``model.pt``: fp16 weights + config) of a run-dir."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not rd.exists(MODEL_FILE):
        raise FileNotFoundError(f"no {MODEL_FILE} in {rd.uri} (create it with: dojo metric train --run-dir {rd.uri})")
    blob = torch.load(io.BytesIO(rd.read_bytes(MODEL_FILE)), map_location="cpu", weights_only=False)
    net = build_embedding(blob["config"])
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return net.to(device).eval(), blob["config"]


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a trained embedding (its model.pt) on held-out data."""

    run_dir: str = "runs/metric"
    """Run-dir of `dojo metric train` (or a committed model under deploy/models/metric/)."""
    split: Literal["test", "val"] = "test"
    """Held-out split of the run's data set to evaluate on."""
    knn_k: int = 5
    """Neighbours in the kNN-accuracy vote (references: the training split)."""
    out: str | None = None
    """Also write the metrics as JSON to this file."""

    def validate(self) -> None:
        require(self.knn_k >= 1, f"--knn-k must be >= 1, got {self.knn_k}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(EvalArgs, argv, prog="dojo metric eval")
    try:
        net, config = load_model(args.run_dir)
    except (FileNotFoundError, ConfigError) as exc:
        fail("dojo metric eval", str(exc))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    result = {"loss": config["loss"], "data": config["data"], "split": args.split,
              **retrieval_metrics(net, config["data"], args.split, args.knn_k)}
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
