"""``dojo metric train``: a Siamese (contrastive) or Triplet network on MNIST / Fashion-MNIST.

    P×K batch ──EmbeddingNet (shared weights)──► unit embeddings z (B, D)
      contrastive: every pair of the batch, y·d² + (1−y)·max(0, m−d)²  (the Siamese view)
      triplet:     mined (a, p, n) of the batch, max(0, d(a,p) − d(a,n) + m)

The best weights by validation Recall@1 are exported to ``model.pt`` (fp16 + config), the
test-split index with training centroids to ``index.npz`` (what `/v1/similar` serves), the
held-out metrics to ``result.json`` and a 2-D PCA projection of the test embeddings to
``projection.png``. Resumable from ``checkpoints/`` with ``--resume``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import shutil
import time
from typing import Any, Literal

import numpy as np
import torch

from services.common import checkpoint
from services.common.config import ConfigError, fail, parse, require, to_dict
from services.common.data import DataUnavailable, load
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir
from services.metric import metrics as mm
from services.metric.evaluate import INDEX_FILE, MODEL_FILE, embed, knn_accuracy, map_at_r, recall_at_1
from services.metric.index import EmbeddingIndex
from services.metric.model import EmbeddingNet, batch_contrastive_loss, batch_triplet_loss


@dataclasses.dataclass
class TrainArgs:
    """Train a Siamese (contrastive loss) or Triplet network and evaluate it on held-out data."""

    loss: Literal["contrastive", "triplet"] = "triplet"
    """contrastive = Siamese pairs with a margin; triplet = anchor/positive/negative with a margin."""
    data: Literal["mnist", "fashion"] = "mnist"
    """Data set (train split for training, val for model selection, test for the reported metrics)."""
    run_dir: str = "runs/metric"
    """Where config.json, result.json, model.pt, index.npz, projection.png and checkpoints/ go."""
    mining: Literal["batch-hard", "semi-hard", "all"] = "batch-hard"
    """Triplet mining inside each P×K batch (triplet loss only)."""
    margin: float | None = None
    """Loss margin on unit embeddings (default: 0.2 for triplet, 0.5 for contrastive)."""
    steps: int = 1500
    """Optimiser steps."""
    classes_per_batch: int = 10
    """P: classes in each batch."""
    per_class: int = 16
    """K: images per class in each batch."""
    dim: int = 32
    """Embedding size."""
    width: int = 16
    """Channels of the first conv layer (the others are 2×)."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 5% over the run)."""
    eval_every: int = 250
    """Validation Recall@1 (on 2 000 val images) every this many steps; the best weights are kept."""
    train_images: int = 0
    """Use only the first N training images (0 = all 50 000): for quick smoke runs."""
    seed: int = 0
    """Random seed."""
    threads: int = 1
    """torch CPU threads."""
    resume: bool = False
    """Continue from the newest checkpoint in --run-dir."""
    keep_checkpoints: bool = True
    """Keep checkpoints/ (optimizer state, for --resume) after the run; off for a compact export."""

    def validate(self) -> None:
        require(self.steps >= 1, f"--steps must be >= 1, got {self.steps}")
        require(2 <= self.classes_per_batch <= 10, f"--classes-per-batch must be in 2..10, got {self.classes_per_batch}")
        require(self.per_class >= 2, f"--per-class must be >= 2 (a positive needs two images), got {self.per_class}")
        require(self.dim >= 2, f"--dim must be >= 2, got {self.dim}")
        require(self.width >= 4, f"--width must be >= 4, got {self.width}")
        require(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        require(self.margin is None or self.margin > 0, f"--margin must be > 0, got {self.margin}")
        require(self.eval_every >= 1, f"--eval-every must be >= 1, got {self.eval_every}")
        require(self.train_images >= 0, f"--train-images must be >= 0, got {self.train_images}")
        require(self.threads >= 1, f"--threads must be >= 1, got {self.threads}")

    @property
    def margin_value(self) -> float:
        return self.margin if self.margin is not None else (0.2 if self.loss == "triplet" else 0.5)


def pk_batch(by_class: list[np.ndarray], p: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a P×K batch: ``p`` random classes, ``k`` random images of each."""
    classes = rng.choice(len(by_class), size=p, replace=False)
    return np.concatenate([rng.choice(by_class[c], size=k, replace=False) for c in classes])


def export(run_dir: RunDir, net: EmbeddingNet, config: dict[str, Any]) -> None:
    """model.pt: fp16 state_dict + the config that rebuilds the net (a few hundred KB)."""
    buf = io.BytesIO()
    torch.save({"config": config, "state_dict": {k: v.half() for k, v in net.state_dict().items()}}, buf)
    run_dir.write_bytes(MODEL_FILE, buf.getvalue())


def plot_projection(path: str, emb: torch.Tensor, labels: torch.Tensor, title: str) -> None:
    """2-D PCA of the embeddings, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centred = emb - emb.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()                                              # (N, 2)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=2, alpha=0.6)
    ax.legend(*sc.legend_elements(), title="class", loc="best", fontsize=7, markerscale=1.5)
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def prepare_run_dir(args: TrainArgs) -> RunDir:
    run_dir = RunDir(args.run_dir).ensure_writable()
    has_ckpt = bool(checkpoint.list_steps(run_dir))
    if args.resume and not has_ckpt:
        raise ConfigError(f"--resume: no checkpoint in --run-dir {args.run_dir!r}")
    if not args.resume and (has_ckpt or run_dir.exists(MODEL_FILE)):
        raise ConfigError(f"--run-dir {args.run_dir!r} already holds a run: pass --resume or use a new run-dir")
    return run_dir


def train(args: TrainArgs) -> dict[str, Any]:
    run_dir = prepare_run_dir(args)
    run_dir.write_json("config.json", to_dict(args))
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    x, y = load(args.data, "train")
    if args.train_images:
        x, y = x[: args.train_images], y[: args.train_images]
    xv, yv = load(args.data, "val")
    vsel = np.random.default_rng(1234).choice(len(yv), 2000, replace=False)
    xv, yv = torch.from_numpy(xv[vsel]), torch.from_numpy(yv[vsel])
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    by_class = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]

    net = EmbeddingNet(dim=args.dim, width=args.width)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    step, best, best_state, t_train = 0, -1.0, None, 0.0
    if args.resume:
        step, state = checkpoint.load_latest(run_dir)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        best, best_state, t_train = state["best_recall"], state["best_state"], state["train_seconds"]
        rng = np.random.default_rng([args.seed, step])
        log.info("resumed at step %d (best val Recall@1 %.4f)", step, best)
    m = mm.train_metrics(args.loss, args.data)
    loss_v, active = float("nan"), float("nan")
    with Progress(f"metric {args.loss} {args.data}", total=args.steps, unit="steps") as bar:
        t0 = time.monotonic()
        while step < args.steps:
            net.train()
            idx = torch.from_numpy(pk_batch(by_class, args.classes_per_batch, args.per_class, rng))
            z = net(x_t[idx])                                                     # (P·K, D)
            if args.loss == "triplet":
                loss, active = batch_triplet_loss(z, y_t[idx], args.margin_value, args.mining)
            else:
                loss = batch_contrastive_loss(z, y_t[idx], args.margin_value)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_v = float(loss)
            if step % args.eval_every == 0 or step == args.steps:
                ev = embed(net, xv)
                val_r1 = recall_at_1(ev, yv)
                if val_r1 > best:
                    best, best_state = val_r1, copy.deepcopy(net.state_dict())
                t_train += time.monotonic() - t0
                t0 = time.monotonic()
                checkpoint.save(run_dir, step, {
                    "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "best_recall": best, "best_state": best_state, "train_seconds": t_train})
                m and m.set(mm.VAL_RECALL, val_r1)
                log.info("step %d loss %.4f val Recall@1 %.4f", step, loss_v, val_r1)
            if m is not None:
                m.inc(mm.STEPS, 1)
                m.set(mm.LOSS, loss_v)
            bar.update(step, loss=loss_v, val_r1=max(best, 0.0))
        t_train += time.monotonic() - t0

    net.load_state_dict(best_state)
    config = {"loss": args.loss, "data": args.data, "dim": args.dim, "width": args.width,
              "margin": args.margin_value, "mining": args.mining if args.loss == "triplet" else "",
              "steps": args.steps, "seed": args.seed}
    export(run_dir, net, config)
    # held-out evaluation, index and picture
    xt, yt = load(args.data, "test")
    et, er = embed(net, xt), embed(net, x)
    yt_t = torch.from_numpy(yt)
    index = EmbeddingIndex.build(et, yt_t, er, y_t, split="test")
    run_dir.write_bytes(INDEX_FILE, index.to_bytes())
    result = {
        "loss": args.loss, "data": args.data, "mining": config["mining"], "steps": step,
        "train_seconds": round(t_train, 2), "final_loss": loss_v, "val_recall_at_1": best,
        "recall_at_1": recall_at_1(et, yt_t), "map_at_r": map_at_r(et, yt_t),
        "knn_accuracy": knn_accuracy(et, yt_t, er, y_t, k=5), "anomaly_threshold": index.threshold,
        "test_images": int(len(yt)),
    }
    if run_dir.is_local:
        plot_projection(run_dir.local_path("projection.png"), et, yt_t,
                        f"{args.loss} on {args.data}: test embeddings (PCA), Recall@1 {result['recall_at_1']:.3f}")
    else:
        tmp = f"/tmp/dojo-metric-{time.time_ns()}.png"
        plot_projection(tmp, et, yt_t, f"{args.loss} on {args.data}")
        with open(tmp, "rb") as f:
            run_dir.write_bytes("projection.png", f.read())
    run_dir.write_json("result.json", result)
    if not args.keep_checkpoints:
        for s in checkpoint.list_steps(run_dir):
            run_dir.delete(f"checkpoints/ckpt-{s:010d}.pt")
        if run_dir.is_local:
            shutil.rmtree(run_dir.local_path("checkpoints"), ignore_errors=True)
    log.info("done: Recall@1 %.4f MAP@R %.4f kNN %.4f (%.0f s training)", result["recall_at_1"],
             result["map_at_r"], result["knn_accuracy"], t_train)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args = parse(TrainArgs, argv, prog="dojo metric train")
    try:
        prepare_run_dir(args)
        load(args.data, "val")
    except (ConfigError, DataUnavailable) as exc:
        fail("dojo metric train", str(exc))
    return train(args)


if __name__ == "__main__":
    main()
