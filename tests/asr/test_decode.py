"""Decoders: greedy is B of the best path, beam is never less probable than greedy, the grammar holds."""

from __future__ import annotations

import numpy as np

from services.asr import ctc, decode
from services.asr.text import ALPHABET, BLANK, GRAMMARS, SPACE, encode

V = len(ALPHABET)


def peaky(path: str, confidence: float = 0.9) -> np.ndarray:
    """Log-probs whose best path spells ``path`` ("_" = blank), one symbol per frame."""
    lp = np.full((len(path), V), np.log((1 - confidence) / (V - 1)))
    for t, c in enumerate(path):
        lp[t, ALPHABET.index(c)] = np.log(confidence)
    return lp


def test_greedy_is_the_contraction_of_the_best_path():
    cases = {"__oonne__": "one", "tt_ww_oo": "two", "s_eev_e_nn": "seven", "__t_hhree": "thre",
             "t_h_r_e_e": "three", "o_n_e_ _t_w_o": "one two", "_____": "", "gggoooo": "go"}
    for path, text in cases.items():
        assert decode.decode_greedy(peaky(path)).text == text, path
        assert decode.greedy(peaky(path)) == ctc.collapse([ALPHABET.index(c) for c in path])


def random_log_probs(rng, T, sharp=3.0):
    logits = rng.standard_normal((T, V)) * sharp
    logits[:, BLANK] += 2.0
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def test_beam_is_never_worse_than_greedy_in_total_log_probability():
    rng = np.random.default_rng(0)
    better = 0
    for _ in range(150):
        lp = random_log_probs(rng, int(rng.integers(1, 30)))
        g = decode.decode_greedy(lp)
        b = decode.prefix_beam_search(lp, beam=6)
        assert b.log_prob >= g.log_prob - 1e-9
        assert abs(b.log_prob - ctc.log_likelihood(lp, b.labels)) < 1e-9  # the score is the exact CTC one
        better += b.log_prob > g.log_prob + 1e-6
    assert better > 10  # and it does find more probable labellings than greedy


def test_beam_finds_the_labelling_that_greedy_misses():
    """Two frames: 'a' 0.4 / blank 0.6 each. Best path is blank-blank (""), P("") = 0.36, but
    P("a") = 0.4·0.4 + 0.4·0.6 + 0.6·0.4 = 0.64."""
    lp = np.full((2, V), np.log(1e-12))
    lp[:, BLANK], lp[:, ALPHABET.index("a")] = np.log(0.6), np.log(0.4)
    assert decode.decode_greedy(lp).text == ""
    assert decode.prefix_beam_search(lp, beam=4).text == "a"


def test_grammar_constrained_beam_never_emits_out_of_vocabulary_words():
    rng = np.random.default_rng(1)
    for name, words in GRAMMARS.items():
        vocab = set(words)
        for _ in range(40):
            lp = random_log_probs(rng, int(rng.integers(5, 40)), sharp=2.0)
            text = decode.prefix_beam_search(lp, beam=6, grammar_name=name).text
            assert all(w in vocab for w in text.split()), (name, text)
    # a near miss is pulled onto the vocabulary: "sevem" -> "seven" and "oen" is not a digit
    lp = peaky("s_e_v_e_m_ _o_n_e", 0.6)
    lp[8, ALPHABET.index("n")] = np.log(0.3)  # the model half-believes the last letter is n
    assert decode.decode_greedy(lp).text == "sevem one"
    assert decode.prefix_beam_search(lp, beam=8, grammar_name="digits").text == "seven one"
    assert decode.prefix_beam_search(lp, beam=8, grammar_name="commands").text.split() == [] or all(
        w in GRAMMARS["commands"] for w in decode.prefix_beam_search(lp, beam=8, grammar_name="commands").text.split())


def test_word_timestamps_and_confidence():
    frame_s = 0.03
    path = "___o_nn_e____ _____t_w_o__"
    lp = peaky(path, 0.95)
    out = decode.transcribe(lp, "greedy", frame_s=frame_s)
    assert out["text"] == "one two"
    (w1, w2) = out["words"]
    assert w1["word"] == "one" and w1["start_s"] == round(3 * frame_s, 3) and w1["end_s"] == round(9 * frame_s, 3)
    assert w2["word"] == "two" and w2["start_s"] == round(19 * frame_s, 3) and w2["end_s"] == round(24 * frame_s, 3)
    assert 0.9 < out["confidence"] <= 1.0
    unsure = decode.transcribe(peaky(path, 0.4), "greedy", frame_s=frame_s)
    assert unsure["text"] == "one two" and unsure["confidence"] < out["confidence"]
    beam = decode.transcribe(lp, "beam", grammar_name="digits", frame_s=frame_s)
    assert beam["text"] == "one two" and beam["words"] == out["words"]


def test_text_round_trip():
    assert ALPHABET[SPACE] == " " and ALPHABET[BLANK] == "_"
    assert encode("one two") == [ALPHABET.index(c) for c in "one two"]
