"""The meta-gradients against independent references (plain autograd, explicit Hessians,
finite differences), in float64 on tiny networks."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from services.maml.maml import accuracy, cross_entropy, meta_gradient, mse
from services.maml.models import ConvNet, SineMLP
from services.maml.reptile import minibatches, reptile_direction
from services.maml.tasks import sample_sinusoids

pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def sine_case(tasks=3, shots=4):
    torch.manual_seed(0)
    model = SineMLP(hidden=6).double()
    batch = tuple(t.double() for t in sample_sinusoids(tasks, shots, 5, torch.Generator().manual_seed(1)))
    return model, mse, mse, batch, 0.05


def conv_case(tasks=2, ways=3):
    torch.manual_seed(0)
    model = ConvNet(ways, channels=2).double()
    g = torch.Generator().manual_seed(2)
    sx, qx = torch.rand(tasks, ways * 2, 1, 28, 28, generator=g), torch.rand(tasks, ways * 3, 1, 28, 28, generator=g)
    sy = torch.arange(ways).repeat(2).expand(tasks, -1)
    qy = torch.arange(ways).repeat(3).expand(tasks, -1)
    return model, cross_entropy, accuracy, (sx, sy, qx, qy), 0.3


CASES = {"sine": sine_case, "conv": conv_case}


def flat(params):
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflat(vec, like):
    out, i = {}, 0
    for k, p in like.items():
        out[k] = vec[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


def reference_meta_loss(model, loss_fn, theta_vec, like, batch, lr, steps):
    """F(θ) = mean_i L_Q(θ′ᵢ) with the inner loop written with torch.autograd (not torch.func)."""
    sx, sy, qx, qy = batch
    total = 0.0
    for i in range(sx.shape[0]):
        p = theta_vec
        for _ in range(steps):
            if not p.requires_grad:
                p = p.detach().requires_grad_(True)
            loss = loss_fn(functional_call(model, unflat(p, like), (sx[i],)), sy[i])
            (g,) = torch.autograd.grad(loss, p, create_graph=True)
            p = p - lr * g
        total = total + loss_fn(functional_call(model, unflat(p, like), (qx[i],)), qy[i])
    return total / sx.shape[0]


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("case", ["sine", "conv"])
def test_second_order_meta_gradient_matches_finite_differences(case, steps):
    model, loss_fn, metric_fn, batch, lr = CASES[case]()
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads, _, _ = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, steps, first_order=False)
    theta, g = flat(params), flat(grads)
    eps = 1e-6
    # Directional derivatives: every coordinate of the small MLP, 6 random directions of the ConvNet.
    # Unit directions keep the step tiny: ReLU kinks make the inner gradient (so θ′) jump, and a
    # central difference straddling one would measure the jump, not the derivative.
    if case == "sine":
        dirs = torch.eye(len(theta))
    else:
        dirs = torch.randn(6, len(theta), generator=torch.Generator().manual_seed(3))
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
    fd = torch.empty(len(dirs))
    for j, d in enumerate(dirs):
        with torch.enable_grad():
            hi = reference_meta_loss(model, loss_fn, theta + eps * d, params, batch, lr, steps)
            lo = reference_meta_loss(model, loss_fn, theta - eps * d, params, batch, lr, steps)
        fd[j] = (hi - lo).item() / (2 * eps)
    assert torch.allclose(dirs @ g, fd, rtol=1e-5, atol=1e-7), float((dirs @ g - fd).abs().max())
    # The check can fail: first-order MAML's gradient is measurably different.
    fo, _, _ = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, steps, first_order=True)
    assert (dirs @ flat(fo) - fd).norm() > 1e-3 * fd.norm()


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("case", ["sine", "conv"])
def test_first_order_is_maml_without_second_order_terms(case, steps):
    """MAML: ∇F = Πₜ (I − α H_S(θₜ)) ∇L_Q(θ′)  (t = first..last step);  FOMAML: ∇L_Q(θ′)."""
    model, loss_fn, metric_fn, batch, lr = CASES[case]()
    params = {k: v.detach() for k, v in model.named_parameters()}
    so, _, _ = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, steps, first_order=False)
    fo, _, _ = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, steps, first_order=True)
    sx, sy, qx, qy = batch
    want_so, want_fo = [], []
    for i in range(sx.shape[0]):
        def support(v, i=i):
            return loss_fn(functional_call(model, unflat(v, params), (sx[i],)), sy[i])

        def query(v, i=i):
            return loss_fn(functional_call(model, unflat(v, params), (qx[i],)), qy[i])

        thetas = [flat(params)]
        for _ in range(steps):
            th = thetas[-1].detach().requires_grad_(True)
            (g,) = torch.autograd.grad(support(th), th)
            thetas.append((th - lr * g).detach())
        adapted = thetas[-1].requires_grad_(True)
        (gq,) = torch.autograd.grad(query(adapted), adapted)
        want_fo.append(gq)
        v = gq
        for th in reversed(thetas[:-1]):  # apply (I − α H(θₜ)) from the last step back to the first
            _, hv = torch.autograd.functional.hvp(support, th, v)  # Hessian-vector product, plain autograd
            v = v - lr * hv
        want_so.append(v)
    want_so, want_fo = torch.stack(want_so).mean(0), torch.stack(want_fo).mean(0)
    assert torch.allclose(flat(fo), want_fo, rtol=1e-8, atol=1e-10)
    assert torch.allclose(flat(so), want_so, rtol=1e-7, atol=1e-9)
    # ... and the dropped second-order part is not negligible on these tasks.
    assert (want_so - want_fo).norm() > 1e-3 * want_fo.norm()


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_and_loop_agree(first_order):
    model, loss_fn, metric_fn, batch, lr = conv_case(tasks=3)
    params = {k: v.detach() for k, v in model.named_parameters()}
    a, la, ma = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, 2, first_order, vmap_tasks=True)
    b, lb, mb = meta_gradient(model, loss_fn, metric_fn, params, batch, lr, 2, first_order, vmap_tasks=False)
    assert torch.allclose(flat(a), flat(b), rtol=1e-9, atol=1e-12)
    assert la == pytest.approx(lb) and ma == pytest.approx(mb)


def test_reptile_direction_is_weight_difference():
    model, loss_fn, _, (sx, sy, qx, qy), lr = sine_case(tasks=3)
    params = {k: v.detach() for k, v in model.named_parameters()}
    xs, ys = minibatches(sx, sy, qx, qy, ways=1, steps=3)  # (T, 3, K, 1)
    got = reptile_direction(model, loss_fn, params, xs, ys, lr)
    phis = []
    for i in range(sx.shape[0]):  # plain SGD with an nn.Module copy
        m = SineMLP(hidden=6).double()
        m.load_state_dict({k: v.clone() for k, v in params.items()})
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        for s in range(3):
            opt.zero_grad()
            loss_fn(m(xs[i, s]), ys[i, s]).backward()
            opt.step()
        phis.append(flat({k: v.detach() for k, v in m.named_parameters()}))
    want = flat(params) - torch.stack(phis).mean(0)
    assert torch.allclose(flat(got), want, rtol=1e-9, atol=1e-12)
    assert want.norm() > 0
    loop = reptile_direction(model, loss_fn, params, xs, ys, lr, vmap_tasks=False)
    assert torch.allclose(flat(loop), want, rtol=1e-9, atol=1e-12)


def test_reptile_minibatches_look_like_support_sets():
    t, n, k, q = 2, 3, 2, 3
    sx = torch.arange(t * n * k).view(t, n * k, 1).double()
    qx = 100 + torch.arange(t * n * q).view(t, n * q, 1).double()
    sy, qy = torch.arange(n).repeat_interleave(k).expand(t, -1), torch.arange(n).repeat_interleave(q).expand(t, -1)
    xs, ys = minibatches(sx, sy, qx, qy, ways=n, steps=3)
    assert xs.shape == (t, 3, n * k, 1) and ys.shape == (t, 3, n * k)
    assert torch.equal(xs[:, 0], sx) and torch.equal(ys[:, 0], sy)  # first the support set
    assert all(ys[i, s].tolist() == [0, 0, 1, 1, 2, 2] for i in range(t) for s in range(3))  # K per class
    assert xs[0, 1, :, 0].tolist() == [100, 101, 103, 104, 106, 107]  # then query slices, per class
    assert torch.equal(xs[:, 2], xs[:, 0])  # (K + Q) // K = 2 slices: cycle


def test_batch_stat_norm_matches_torch_batch_norm():
    from services.maml.models import BatchStatNorm2d

    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 5)
    bn = BatchStatNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    ref = torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    assert torch.allclose(bn(x), ref, atol=1e-12)
