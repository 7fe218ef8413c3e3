"""The baselines that a meta-learner has to beat, run in the same harness.

* **joint training** ("pretrain on all tasks, then fine-tune on the K shots", Finn et al.'s
  "pretrained" baseline): the meta-learner's own network is trained on the meta-training
  tasks' losses directly, with no inner loop —
  - sinusoid: the MLP regresses y on x pooled over many random tasks;
  - few-shot: the N-way ConvNet minimises the mean cross-entropy of meta-batches of N-way
    tasks (labels are assigned per task, as for the meta-learners).
* **transfer** (few-shot only; the stronger, standard transfer-learning baseline of
  Chen et al. 2019): the ConvNet classifies *all* meta-train letters with one softmax over
  thousands of classes; for an N-way test task its head is replaced by a zero-initialised
  N-way head (one gradient step from zero is then a nearest-class-mean classifier on the
  pretrained features).
* **training from scratch**: a randomly initialised network (one fixed seeded init).

Joint training and transfer get the meta-learner's data budget: as many iterations, each on
meta-batch × N × (K + Q) examples (Adam). All are then fine-tuned on each test task's
support set by the *same* procedure as the meta-learners (plain gradient descent, the same
number of steps); their step size is chosen per step count from a grid on meta-validation
tasks, which only helps them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from services.maml.evaluate import evaluate
from services.maml.maml import Params
from services.maml.models import ConvNet, params_of
from services.maml.tasks import Family

SINE_LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
FEWSHOT_LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def pretrain_joint(family: Family, *, iterations: int, meta_batch: int, shots: int, queries: int, lr: float,
                   seed: int, device: torch.device | str = "cpu") -> tuple[nn.Module, Params]:
    """Joint training on the meta-training tasks; returns (module for functional_call, parameters)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7)
    model = family.make_model().to(device)
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(iterations):
        sx, sy, qx, qy = family.sample("train", meta_batch, shots, queries, gen)
        x, y = torch.cat([sx, qx], 1), torch.cat([sy, qy], 1)  # (T, examples, ...): all of each task
        out = vmap(lambda xi: functional_call(model, params, (xi,)))(x)  # per task (its own batch statistics)
        loss = vmap(family.loss_fn)(out, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, params_of(model)


def pretrain_transfer(family: Family, *, iterations: int, meta_batch: int, shots: int, queries: int, ways: int,
                      lr: float, seed: int, channels: int = 32,
                      device: torch.device | str = "cpu") -> tuple[nn.Module, Params]:
    """All-class pretraining on the meta-train letters, then a zero N-way head (few-shot only)."""
    from services.maml import glyphs

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7)
    gs = family.data
    big = ConvNet(len(gs.classes("train")), channels).to(device)
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
