"""The two baselines that a meta-learner has to beat, run in the same harness.

* **joint training** ("pretrain on all tasks, then fine-tune on the K shots"):
  - sinusoid: the MLP regresses y on x pooled over many random tasks (Finn et al.'s
    "pretrained" baseline);
  - few-shot: the ConvNet classifies *all* meta-train letters at once (one softmax over
    thousands of classes, the standard transfer-learning baseline); for an N-way test task
    its head is replaced by a zero-initialised N-way head.
  It gets the meta-learner's data budget: as many iterations, each on as many examples
  (meta-batch × N × (K + Q)).
* **training from scratch**: a randomly initialised network (one fixed seeded init).

Both are then fine-tuned on each test task's support set by the *same* procedure as the
meta-learners (plain gradient descent, the same number of steps); their step size is chosen
per step count from a grid on meta-validation tasks, which only helps them.
"""

from __future__ import annotations

import torch
from torch import nn

from services.maml.evaluate import evaluate
from services.maml.maml import Params
from services.maml.models import ConvNet, params_of
from services.maml.tasks import Family

SINE_LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
FEWSHOT_LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def pretrain_joint(family: Family, *, iterations: int, meta_batch: int, shots: int, queries: int, ways: int,
                   lr: float, seed: int, channels: int = 32,
                   device: torch.device | str = "cpu") -> tuple[nn.Module, Params]:
    """Joint training; returns (module for functional_call, its parameters for N-way tasks)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7)
    if family.name == "sinusoid":
        model = family.make_model().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(iterations):
            sx, sy, qx, qy = family.sample("train", meta_batch, shots, queries, gen)
            x, y = torch.cat([sx, qx], 1).reshape(-1, 1), torch.cat([sy, qy], 1).reshape(-1, 1)  # (T·(K+Q), 1)
            loss = family.loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, params_of(model)
    from services.maml import glyphs

    gs = family.data
    n_classes = len(gs.classes("train"))
    big = ConvNet(n_classes, channels).to(device)
    opt = torch.optim.Adam(big.parameters(), lr=lr)
    per_iter = meta_batch * ways * (shots + queries)
    for _ in range(iterations):
        x, y = glyphs.sample_images(gs, "train", per_iter, gen)
        x, y = x.to(device), y.to(device)
        loss = family.loss_fn(big(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model = ConvNet(ways, channels).to(device)
    params = params_of(model)
    for k, v in big.named_parameters():
        if k.startswith("features."):
            params[k] = v.detach().clone()
    params["head.weight"] = torch.zeros_like(params["head.weight"])
    params["head.bias"] = torch.zeros_like(params["head.bias"])
    return model, params


def scratch(family: Family, seed: int, device: torch.device | str = "cpu") -> tuple[nn.Module, Params]:
    torch.manual_seed(seed + 13)
    model = family.make_model().to(device)
    return model, params_of(model)


def tune_lr(family: Family, model: nn.Module, params: Params, *, grid: tuple[float, ...], steps: tuple[int, ...],
            shots: int, queries: int, tasks: int, seed: int) -> dict[int, float]:
    """The best fine-tuning step size for each step count, on meta-validation tasks."""
    best: dict[int, tuple[float, float]] = {}
    for lr in grid:
        scores = evaluate(family, model, params, split="val", tasks=tasks, shots=shots, queries=queries,
                          lr=lr, steps=steps, seed=seed)
        for s, sc in scores.items():
            if s not in best or family.better(sc.mean, best[s][1]):
                best[s] = (lr, sc.mean)
    return {s: lr for s, (lr, _) in best.items()}
