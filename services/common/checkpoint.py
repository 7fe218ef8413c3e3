"""Checkpoints on a RunDir: ``checkpoints/ckpt-<step>.pt`` written atomically, the last N kept."""

from __future__ import annotations

import io
import re
from typing import Any

import torch

from services.common.rundir import RunDir

_NAME = re.compile(r"^ckpt-(\d{10})\.pt$")


def save(run_dir: RunDir, step: int, state: dict[str, Any], keep: int = 3) -> str:
    """Serialise ``state`` (tensors, numbers, dicts) as checkpoint ``step``; prune old ones."""
    buf = io.BytesIO()
    torch.save(state, buf)
    name = f"checkpoints/ckpt-{step:010d}.pt"
    run_dir.write_bytes(name, buf.getvalue())
    for old in list_steps(run_dir)[:-keep] if keep > 0 else []:
        run_dir.delete(f"checkpoints/ckpt-{old:010d}.pt")
    return run_dir.path(name)


def list_steps(run_dir: RunDir) -> list[int]:
    return sorted(int(m.group(1)) for n in run_dir.listdir("checkpoints") if (m := _NAME.match(n)))


def load_latest(run_dir: RunDir, map_location: str = "cpu") -> tuple[int, dict[str, Any]] | None:
    """(step, state) of the newest checkpoint, or None when the run has none."""
    steps = list_steps(run_dir)
    if not steps:
        return None
    data = run_dir.read_bytes(f"checkpoints/ckpt-{steps[-1]:010d}.pt")
    return steps[-1], torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
