"""``dojo asr data``: render the synthesised corpus into ``<run-dir>/data`` (cached, deterministic from the seed)."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.asr import corpus
from services.common.config import ConfigError, fail, parse, require
from services.common.progress import log, setup_logging
from services.common.rundir import RunDir


@dataclasses.dataclass
class DataArgs:
    """Synthesise the training, validation and test corpora (espeak-ng) and the other-synthesiser set (flite)."""

    run_dir: str = "runs/asr"
    """Run directory; the splits go to <run-dir>/data/<split>.npz with data/manifest.json."""
    seed: int = 0
    """Seed of the corpus plan: the same seed renders the same audio."""
    n_train: int = corpus.DEFAULT_SIZES["train"]
    """Training utterances (training accents and variants)."""
    n_val: int = corpus.DEFAULT_SIZES["val"]
    """Validation utterances (training voices)."""
    pico_share: float = 0.0
    """Share of the recorded-speaker training and validation utterances read by SVOX Pico (as `dojo asr train`)."""
    n_test: int = corpus.DEFAULT_SIZES["test"]
    """Test utterances (held-out accents and/or variants)."""
    n_other: int = corpus.DEFAULT_SIZES["other"]
    """Utterances of the other synthesiser (flite), never used in training."""
    workers: int = 0
    """Ray tasks rendering at a time (0 = the cluster's CPU count)."""

    def validate(self) -> None:
        for name in ("n_train", "n_val", "n_test", "n_other"):
            require(getattr(self, name) >= 0, f"--{name.replace('_', '-')} must be >= 0 (got {getattr(self, name)})")
        require(self.workers >= 0, f"--workers must be >= 0 (got {self.workers})")
        require(0 <= self.pico_share <= 1, f"--pico-share must be in [0, 1] (got {self.pico_share})")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from services.common.ray_utils import init_ray, shutdown_ray_if_local

    setup_logging()
    args = parse(DataArgs, argv, prog="dojo asr data")
    try:
        run_dir = RunDir(args.run_dir).ensure_writable()
        workers = args.workers or max(1, int(init_ray().get("CPU", 1)))
        sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test, "other": args.n_other}
        corpus.ensure(run_dir, sizes, args.seed, workers, args.pico_share)
        manifest = run_dir.read_json("data/manifest.json")
        log.info("asr data: %s", {k: (v["n"], v["audio_s"]) for k, v in manifest.items()})
        return manifest
    except ConfigError as exc:
        fail("dojo asr data", str(exc))
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()
