"""CTC, written out: the contraction B, the loss −log P(l*|x), and its gradient by forward-backward.

A path π assigns one symbol (a label or the blank) to every frame t = 1..T; B merges repeated
symbols and then drops blanks (B(a a _ b _ b) = a b b). The probability of a labelling is

    P(l|x) = Σ_{π ∈ B⁻¹(l)} Π_t y_t[π_t]

summed efficiently over the extended labelling l′ = (_, l1, _, l2, _, …, l|l|, _) of length S = 2|l|+1:

    α_t(s) = y_t[l′_s] · (α_{t−1}(s) + α_{t−1}(s−1) + [l′_s ≠ _ and l′_s ≠ l′_{s−2}] α_{t−1}(s−2))
    β_t(s) = y_t[l′_s] · (β_{t+1}(s) + β_{t+1}(s+1) + [l′_s ≠ _ and l′_s ≠ l′_{s+2}] β_{t+1}(s+2))
    P(l|x) = α_T(S) + α_T(S−1),     and for every t:  P(l|x) = Σ_s α_t(s) β_t(s) / y_t[l′_s]

The gradient w.r.t. the log-probabilities is ∂(−ln P)/∂ln y_t[k] = −(1/P) Σ_{s: l′_s = k} α_t(s) β_t(s) / y_t[k];
through a softmax, ∂(−ln P)/∂u_t[k] = y_t[k] − (1/P) Σ_{s: l′_s = k} α_t(s) β_t(s) / y_t[k].
Everything below runs in log space (products become sums, sums become logsumexp) in float64.
This module is the readable reference the tests check ``torch.nn.CTCLoss`` and the decoders against;
training uses the fast library loss.
"""

from __future__ import annotations

import itertools

import numpy as np

NEG_INF = -np.inf


def collapse(path, blank: int = 0) -> list[int]:
    """The contraction B: merge repeated symbols, then drop blanks."""
    out, prev = [], None
    for p in path:
        p = int(p)
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def extend(labels, blank: int = 0) -> np.ndarray:
    """l -> l′ = (_, l1, _, l2, …, _), length 2|l| + 1."""
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    ext[1::2] = labels
    return ext


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """x moved k places right (k > 0) or left (k < 0), filled with log 0, same length."""
    out = np.full_like(x, NEG_INF)
    if k > 0:
        out[k:] = x[:-k] if k < len(x) else out[k:]
    elif k < 0:
        out[:k] = x[-k:] if -k < len(x) else out[:k]
    return out


def _lse(*xs: np.ndarray) -> np.ndarray:
    return np.logaddexp.reduce(np.stack(xs), axis=0)


