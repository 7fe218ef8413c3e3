"""Reptile (Nichol, Achiam & Schulman 2018): move θ towards the weights adapted to each task.

    φᵢ = θ after k steps of gradient descent on all of task i's examples
    θ ← θ + ε · (1/T) Σᵢ (φᵢ − θ)

No query loss and no differentiation through the inner loop: the "meta-gradient" is the
difference of weights before and after the inner loop. With k = 1 this is joint training
on the tasks' losses; with k > 1 steps on *different* mini-batches of the task, the
expansion of φᵢ − θ contains the same gradient-alignment terms that MAML gets from its
Hessian. As in the paper's few-shot experiments, the outer step size ε (``meta_lr``,
default 1.0) decays linearly to 0 over the run, and the inner loop uses all of a task's
examples (support and query) in K-per-class mini-batches.
The inner steps of all tasks of a meta-batch run at once under ``torch.func.vmap``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from services.maml.maml import LossFn, Params, adapt


def minibatches(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, ways: int,
                steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner loop's data: step s trains on a K-per-class slice of the task's examples
    (the support set first, then slices of the query set, cycling), so every inner batch has
    the shape of a test-time support set (batch-norm statistics included).

    (T, N·K, ...), (T, N·Q, ...) → (T, steps, N·K, ...) for x and y; ways = 1 for regression.
    """
    t, k, q = sx.shape[0], sx.shape[1] // ways, qx.shape[1] // ways

    def per_class(s, qq):  # (T, N, K+Q, ...)
        return torch.cat([s.reshape(t, ways, k, *s.shape[2:]), qq.reshape(t, ways, q, *qq.shape[2:])], 2)

    x, y = per_class(sx, qx), per_class(sy, qy)
    chunks = [j % ((k + q) // k) for j in range(steps)]
    xs = torch.stack([x[:, :, j * k:(j + 1) * k] for j in chunks], 1)  # (T, S, N, K, ...)
    ys = torch.stack([y[:, :, j * k:(j + 1) * k] for j in chunks], 1)
    return xs.flatten(2, 3), ys.flatten(2, 3)  # (T, S, N·K, ...)


def reptile_direction(model: nn.Module, loss_fn: LossFn, params: Params, xs: torch.Tensor, ys: torch.Tensor,
                      lr: float, vmap_tasks: bool = True) -> Params:
    """θ − mean over tasks of φᵢ; xs, ys: (T, steps, B, ...), one gradient step per slice."""

    def one(x: torch.Tensor, y: torch.Tensor) -> Params:
        p = params
        for s in range(x.shape[0]):
            p = adapt(model, loss_fn, p, x[s], y[s], lr, 1)
        return p

    if vmap_tasks:
        phi = vmap(one, randomness="different")(xs, ys)  # each (T, *param shape)
        return {k: params[k] - phi[k].mean(0) for k in params}
    phis = [one(xs[i], ys[i]) for i in range(xs.shape[0])]
    return {k: params[k] - torch.stack([p[k] for p in phis]).mean(0) for k in params}


class Reptile:
    """θ and the step counter of the annealed outer step size; ``step`` takes the same meta-batch as MAML's."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, inner_lr: float,
                 inner_steps: int, meta_lr: float, total_iterations: int, ways: int = 1, vmap_tasks: bool = True):
        self.model, self.loss_fn, self.metric_fn = model, loss_fn, metric_fn
        self.inner_lr, self.inner_steps, self.vmap_tasks = inner_lr, inner_steps, vmap_tasks
        self.meta_lr, self.total_iterations, self.t, self.ways = meta_lr, total_iterations, 0, ways
        self.params = {k: v.detach().clone() for k, v in model.named_parameters()}

    def step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        sx, sy, qx, qy = batch
        theta = self.params
        with torch.no_grad():  # torch.func.grad inside still works; nothing outer is recorded
            out = vmap(lambda xi: torch.func.functional_call(self.model, theta, (xi,)))(sx)
            loss = float(vmap(self.loss_fn)(out, sy).mean())  # on the support sets, before adaptation
            metric = float(vmap(self.metric_fn)(out, sy).mean())
            xs, ys = minibatches(sx, sy, qx, qy, self.ways, self.inner_steps)
            direction = reptile_direction(self.model, self.loss_fn, theta, xs, ys, self.inner_lr, self.vmap_tasks)
            eps = self.meta_lr * max(0.0, 1.0 - self.t / self.total_iterations)
            self.params = {k: theta[k] - eps * direction[k] for k in theta}  # θ + ε (φ̄ − θ)
        self.t += 1
        return {"loss": loss, "metric": metric}

    def state_dict(self) -> dict:
        return {"params": {k: v.clone() for k, v in self.params.items()}, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.params = {k: v.clone() for k, v in state["params"].items()}
        self.t = state["t"]
