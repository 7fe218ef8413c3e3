"""``dojo explain train``: train the models that the explain service serves and explains.

    mnist    GapCNN on MNIST           (50k train / 10k val / 10k test)
    fashion  GapCNN on Fashion-MNIST   (50k train / 10k val / 10k test)
    cancer   TabularMLP on breast cancer, ten named "mean" features (fixed 70/30 split)

Writes ``config.json``, ``checkpoints/ckpt-<n>.pt`` (after each model; ``--resume`` skips the ones
already trained) and ``result.json`` with the test accuracies. The run-dir is what Serve's
ExplainModel loads (``explain_checkpoint``); a small one is committed under deploy/models/explain.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn

from services.common import checkpoint
from services.common.config import ConfigError, fail, parse, require, resolve_auto_resume, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir
from services.explain.models import (
    IMAGE_MODELS,
    MODELS,
    Bundle,
    accuracy,
    class_names,
    image_data,
    make_net,
    tabular_data,
)


@dataclasses.dataclass
class TrainArgs:
    """Train the GAP CNNs (MNIST, Fashion-MNIST) and the tabular MLP (breast cancer) that the service explains."""

    run_dir: str = "runs/explain"
    """Where config.json, result.json and checkpoints/ go (path or pyarrow URI)."""
    image_epochs: int = 4
    """Epochs over the 50k training images (each image model)."""
    tabular_epochs: int = 300
    """Epochs over the breast-cancer training rows (full batch)."""
    max_train_images: int = 0
    """Use only the first N training images per data set (0 = all 50 000); for smoke runs."""
    max_test_images: int = 0
    """Measure test accuracy on the first N test images only (0 = all 10 000); for smoke runs."""
    batch_size: int = 128
    """Image mini-batch size."""
    lr: float = 3e-3
    """Peak learning rate (Adam with a one-cycle schedule)."""
    seed: int = 0
    """Random seed (initialisation, shuffling)."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    resume: bool = False
    """Skip the models already in the newest checkpoint of --run-dir."""
    auto_resume: bool = False
    """Resume when --run-dir already holds checkpoints and start afresh when it holds none, so the same command can
    simply be run again after a crash (the Helm chart's RayJobs pass it: a retried job resumes)."""

    def validate(self) -> None:
        require(self.image_epochs >= 1, f"--image-epochs must be >= 1 (got {self.image_epochs})")
        require(self.tabular_epochs >= 1, f"--tabular-epochs must be >= 1 (got {self.tabular_epochs})")
        require(self.max_train_images >= 0, f"--max-train-images must be >= 0 (got {self.max_train_images})")
        require(self.max_test_images >= 0, f"--max-test-images must be >= 0 (got {self.max_test_images})")
        require(self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})")
        require(self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number (got {self.lr})")
        require(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda (got {self.device!r})")
        require(self.device != "cuda" or torch.cuda.is_available(), "--device cuda: no CUDA device is available")
        require(self.threads >= 0, f"--threads must be >= 0 (got {self.threads})")


def _device(args: TrainArgs) -> torch.device:
    return torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                        else "cpu")


def train_image_model(name: str, args: TrainArgs, device: torch.device) -> Bundle:
    x, y = image_data(name, "train")
    if args.max_train_images:
        x, y = x[: args.max_train_images], y[: args.max_train_images]
    torch.manual_seed(args.seed)
    classes = class_names(name)
    net = make_net("image", len(classes)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.image_epochs * steps_per_epoch)
    xt, yt = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)  # (N, 1, 28, 28), (N,)
    gen = torch.Generator().manual_seed(args.seed)
    bundle = Bundle(name, "image", net, classes, baseline=np.zeros((28, 28), np.float32))
    xv, yv = image_data(name, "val")
    xv, yv = xv[: args.max_test_images or None], yv[: args.max_test_images or None]
    with Progress(f"explain {name}", total=args.image_epochs * steps_per_epoch, unit="batches") as p:
        for epoch in range(args.image_epochs):
            net.train()
            order = torch.randperm(len(xt), generator=gen)
            for i in range(steps_per_epoch):
                idx = order[i * args.batch_size:(i + 1) * args.batch_size]
                loss = nn.functional.cross_entropy(net(xt[idx].to(device)), yt[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                p.update(epoch * steps_per_epoch + i + 1, loss=float(loss))
            net.eval()
            log.info("%s epoch %d/%d: val accuracy %.4f", name, epoch + 1, args.image_epochs,
                     accuracy(bundle, xv, yv))
    return bundle


def train_tabular_model(args: TrainArgs, device: torch.device) -> Bundle:
    x, y, names = tabular_data("train")
    torch.manual_seed(args.seed)
    classes = class_names("cancer")
    net = make_net("tabular", len(classes), len(names)).to(device)
    net.mean.copy_(torch.from_numpy(x.mean(0)))
    net.std.copy_(torch.from_numpy(x.std(0) + 1e-6))
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(args.tabular_epochs):
        loss = nn.functional.cross_entropy(net(xt), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return Bundle("cancer", "tabular", net, classes, names, baseline=x.mean(0).astype(np.float32), reference=x)


def test_accuracy(bundle: Bundle, limit: int = 0) -> float:
    """Accuracy on the held-out test split (its first ``limit`` examples when > 0)."""
    if bundle.kind == "image":
        x, y = image_data(bundle.name, "test")
    else:
        x, y, _ = tabular_data("test")
    return accuracy(bundle, x[:limit or None], y[:limit or None])


def load_bundles(run_dir: str | RunDir, device: str | torch.device = "cpu") -> dict[str, Bundle]:
    """The trained models of a run-dir (its newest checkpoint); FileNotFoundError naming it otherwise."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    found = checkpoint.load_latest(rd)
    if found is None or set(found[1].get("models", {})) != set(MODELS):
        raise FileNotFoundError(f"no complete explain checkpoint in {rd.uri} "
                                f"(create it with: dojo explain train --run-dir {rd.uri})")
    return {name: Bundle.from_state(s, device) for name, s in found[1]["models"].items()}


def run(args: TrainArgs) -> dict:
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    rd = RunDir(args.run_dir).ensure_writable()
    rd.write_json("config.json", to_dict(args))
    device = _device(args)
    done: dict[str, dict] = {}
    found = checkpoint.load_latest(rd) if args.resume or args.auto_resume else None
    resolve_auto_resume(args, found is not None)
    if args.resume and found is not None:
        done = dict(found[1]["models"])
        log.info("resuming: %s already trained", ", ".join(done) or "nothing")
    t0 = time.monotonic()
    for name in MODELS:
        if name in done:
            continue
        bundle = train_image_model(name, args, device) if name in IMAGE_MODELS else train_tabular_model(args, device)
        done[name] = bundle.state()
        checkpoint.save(rd, len(done), {"models": done}, keep=1)
    bundles = {n: Bundle.from_state(s) for n, s in done.items()}
    result: dict = {f"{n}_test_accuracy": test_accuracy(b, args.max_test_images) for n, b in bundles.items()}
    result.update(train_seconds=round(time.monotonic() - t0, 1), device=str(device),
                  image_parameters=sum(p.numel() for p in bundles["mnist"].net.parameters()),
                  checkpoint=checkpoint.list_steps(rd) and rd.path(f"checkpoints/ckpt-{len(done):010d}.pt"))
    rd.write_json("result.json", result)
    log.info("result: %s", result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(TrainArgs, argv, prog="dojo explain train")
    try:
        run(args)
    except ConfigError as exc:
        fail("dojo explain train", str(exc))


if __name__ == "__main__":
    main()
