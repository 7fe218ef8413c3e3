"""Decoding CTC outputs: greedy (the contraction B of the best path), prefix beam search with an
optional vocabulary constraint, word timestamps from the best alignment, and a confidence score.

All functions take one utterance's log-probabilities ``log_probs`` (T, V) as numpy.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from services.asr import ctc
from services.asr.text import BLANK, GRAMMARS, SPACE, decode, encode

NEG_INF = -np.inf


@dataclasses.dataclass
class Hypothesis:
    labels: list[int]  # label ids, no blanks
    log_prob: float  # ln P(labels | x), exact (summed over all alignments)

    @property
    def text(self) -> str:
        return " ".join(decode(self.labels).split())


def greedy(log_probs: np.ndarray) -> list[int]:
    """B(argmax path): the most probable symbol per frame, repeats merged, blanks dropped."""
    return ctc.collapse(np.asarray(log_probs).argmax(-1), BLANK)


class Grammar:
    """A vocabulary constraint on character sequences: words from ``words`` separated by single spaces."""

    def __init__(self, words: tuple[str, ...]):
        self.words = frozenset(words)
        self.prefixes = frozenset(w[:i] for w in words for i in range(len(w) + 1))

    def allows(self, partial: str, label: int) -> bool:
        """May ``label`` follow a prefix whose current (unfinished) word is ``partial``?"""
        if label == SPACE:
            return partial in self.words
        return partial + decode([label]) in self.prefixes

    def complete(self, partial: str) -> bool:
        return partial == "" or partial in self.words


@functools.cache
def grammar(name: str) -> Grammar:
    if name not in GRAMMARS:
        raise ValueError(f"unknown grammar {name!r} (choose from {', '.join(GRAMMARS)})")
    return Grammar(GRAMMARS[name])


def _partial(text: str) -> str:
    return text[text.rfind(" ") + 1:]


def _add(beams: dict, prefix: tuple[int, ...], b: float = NEG_INF, nb: float = NEG_INF) -> None:
    """Accumulate probability mass into ``prefix``'s (p_b, p_nb)."""
    cur = beams.setdefault(prefix, [NEG_INF, NEG_INF])
    cur[0], cur[1] = np.logaddexp(cur[0], b), np.logaddexp(cur[1], nb)


def prefix_beam_search(log_probs: np.ndarray, beam: int = 8, grammar_name: str | None = None,
                       prune_log_prob: float = -9.0) -> Hypothesis:
    """CTC prefix beam search (Hannun et al. 2014) in log space.

    Each prefix keeps two scores: p_b (alignments ending in blank) and p_nb (ending in its last
    label). With a grammar only letters that keep every word a vocabulary word are proposed and
    a space or the end of the utterance may only follow a complete word. The final candidates
    (and the greedy transcript, when the grammar admits it) are rescored with the exact CTC
    forward probability, so the result is never less probable than greedy's.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    T, V = lp.shape
    gram = grammar(grammar_name) if grammar_name else None
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for t in range(T):
        row = lp[t]
        cands = [int(k) for k in np.nonzero(row > prune_log_prob)[0] if k != BLANK]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            _add(nxt, prefix, b=total + row[BLANK])  # blank: prefix unchanged
            last = prefix[-1] if prefix else None
            if last is not None:
                _add(nxt, prefix, nb=pnb + row[last])  # repeat of the last label, merged by B
            text = decode(prefix) if gram else ""
            for k in cands:
                if gram is not None and not gram.allows(_partial(text), k):
                    continue
                if k == SPACE and (not prefix or last == SPACE):
                    continue  # no leading or double spaces
                new = prefix + (k,)
                # the same label twice in a row needs a blank between them
                _add(nxt, new, nb=(pb if k == last else total) + row[k])
        ranked = sorted(nxt.items(), key=lambda kv: np.logaddexp(*kv[1]), reverse=True)
        beams = {p: (s[0], s[1]) for p, s in ranked[:beam]}

    finals = []
    for prefix in beams:
        labels = list(prefix)
        if labels and labels[-1] == SPACE:
            labels = labels[:-1]
        if gram is not None and not gram.complete(_partial(decode(labels))):
            cut = decode(labels).rfind(" ")  # keep the complete words only
            labels = labels[:cut] if cut > 0 else []
        finals.append(labels)
    g = greedy(lp)
    if gram is None or in_grammar(decode(g), gram):
        finals.append(g)
    best = None
    for labels in {tuple(f) for f in finals}:
        score = ctc.log_likelihood(lp, list(labels), BLANK)
        if best is None or score > best.log_prob:
            best = Hypothesis(list(labels), score)
    return best


def in_grammar(text: str, gram: Grammar) -> bool:
    return all(w in gram.words for w in text.split(" ") if w) and "  " not in text and not text.startswith(" ")


def decode_greedy(log_probs: np.ndarray) -> Hypothesis:
    labels = greedy(log_probs)
    return Hypothesis(labels, ctc.log_likelihood(np.asarray(log_probs, dtype=np.float64), labels, BLANK))


@dataclasses.dataclass
class Word:
    word: str
    start_s: float
    end_s: float


def align_words(log_probs: np.ndarray, labels: list[int], frame_s: float) -> tuple[list[Word], float]:
    """Word timestamps from the Viterbi alignment of ``labels``, and a confidence in [0, 1].

    Confidence: the geometric mean, over the emitted characters, of each character's peak
    posterior over the frames aligned to it (1.0 when the network is certain of every letter).
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if not labels:
        return [], float(np.exp(lp[:, BLANK].mean()))
    _, path = ctc.best_alignment(lp, labels, BLANK)  # path[t] = index into l′; odd = labels[(s-1)//2]
    frames: dict[int, list[int]] = {}
    for t, s in enumerate(path):
        if s % 2 == 1:
            frames.setdefault((s - 1) // 2, []).append(t)
    peaks = [max(lp[t, labels[i]] for t in frames[i]) for i in sorted(frames)]
    confidence = float(np.exp(np.mean(peaks)))
    words: list[Word] = []
    start = None
    for i, lab in enumerate([*labels, SPACE]):
        if lab != SPACE and start is None:
            start = i
        elif lab == SPACE and start is not None:
            first, last = frames[start][0], frames[i - 1][-1]
            words.append(Word(decode(labels[start:i]), round(first * frame_s, 3), round((last + 1) * frame_s, 3)))
            start = None
    return words, confidence


def transcribe(log_probs: np.ndarray, decoder: str = "greedy", grammar_name: str | None = None,
               beam: int = 8, frame_s: float = 0.03) -> dict:
    """One utterance: {"text", "confidence", "words", "log_prob"}."""
    if decoder == "greedy":
        hyp = decode_greedy(log_probs)
    elif decoder == "beam":
        hyp = prefix_beam_search(log_probs, beam=beam, grammar_name=grammar_name)
    else:
        raise ValueError(f"unknown decoder {decoder!r} (greedy or beam)")
    labels = encode(hyp.text)  # single spaces, no leading/trailing space
    words, confidence = align_words(log_probs, labels, frame_s)
    return {"text": hyp.text, "confidence": confidence, "words": [dataclasses.asdict(w) for w in words],
            "log_prob": hyp.log_prob}
