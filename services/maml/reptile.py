"""Reptile (Nichol, Achiam & Schulman 2018): move θ towards the weights adapted to each task.

    φᵢ = θ after k steps of gradient descent on all of task i's examples
    θ ← θ + ε · (1/T) Σᵢ (φᵢ − θ)

No query loss and no differentiation through the inner loop: the "meta-gradient" is the
difference of weights before and after the inner loop. With k = 1 this is joint training
on the tasks' losses; with k > 1 the expansion of φᵢ − θ contains the same
gradient-alignment terms that MAML gets from its Hessian. As the paper suggests, θ − φ̄ is
handed to Adam as a gradient, so ``meta_lr`` means the same thing as for MAML.
The inner steps of all tasks of a meta-batch run at once under ``torch.func.vmap``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from services.maml.maml import LossFn, Params, adapt


def reptile_direction(model: nn.Module, loss_fn: LossFn, params: Params, x: torch.Tensor, y: torch.Tensor,
                      lr: float, steps: int, vmap_tasks: bool = True) -> Params:
    """θ − mean over tasks of φᵢ, for x, y with a leading task axis T."""
    if vmap_tasks:
        phi = vmap(lambda xi, yi: adapt(model, loss_fn, params, xi, yi, lr, steps),
                   randomness="different")(x, y)  # each (T, *param shape)
        return {k: params[k] - phi[k].mean(0) for k in params}
    phis = [adapt(model, loss_fn, params, x[i], y[i], lr, steps) for i in range(x.shape[0])]
    return {k: params[k] - torch.stack([p[k] for p in phis]).mean(0) for k in params}


class Reptile:
    """θ and its outer optimizer; ``step`` takes the same meta-batch as MAML's."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, inner_lr: float,
                 inner_steps: int, meta_lr: float, vmap_tasks: bool = True):
        self.model, self.loss_fn, self.metric_fn = model, loss_fn, metric_fn
        self.inner_lr, self.inner_steps, self.vmap_tasks = inner_lr, inner_steps, vmap_tasks
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
        self.opt = torch.optim.Adam(self.params.values(), lr=meta_lr)

    def step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        sx, sy, qx, qy = batch
        x, y = torch.cat([sx, qx], 1), torch.cat([sy, qy], 1)  # all of the task's examples
        theta = {k: v.detach() for k, v in self.params.items()}
        with torch.no_grad():  # torch.func.grad inside still works; nothing outer is recorded
            direction = reptile_direction(self.model, self.loss_fn, theta, x, y, self.inner_lr,
                                          self.inner_steps, self.vmap_tasks)
            out = vmap(lambda p_x: torch.func.functional_call(self.model, theta, (p_x,)))(x)
            loss = float(vmap(self.loss_fn)(out, y).mean())
            metric = float(vmap(self.metric_fn)(out, y).mean())
        self.opt.zero_grad(set_to_none=True)
        for k, p in self.params.items():
            p.grad = direction[k]
        self.opt.step()
        return {"loss": loss, "metric": metric}

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()}, "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
