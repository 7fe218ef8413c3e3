"""``dojo explain eval``: how good are the explanations? Measured, per method, on test images.

- Deletion / insertion curves (Petsiuk et al. 2018, RISE): rank pixels by attribution; delete them
  (set to the black baseline) most-important first and follow the target probability (a faithful map
  makes it fall fast: low deletion AUC), or insert them into a black image (rises fast: high insertion
  AUC). Every method is compared with a random attribution map on the same images.
- Model-randomisation sanity check (Adebayo et al. 2018): re-initialise all weights and explain the
  same images again; an explanation that depends on the model changes. We report the mean Spearman
  rank correlation between the trained and randomised model's maps (near 0 = passes; ≥ 0.5 fails).

Writes ``result.json`` (flat numbers), ``config.json`` and ``examples.png`` to ``--run-dir``; reads
the models from ``--checkpoint`` (a ``dojo explain train`` run-dir; default the committed one).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import time
from typing import Literal

import numpy as np
import torch

from services.common.config import ConfigError, fail, parse, require, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir
from services.explain import images
from services.explain.base import LIMITS, Options
from services.explain.explainers import METHODS
from services.explain.models import Bundle, image_data
from services.explain.train import load_bundles

IMAGE_METHODS = ("cam", "gradcam", "lime", "shap")
SANITY_MAX_SPEARMAN = 0.5


@dataclasses.dataclass
class EvalArgs:
    """Deletion/insertion AUC vs a random baseline and the model-randomisation check, per method."""

    checkpoint: str = "deploy/models/explain"
    """Run-dir of `dojo explain train` whose models are explained."""
    run_dir: str = "runs/explain-eval"
    """Where config.json, result.json and examples.png go (path or pyarrow URI)."""
    datasets: tuple[Literal["mnist", "fashion"], ...] = ("mnist", "fashion")
    """Image models to evaluate."""
    methods: tuple[Literal["cam", "gradcam", "lime", "shap"], ...] = IMAGE_METHODS
    """Methods to evaluate."""
    images: int = 200
    """Test images per data set (the first N of the test split)."""
    sanity_images: int = 50
    """Images for the model-randomisation check."""
    samples: int = 512
    """LIME / SHAP samples per explanation."""
    segments: int = 40
    """LIME / SHAP superpixels per image."""
    steps: int = 28
    """Points on each deletion / insertion curve (784 / steps pixels per step)."""
    seed: int = 0
    """Seed of the samplers, the random baseline and the re-initialisation."""

    def validate(self) -> None:
        require(1 <= self.images <= 10_000, f"--images must be in 1..10000 (got {self.images})")
        require(0 <= self.sanity_images <= self.images, f"--sanity-images must be in 0..--images (got {self.sanity_images})")
        lo, hi = LIMITS["samples"]
        require(lo <= self.samples <= hi, f"--samples must be in {lo}..{hi} (got {self.samples})")
        lo, hi = LIMITS["segments"]
        require(lo <= self.segments <= hi, f"--segments must be in {lo}..{hi} (got {self.segments})")
        require(2 <= self.steps <= 784, f"--steps must be in 2..784 (got {self.steps})")
        require(len(self.datasets) > 0 and len(self.methods) > 0, "--datasets and --methods must not be empty")


def curves(bundle: Bundle, x: np.ndarray, targets: np.ndarray, attributions: np.ndarray, steps: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion AUC per image (N,), ties in the ranking broken at random."""
    n = len(x)
    flat_x, flat_a = x.reshape(n, -1), attributions.reshape(n, -1)  # (N, 784)
    d = flat_x.shape[1]
    order = np.stack([np.lexsort((rng.random(d), -a)) for a in flat_a])  # (N, 784) most important first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(d)[None].repeat(n, 0), axis=1)  # rank of every pixel
    counts = np.round(np.linspace(0, d, steps + 1)).astype(int)  # pixels moved at each point
    moved = rank[:, None, :] < counts[None, :, None]  # (N, S+1, 784)
    baseline = bundle.baseline.reshape(1, 1, d)
    deleted = np.where(moved, baseline, flat_x[:, None])  # (N, S+1, 784)
    inserted = np.where(moved, flat_x[:, None], baseline)

    def score(batch):
        p = bundle.predict_proba(batch.reshape(-1, 28, 28)).reshape(n, steps + 1, -1)  # (N, S+1, K)
        return np.take_along_axis(p, targets[:, None, None], axis=2)[..., 0]  # (N, S+1)

    def auc(curve):  # area under the curve over the fraction of pixels moved, [0, 1]
        return np.trapezoid(curve, dx=1.0 / steps, axis=1)

    return auc(score(deleted)), auc(score(inserted))


