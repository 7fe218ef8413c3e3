"""Cost of one training step of the speech model, by part of the recipe: one process's share of a batch.

    .venv/bin/python bench/asr_train_step.py [--threads 1] [--batch 16] [--frames 250] [--repeats 15]

A whole step as ``dojo asr train`` takes it (bf16 autocast where the CPU has it, CTC loss, backward,
gradient clipping, AdamW) on random log-mel features of realistic shape, for four variants of the model:

- ``nn.Dropout``: per-element dropout, as the model had before;
- ``locked dropout``: one mask per utterance (the model now);
- ``+ intermediate CTC``: the first layer's CTC loss through the same output layer (training only);
- ``+ self-conditioning``: that layer's posteriors fed to the second layer (the recipe now).

Prints JSON with the median milliseconds per step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from services.asr.model import CTCModel, LockedDropout, ModelConfig
from services.asr.train import ctc_objective, use_bf16


def per_element_dropout(model: CTCModel) -> CTCModel:
    """The same network with ``nn.Dropout`` wherever it has ``LockedDropout``."""
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, LockedDropout):
                setattr(mod, child_name, nn.Dropout(child.p))
    return model


def random_batch(batch: int, frames: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Random log-mel features of realistic shape (lengths 80–100 % of ``frames``) with 10–20-symbol targets."""
    x = torch.randn(batch, frames, 80, device=device)
    lengths = torch.randint(int(frames * 0.8), frames + 1, (batch,), device=device)
    lengths[0] = frames
    targets = torch.randint(1, 28, (batch, 20), device=device)
    target_len = torch.randint(10, 21, (batch,), device=device)
    return x, lengths, targets, target_len


def train_step(model: CTCModel, opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...], inter_w: float,
               device: str = "cpu", bf16: bool = False) -> float:
    """Seconds of one training step as ``dojo asr train`` takes it: autocast forward, CTC, backward, clipping, AdamW."""
    x, lengths, targets, target_len = batch
    ctc = nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    model.train()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = model(x, lengths, intermediate=inter_w > 0)
    loss = ctc_objective(ctc, out, targets, target_len, inter_w)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="utterances per process and step")
    ap.add_argument("--frames", type=int, default=250, help="longest utterance, in 10 ms input frames")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bf16 = use_bf16("auto", "cpu")
    batch = random_batch(args.batch, args.frames)
    variants = {
        "nn.Dropout (before)": (per_element_dropout(CTCModel(ModelConfig())), 0.0),
        "locked dropout": (CTCModel(ModelConfig()), 0.0),
        "+ intermediate CTC 0.3": (CTCModel(ModelConfig()), 0.3),
        "+ self-conditioning (now)": (CTCModel(ModelConfig(self_condition=True)), 0.3),
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every variant alike
        for name, (model, w) in variants.items():
            times[name].append(train_step(model, opts[name], batch, w, bf16=bf16))
    out = {"threads": args.threads, "batch": args.batch, "frames": args.frames,
           "precision": "bf16" if bf16 else "fp32",
           "ms_per_step": {k: round(sorted(v)[len(v) // 2] * 1e3, 1) for k, v in times.items()}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
