"""MAML (Finn et al. 2017) with true second-order meta-gradients, and first-order MAML.

For one task i with support set S_i and query set Q_i, the inner loop adapts the shared
weights θ with a few steps of gradient descent on the support loss,

    θ′ᵢ = θ − α ∇_θ L_S(θ)        (repeated ``steps`` times),

and the outer loop minimises the query loss of the adapted weights over a batch of tasks,

    θ ← θ − β ∇_θ  (1/T) Σᵢ L_Q(θ′ᵢ).

The meta-gradient ∇_θ L_Q(θ′ᵢ) = (∂θ′ᵢ/∂θ)ᵀ ∇L_Q(θ′ᵢ) contains, for one inner step,
(I − α ∇²L_S(θ)): a Hessian. ``torch.func.grad`` of a function that itself calls
``torch.func.grad`` differentiates through the inner steps, so those second-order terms
are exact. First-order MAML treats the inner gradients as constants (``detach``), so
∂θ′ᵢ/∂θ = I and the meta-gradient is just ∇L_Q evaluated at θ′ᵢ.

Tasks of one meta-batch are processed together with ``torch.func.vmap`` (one batched
forward/backward instead of T small ones) or, with ``vmap_tasks=False``, in a loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, y)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean()


def adapt(model: nn.Module, loss_fn: LossFn, params: Params, x: torch.Tensor, y: torch.Tensor,
          lr: float, steps: int, first_order: bool = False) -> Params:
    """θ′ after ``steps`` steps of plain gradient descent on (x, y); differentiable in θ
    (through the inner gradients unless ``first_order``)."""

    def support_loss(p: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (x,)), y)

    for _ in range(steps):
        g = grad(support_loss)(params)
        if first_order:  # drop the second-order terms: the inner gradient is a constant
            g = {k: v.detach() for k, v in g.items()}
        params = {k: params[k] - lr * g[k] for k in params}
    return params


def query_loss(model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, params: Params,
               sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
               lr: float, steps: int, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's meta-objective L_Q(θ′) and its metric (accuracy or MSE) on the query set."""
    adapted = adapt(model, loss_fn, params, sx, sy, lr, steps, first_order)
    out = functional_call(model, adapted, (qx,))
    return loss_fn(out, qy), metric_fn(out, qy).detach()


def meta_gradient(model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, params: Params,
                  batch: tuple[torch.Tensor, ...], lr: float, steps: int, first_order: bool = False,
                  vmap_tasks: bool = True) -> tuple[Params, float, float]:
    """∇_θ (1/T) Σᵢ L_Q(θ′ᵢ) over a meta-batch (sx, sy, qx, qy) with a leading task axis T.

    Returns (meta-gradient, mean query loss, mean query metric).
    """

    def one_task(p, sx, sy, qx, qy):
        return query_loss(model, loss_fn, metric_fn, p, sx, sy, qx, qy, lr, steps, first_order)

    if vmap_tasks:
        def batch_loss(p: Params):
            losses, metrics = vmap(one_task, in_dims=(None, 0, 0, 0, 0), randomness="different")(p, *batch)
            return losses.mean(), metrics.mean()
    else:
        def batch_loss(p: Params):
            out = [one_task(p, *(b[i] for b in batch)) for i in range(batch[0].shape[0])]
            return torch.stack([o[0] for o in out]).mean(), torch.stack([o[1] for o in out]).mean()

    grads, (loss, metric) = grad_and_value(batch_loss, has_aux=True)(params)
    return grads, float(loss), float(metric)


class MetaLearner:
    """MAML / first-order MAML: θ and its outer optimizer (Adam, as in the paper)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, inner_lr: float,
                 inner_steps: int, meta_lr: float, first_order: bool, vmap_tasks: bool = True):
        self.model, self.loss_fn, self.metric_fn = model, loss_fn, metric_fn
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order
        self.vmap_tasks = vmap_tasks
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
        self.opt = torch.optim.Adam(self.params.values(), lr=meta_lr)

    def step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """One meta-iteration on a meta-batch of tasks."""
        detached = {k: v.detach() for k, v in self.params.items()}
        grads, loss, metric = meta_gradient(self.model, self.loss_fn, self.metric_fn, detached, batch,
                                            self.inner_lr, self.inner_steps, self.first_order, self.vmap_tasks)
        self.opt.zero_grad(set_to_none=True)
        for k, p in self.params.items():
            p.grad = grads[k]
        self.opt.step()
        return {"loss": loss, "metric": metric}

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()}, "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
