"""The readable CTC reference against torch.nn.functional.ctc_loss and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from services.asr import ctc


def random_case(rng, T, V, L, repeats=False):
    logits = torch.tensor(rng.standard_normal((T, V)) * 2.0, dtype=torch.float64, requires_grad=True)
    labels = rng.integers(1, V, size=L)
    if repeats and L >= 2:
        labels[1] = labels[0]  # a repeated label needs a blank between its two emissions
    return logits, labels


@pytest.mark.parametrize("T,V,L,repeats", [(30, 28, 8, False), (30, 28, 8, True), (12, 5, 5, True), (50, 10, 20, True),
                                           (9, 4, 4, True), (7, 3, 3, False), (16, 28, 0, False)])
def test_reference_equals_torch_ctc_loss_and_gradients(T, V, L, repeats):
    rng = np.random.default_rng(T * 100 + L)
    for _ in range(5):
        logits, labels = random_case(rng, T, V, L, repeats)
        log_probs = logits.log_softmax(-1)
        torch_loss = torch.nn.functional.ctc_loss(
            log_probs[:, None], torch.tensor(labels, dtype=torch.long)[None], torch.tensor([T]), torch.tensor([L]),
            blank=0, reduction="sum")
        torch_loss.backward()
        loss, grad_lp, grad_logits = ctc.loss_and_grad(log_probs.detach().numpy(), labels)
        assert np.isfinite(loss)
        assert abs(loss - float(torch_loss.detach())) < 1e-5
        assert np.abs(grad_logits - logits.grad.numpy()).max() < 1e-5
        # the gradient w.r.t. the log-probabilities, checked by autograd through our own formula's inputs:
        # −γ summed over classes is −1 per frame (every frame emits exactly one symbol)
        assert np.allclose(grad_lp.sum(1), -1.0, atol=1e-9)


def test_float32_batch_with_padding_matches_reference():
    rng = np.random.default_rng(3)
    T, B, V = 25, 4, 28
    logits = torch.tensor(rng.standard_normal((T, B, V)), dtype=torch.float32)
    lp = logits.log_softmax(-1)
    in_len = torch.tensor([25, 20, 14, 9])
    labels = [rng.integers(1, V, size=n) for n in (10, 7, 5, 3)]
    torch_losses = torch.nn.functional.ctc_loss(lp, torch.tensor(np.concatenate(labels)), in_len,
                                                torch.tensor([len(x) for x in labels]), reduction="none")
    for b in range(B):
        ref = ctc.loss_and_grad(lp[: in_len[b], b].double().numpy(), labels[b])[0]
        assert abs(ref - float(torch_losses[b])) < 1e-4 * max(1.0, ref)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
def test_forward_equals_brute_force_over_all_alignments(T):
    rng = np.random.default_rng(T)
    V = 3
    lp = torch.tensor(rng.standard_normal((T, V))).log_softmax(-1).numpy()
    for L in range(0, 4):
        for labels in itertools.product(range(1, V), repeat=L):
            brute = ctc.brute_force_log_likelihood(lp, labels)
            ours = ctc.log_likelihood(lp, labels)
            if np.isinf(brute):
                assert np.isinf(ours) and ours < 0  # e.g. "a a" needs 3 frames
            else:
                assert abs(brute - ours) < 1e-10
                assert abs(-ctc.loss_and_grad(lp, labels)[0] - brute) < 1e-10


def test_probabilities_of_all_labellings_sum_to_one():
    """Every path collapses to exactly one labelling, so P(l|x) over all l (|l| <= T) sums to 1."""
    rng = np.random.default_rng(0)
    T, V = 4, 3
    lp = torch.tensor(rng.standard_normal((T, V))).log_softmax(-1).numpy()
    total = sum(np.exp(ctc.log_likelihood(lp, labels)) for L in range(T + 1)
                for labels in itertools.product(range(1, V), repeat=L))
    assert abs(total - 1.0) < 1e-12


def test_backward_agrees_with_forward_at_every_frame():
    rng = np.random.default_rng(5)
    lp = torch.tensor(rng.standard_normal((10, 5))).log_softmax(-1).numpy()
    labels = [1, 2, 2, 4]
    alpha, beta = ctc.forward(lp, labels), ctc.backward(lp, labels)
    ext = ctc.extend(labels)
    log_p = ctc.log_likelihood(lp, labels)
    for t in range(10):
        # Σ_s α_t(s) β_t(s) / y_t(l′_s) = P(l|x) for every t
        assert abs(np.logaddexp.reduce(alpha[t] + beta[t] - lp[t, ext]) - log_p) < 1e-10


def test_contraction_b_hand_cases():
    assert ctc.collapse([1, 1, 0, 2, 0, 2, 2]) == [1, 2, 2]
    assert ctc.collapse([0, 0, 0]) == []
    assert ctc.collapse([3, 3, 3, 3]) == [3]
    assert ctc.collapse([1, 0, 1, 1, 0, 0, 1]) == [1, 1, 1]
    assert ctc.extend([5, 6]).tolist() == [0, 5, 0, 6, 0]


def test_best_alignment_is_the_most_probable_path_of_the_labelling():
    rng = np.random.default_rng(11)
    T, V = 6, 3
    lp = torch.tensor(rng.standard_normal((T, V))).log_softmax(-1).numpy()
    labels = [1, 2, 2]
    best = max((lp[np.arange(T), p].sum(), p) for p in itertools.product(range(V), repeat=T)
               if ctc.collapse(p) == labels)
    score, path = ctc.best_alignment(lp, labels)
    ext = ctc.extend(labels)
    assert abs(score - best[0]) < 1e-12
    assert tuple(ext[path]) == best[1]
