"""A3C math against hand-computed values and closed-form gradients."""

import numpy as np
import pytest
import torch

from services.a3c.model import ActorCritic, num_params
from services.a3c.worker import a3c_loss, nstep_returns

G = 0.9


def _run(rewards, values, term=None, trunc=None, final=None, bootstrap=10.0, lam=1.0):
    r = np.array(rewards, dtype=np.float32)[:, None]
    v = np.array(values, dtype=np.float32)[:, None]
    z = np.zeros_like(r, dtype=bool)
    te = z.copy() if term is None else np.array(term)[:, None]
    tr = z.copy() if trunc is None else np.array(trunc)[:, None]
    fv = np.zeros_like(r) if final is None else np.array(final, dtype=np.float32)[:, None]
    ret, adv = nstep_returns(r, v, te, tr, fv, np.array([bootstrap], dtype=np.float32), G, lam)
    return ret[:, 0], adv[:, 0]


def test_kstep_returns_bootstrap_from_last_value():
    ret, adv = _run([1, 2, 3], [0.5, 0.6, 0.7])
    # R2 = 3 + .9*10 = 12; R1 = 2 + .9*12 = 12.8; R0 = 1 + .9*12.8 = 12.52
    np.testing.assert_allclose(ret, [12.52, 12.8, 12.0], rtol=1e-6)
    np.testing.assert_allclose(adv, [12.52 - 0.5, 12.8 - 0.6, 12.0 - 0.7], rtol=1e-6)


def test_terminated_step_has_no_future():
    ret, _ = _run([1, 2, 3], [0.5, 0.6, 0.7], term=[False, True, False])
    # the episode ended at t=1: R1 = 2, R0 = 1 + .9*2; a new episode starts at t=2
    np.testing.assert_allclose(ret, [2.8, 2.0, 12.0], rtol=1e-6)


def test_truncated_step_bootstraps_from_final_observation():
    ret, _ = _run([1, 2, 3], [0.5, 0.6, 0.7], trunc=[False, True, False], final=[0, 5.0, 0])
    # time limit at t=1: R1 = 2 + .9*V(s_final) = 6.5; R0 = 1 + .9*6.5 = 6.85
    np.testing.assert_allclose(ret, [6.85, 6.5, 12.0], rtol=1e-6)


def test_terminated_and_truncated_together_counts_as_terminated():
    ret, _ = _run([1, 2, 3], [0.5, 0.6, 0.7], term=[False, True, False], trunc=[False, True, False],
                  final=[0, 5.0, 0])
    np.testing.assert_allclose(ret, [2.8, 2.0, 12.0], rtol=1e-6)


def test_gae_matches_independent_reference():
    rng = np.random.default_rng(0)
    T, N, lam = 7, 3, 0.95
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    te = rng.random((T, N)) < 0.2
    tr = (rng.random((T, N)) < 0.2) & ~te
    fv = rng.normal(size=(T, N)).astype(np.float32)
    boot = rng.normal(size=N).astype(np.float32)
    ret, adv = nstep_returns(r, v, te, tr, fv, boot, G, lam)
    for n in range(N):  # scalar reference, one environment at a time
        a_next = 0.0
        for t in reversed(range(T)):
            if te[t, n]:
                nv = 0.0
            elif tr[t, n]:
                nv = fv[t, n]
            else:
                nv = boot[n] if t == T - 1 else v[t + 1, n]
            delta = r[t, n] + G * nv - v[t, n]
            a_next = delta + (0.0 if (te[t, n] or tr[t, n]) else G * lam * a_next)
            assert adv[t, n] == pytest.approx(a_next, rel=1e-5, abs=1e-5)
            assert ret[t, n] == pytest.approx(a_next + v[t, n], rel=1e-5, abs=1e-5)


def test_loss_gradients_match_closed_form():
    torch.manual_seed(0)
    B, A, alpha, beta = 5, 3, 0.5, 0.01
    z = torch.randn(B, A, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, dtype=torch.float64, requires_grad=True)
    a = torch.randint(0, A, (B,))
    R = torch.randn(B, dtype=torch.float64)
    adv = torch.randn(B, dtype=torch.float64)
    loss, _ = a3c_loss(z, v, a, R, adv, alpha, beta)
    loss.backward()
    p = torch.softmax(z.detach(), -1)
    logp = torch.log(p)
    onehot = torch.nn.functional.one_hot(a, A).double()
    H = -(p * logp).sum(-1, keepdim=True)
    dpolicy = -(adv[:, None] * (onehot - p)) / B           # d(-mean(A log pi_a))/dz
    dentropy = -p * (logp + H) / B                         # d(mean H)/dz
    dz = dpolicy - beta * dentropy
    dv = -alpha * (R - v.detach()) / B                     # d(alpha * 0.5 mean (R-V)^2)/dV
    torch.testing.assert_close(z.grad, dz)
    torch.testing.assert_close(v.grad, dv)


def test_atari_network_matches_the_paper():
    m = ActorCritic((4, 84, 84), 6)
    assert 0.67e6 < num_params(m) < 0.69e6
    logits, value, _ = m(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 6) and value.shape == (2,)


def test_lstm_unroll_equals_stepwise_with_resets():
    torch.manual_seed(0)
    m = ActorCritic((4,), 2, hidden=16, lstm=True)
    T, N = 6, 3
    obs = torch.randn(T, N, 4)
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[3, 1] = True
    state = (torch.randn(N, 256), torch.randn(N, 256))
    logits, values = m.unroll(obs, state, starts)
    s = state
    for t in range(T):
        keep = (~starts[t]).float().unsqueeze(-1)
        s = (s[0] * keep, s[1] * keep)
        lt, vt, s = m(obs[t], s)
        torch.testing.assert_close(lt, logits[t])
        torch.testing.assert_close(vt, values[t])


def test_channels_last_frames_give_the_plain_layouts_outputs_and_gradients():
    """The Atari network feeds its convolutions channels-last (faster oneDNN backward on CPU):
    outputs and parameter gradients match the plain NCHW computation, and gradients keep the
    ordinary layout that flat_grad/the parameter server rely on."""
    torch.manual_seed(0)
    model = ActorCritic((4, 84, 84), 6)
    obs = torch.randint(0, 256, (12, 4, 84, 84), dtype=torch.uint8)
    logits, value, _ = model(obs)
    (logits.logsumexp(-1).sum() + value.sum()).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    assert all(g.is_contiguous() for g in fast)
    model.zero_grad()
    h = model.trunk(obs.float().contiguous() / 255.0)  # plain NCHW reference
    ref_logits, ref_value = model.policy(h), model.value(h).squeeze(-1)
    (ref_logits.logsumexp(-1).sum() + ref_value.sum()).backward()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(value, ref_value, rtol=1e-4, atol=1e-5)
    for g, p in zip(fast, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-4)