def forward(log_probs: np.ndarray, labels, blank: int = 0) -> np.ndarray:
    """log α: (T, S). log_probs: (T, V) log-softmax outputs."""
    lp = np.asarray(log_probs, dtype=np.float64)
    ext = extend(labels, blank)
    T, S = lp.shape[0], len(ext)
    # s−2 transitions are allowed into a label that differs from the label two steps back
    skip = np.zeros(S, dtype=bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    alpha = np.full((T, S), NEG_INF)
    alpha[0, 0] = lp[0, ext[0]]
    if S > 1:
        alpha[0, 1] = lp[0, ext[1]]
    for t in range(1, T):
        prev = alpha[t - 1]
        stay, step, jump = prev, _shift(prev, 1), np.where(skip, _shift(prev, 2), NEG_INF)
        alpha[t] = _lse(stay, step, jump) + lp[t, ext]
    return alpha


def backward(log_probs: np.ndarray, labels, blank: int = 0) -> np.ndarray:
    """log β: (T, S), with β_t(s) including y_t[l′_s] (Graves' convention)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    ext = extend(labels, blank)
    T, S = lp.shape[0], len(ext)
    skip = np.zeros(S, dtype=bool)
    skip[:-2] = (ext[:-2] != blank) & (ext[:-2] != ext[2:])
    beta = np.full((T, S), NEG_INF)
    beta[T - 1, S - 1] = lp[T - 1, ext[S - 1]]
    if S > 1:
        beta[T - 1, S - 2] = lp[T - 1, ext[S - 2]]
    for t in range(T - 2, -1, -1):
        nxt = beta[t + 1]
        stay, step, jump = nxt, _shift(nxt, -1), np.where(skip, _shift(nxt, -2), NEG_INF)
        beta[t] = _lse(stay, step, jump) + lp[t, ext]
    return beta


def log_likelihood(log_probs: np.ndarray, labels, blank: int = 0) -> float:
    """ln P(l|x) (−inf when l cannot be emitted in T frames)."""
    alpha = forward(log_probs, labels, blank)
    return float(np.logaddexp(alpha[-1, -1], alpha[-1, -2]) if alpha.shape[1] > 1 else alpha[-1, -1])


def loss_and_grad(log_probs: np.ndarray, labels, blank: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
    """(−ln P(l|x), ∂loss/∂log_probs (T, V), ∂loss/∂logits (T, V) assuming log_probs = log_softmax(logits))."""
    lp = np.asarray(log_probs, dtype=np.float64)
    ext = extend(labels, blank)
    alpha, beta = forward(lp, labels, blank), backward(lp, labels, blank)
    log_p = np.logaddexp(alpha[-1, -1], alpha[-1, -2]) if len(ext) > 1 else alpha[-1, -1]
    # log Σ_{s: l′_s = k} α_t(s) β_t(s), per (t, k)
    ab = alpha + beta  # (T, S)
    T, V = lp.shape
    occ = np.full((T, V), NEG_INF)
    for s, k in enumerate(ext):
        occ[:, k] = np.logaddexp(occ[:, k], ab[:, s])
    # γ_t(k) = (1/P) Σ α β / y_t[k]: the posterior that frame t emits k (each row sums to 1)
    gamma = np.exp(occ - lp - log_p)
    grad_lp = -gamma
    grad_logits = np.exp(lp) - gamma
    return float(-log_p), grad_lp, grad_logits


def brute_force_log_likelihood(log_probs: np.ndarray, labels, blank: int = 0) -> float:
    """ln Σ_{π ∈ B⁻¹(l)} Π_t y_t[π_t] by enumerating all V^T paths (tiny cases only)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    T, V = lp.shape
    target = [int(v) for v in labels]
    total = NEG_INF
    for path in itertools.product(range(V), repeat=T):
        if collapse(path, blank) == target:
            total = np.logaddexp(total, lp[np.arange(T), path].sum())
    return float(total)


def best_alignment(log_probs: np.ndarray, labels, blank: int = 0) -> tuple[float, np.ndarray]:
    """Viterbi: the most probable path π ∈ B⁻¹(l) and its log-probability; path[t] = index s into l′."""
    lp = np.asarray(log_probs, dtype=np.float64)
    ext = extend(labels, blank)
    T, S = lp.shape[0], len(ext)
    skip = np.zeros(S, dtype=bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    score = np.full((T, S), NEG_INF)
    back = np.zeros((T, S), dtype=np.int64)
    score[0, 0] = lp[0, ext[0]]
    if S > 1:
        score[0, 1] = lp[0, ext[1]]
    idx = np.arange(S)
    for t in range(1, T):
        prev = score[t - 1]
        cands = np.stack([prev, _shift(prev, 1), np.where(skip, _shift(prev, 2), NEG_INF)])  # (3, S): stay, step, jump
        choice = cands.argmax(0)
        score[t] = cands[choice, idx] + lp[t, ext]
        back[t] = idx - choice
    end = S - 1 if S == 1 or score[-1, -1] >= score[-1, -2] else S - 2
    path = np.zeros(T, dtype=np.int64)
    path[-1] = end
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return float(score[-1, end]), path