def randomised(bundle: Bundle, seed: int) -> Bundle:
    """A copy of the model with every layer re-initialised (the sanity check's cascade, all layers)."""
    net = copy.deepcopy(bundle.net)
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return dataclasses.replace(bundle, net=net.eval())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (average ranks for ties)."""
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def evaluate_dataset(bundle: Bundle, args: EvalArgs, progress: Progress | None = None) -> tuple[dict, dict]:
    """(metrics, example maps) for one image model."""
    x, _ = image_data(bundle.name, "test")
    x = x[: args.images]
    targets = bundle.predict_proba(x).argmax(1)
    opts = Options(samples=args.samples, seed=args.seed, segments=args.segments)
    rng = np.random.default_rng(args.seed)
    out: dict[str, float] = {}
    rand = rng.random(x.shape).astype(np.float32)
    dele, ins = curves(bundle, x, targets, rand, args.steps, rng)
    out[f"{bundle.name}_random_deletion_auc"], out[f"{bundle.name}_random_insertion_auc"] = float(dele.mean()), float(ins.mean())
    examples = {}
    rnd = randomised(bundle, args.seed + 1)
    k = args.sanity_images
    for method in args.methods:
        t0 = time.perf_counter()
        attr = METHODS[method].explain(bundle, x, targets, opts).attributions  # (N, 28, 28)
        ms = (time.perf_counter() - t0) * 1e3 / len(x)
        dele, ins = curves(bundle, x, targets, attr, args.steps, rng)
        p = f"{bundle.name}_{method}"
        out[f"{p}_deletion_auc"], out[f"{p}_insertion_auc"] = float(dele.mean()), float(ins.mean())
        out[f"{p}_deletion_auc_sem"] = float(dele.std(ddof=1) / np.sqrt(len(dele))) if len(dele) > 1 else 0.0
        out[f"{p}_beats_random_deletion"] = int(out[f"{p}_deletion_auc"] < out[f"{bundle.name}_random_deletion_auc"])
        out[f"{p}_ms_per_image"] = round(ms, 2)
        if k:
            attr_r = METHODS[method].explain(rnd, x[:k], targets[:k], opts).attributions
            rho = float(np.mean([spearman(a, b) for a, b in zip(attr[:k], attr_r, strict=True)]))
            out[f"{p}_randomisation_spearman"] = rho
            out[f"{p}_passes_randomisation"] = int(rho < SANITY_MAX_SPEARMAN)
        examples[method] = attr[:4]
        if progress is not None:
            progress.update(progress.done + 1, method=p)
        log.info("%s: deletion %.4f (random %.4f), insertion %.4f (random %.4f), %.1f ms/image", p,
                 out[f"{p}_deletion_auc"], out[f"{bundle.name}_random_deletion_auc"], out[f"{p}_insertion_auc"],
                 out[f"{bundle.name}_random_insertion_auc"], ms)
    examples["input"] = x[:4]
    return out, examples


def example_grid(examples: dict[str, dict], methods: tuple[str, ...], scale: int = 4) -> bytes:
    """PNG: one row per (data set, image), columns = input then each method's overlay."""
    from PIL import Image

    side = 28 * scale
    rows = [(ds, i) for ds in examples for i in range(len(examples[ds]["input"]))]
    grid = Image.new("RGB", (side * (len(methods) + 1), side * len(rows)), "black")
    for r, (ds, i) in enumerate(rows):
        gray = (np.clip(examples[ds]["input"][i], 0, 1) * 255).astype(np.uint8)
        big = np.asarray(Image.fromarray(gray).resize((side, side), Image.Resampling.NEAREST))
        grid.paste(Image.fromarray(big).convert("RGB"), (0, r * side))
        for c, m in enumerate(methods, start=1):
            grid.paste(images.overlay(big, examples[ds][m][i]), (c * side, r * side))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def run(args: EvalArgs) -> dict:
    setup_logging()
    try:
        bundles = load_bundles(args.checkpoint)
    except FileNotFoundError as exc:
        raise ConfigError(f"--checkpoint: {exc}") from exc
    rd = RunDir(args.run_dir).ensure_writable()
    rd.write_json("config.json", to_dict(args))
    result: dict = {"images": args.images, "samples": args.samples, "segments": args.segments, "steps": args.steps}
    examples = {}
    t0 = time.monotonic()
    with Progress("explain eval", total=len(args.datasets) * len(args.methods), unit="methods") as p:
        for ds in args.datasets:
            metrics, examples[ds] = evaluate_dataset(bundles[ds], args, p)
            result.update(metrics)
    result["eval_seconds"] = round(time.monotonic() - t0, 1)
    rd.write_bytes("examples.png", example_grid(examples, args.methods))
    rd.write_json("result.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(EvalArgs, argv, prog="dojo explain eval")
    try:
        run(args)
    except ConfigError as exc:
        fail("dojo explain eval", str(exc))


if __name__ == "__main__":
    main()
