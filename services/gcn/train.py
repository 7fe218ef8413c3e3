"""``dojo gcn train``: semi-supervised node classification (Kipf & Welling's setting).

Full-batch training on the labelled nodes only; accuracy is measured on every unlabelled node.
For each seed the run trains the chosen graph model and, as the baseline, an MLP on the node
features alone; result.json holds the medians over seeds and every per-seed accuracy.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Literal

import torch
import torch.nn.functional as F

from services.common.config import ConfigError, fail, parse, require, to_dict
from services.common.progress import log, setup_logging
from services.common.rundir import RunDir
from services.gcn.graphs import Graph, karate, sbm
from services.gcn.layers import GCN, MLP


@dataclasses.dataclass
class TrainArgs:
    """Train a two-layer GCN (spectral or spatial) on a graph with a few labelled nodes."""

    graph: Literal["karate", "sbm"] = "karate"
    """karate = Zachary's karate club (one labelled node per club); sbm = stochastic block model."""
    model: Literal["spectral", "spatial"] = "spectral"
    """spectral = Kipf & Welling's Â = D^-1/2 (A+I) D^-1/2; spatial = mean over the node and its neighbours."""
    run_dir: str = "runs/gcn"
    """Where config.json and result.json go."""
    seeds: int = 5
    """Independent trainings (different initialisations); the result reports the median."""
    epochs: int = 200
    """Full-batch training epochs."""
    hidden: int = 16
    """Hidden units."""
    lr: float = 0.01
    """Adam learning rate."""
    weight_decay: float = 5e-4
    """L2 penalty (Adam weight decay)."""
    dropout: float = 0.5
    """Dropout on the input and hidden layer."""
    sbm_nodes: int = 2000
    """SBM: number of nodes."""
    sbm_signal: float = 0.35
    """SBM: feature signal strength (class mean scale against unit noise)."""
    baseline: bool = True
    """Also train the MLP on node features alone (the baseline the GCN must beat)."""
    seed: int = 0
    """First seed (graph generation uses this one; trainings use seed, seed+1, ...)."""

    def validate(self) -> None:
        require(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}")
        require(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        require(self.hidden >= 1, f"--hidden must be >= 1, got {self.hidden}")
        require(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        require(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        require(self.sbm_nodes >= 50, f"--sbm-nodes must be >= 50, got {self.sbm_nodes}")


def build_graph(args: TrainArgs) -> Graph:
    return karate() if args.graph == "karate" else sbm(nodes=args.sbm_nodes, signal=args.sbm_signal, seed=args.seed)


def fit(model: torch.nn.Module, g: Graph, epochs: int = 200, lr: float = 0.01, weight_decay: float = 5e-4,
        seed: int = 0) -> dict[str, Any]:
    """Train ``model`` on ``g``'s labelled nodes; returns accuracy on the unlabelled ones and predictions."""
    torch.manual_seed(seed)
    for p in model.parameters():  # re-initialise under this seed
        if p.dim() > 1:
            torch.nn.init.xavier_uniform_(p)
        else:
            torch.nn.init.zeros_(p)
    a = model.propagation(g.edge_index, g.num_nodes)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        loss = F.cross_entropy(model(g.x, a)[g.train_mask], g.y[g.train_mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        logits = model(g.x, a)
    pred = logits.argmax(1)
    test = ~g.train_mask & (g.y >= 0)
    acc = float((pred[test] == g.y[test]).float().mean()) if test.any() else float("nan")
    return {"accuracy": acc, "pred": pred, "probs": logits.softmax(1), "epochs_per_s": epochs / seconds,
            "final_loss": float(loss.detach())}


def run(args: TrainArgs, g: Graph | None = None) -> dict[str, Any]:
    """Train the model and the MLP baseline for every seed; medians + per-seed accuracies."""
    g = g if g is not None else build_graph(args)
    gcn_acc, mlp_acc, eps = [], [], []
    for s in range(args.seed, args.seed + args.seeds):
        gcn = GCN(g.x.shape[1], args.hidden, g.num_classes, args.dropout, kind=args.model)
        r = fit(gcn, g, args.epochs, args.lr, args.weight_decay, seed=s)
        gcn_acc.append(r["accuracy"])
        eps.append(r["epochs_per_s"])
        if args.baseline:
            mlp = MLP(g.x.shape[1], args.hidden, g.num_classes, args.dropout)
            mlp_acc.append(fit(mlp, g, args.epochs, args.lr, args.weight_decay, seed=s)["accuracy"])
    mlp_med = statistics.median(mlp_acc) if mlp_acc else -1.0  # -1: no baseline trained
    return {
        "graph": g.name, "model": args.model, "nodes": g.num_nodes, "edges": g.num_edges,
        "labelled": int(g.train_mask.sum()), "accuracy": statistics.median(gcn_acc),
        "mlp_accuracy": mlp_med, "gap": statistics.median(gcn_acc) - mlp_med,
        "accuracies": ",".join(f"{a:.4f}" for a in gcn_acc), "mlp_accuracies": ",".join(f"{a:.4f}" for a in mlp_acc),
        "epochs_per_s": statistics.median(eps), "seeds": args.seeds,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args = parse(TrainArgs, argv, prog="dojo gcn train")
    try:
        run_dir = RunDir(args.run_dir).ensure_writable()
    except ConfigError as exc:
        fail("dojo gcn train", str(exc))
    run_dir.write_json("config.json", to_dict(args))
    torch.set_num_threads(1)
    result = run(args)
    run_dir.write_json("result.json", result)
    log.info("%s %s: accuracy %.4f (MLP %.4f) over %d seeds", result["graph"], args.model, result["accuracy"],
             result["mlp_accuracy"], args.seeds)
    return result


if __name__ == "__main__":
    main()
