"""``dojo asr eval``: word and character error rates on held-out voices and on another synthesiser.

Writes (merges into) ``result.json`` of the run-dir: wer_greedy, wer_beam, cer_greedy, cer_beam
on the espeak-ng voices held out of training, their break-down by category, wer_other_synth
(greedy) and wer_other_synth_beam on flite voices, the greedy WER of both sets by recording
condition (``wer_greedy_clean`` … ``wer_other_synth_reverb``, drawn as ``eval_conditions.png``),
the held-out greedy WER by SNR band of the noisy utterances (``wer_greedy_snr_5_10`` …), the flite greedy WER by
voice (``wer_other_synth_kal`` …), which share of the reference's words the greedy transcripts get wrong, by word
class (``wrong_greedy_digits``, ``wrong_greedy_commands``, ``wrong_other_synth_…``) and by word
(``words_wrong_greedy``, ``words_wrong_other_synth``, drawn as ``eval_words.png``), rtf (real-time factor of
features + network + greedy decoding on one CPU thread, one utterance at a time) and n_utterances.
``wer_beam`` is the vocabulary-constrained prefix beam search (grammar "all").
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from typing import Any

import numpy as np
import torch

from services.asr import corpus
from services.asr.decode import decode_greedy, prefix_beam_search
from services.asr.model import CTCModel, load_model, predict
from services.asr.text import COMMAND_WORDS, DIGIT_WORDS
from services.asr.train import char_error_rate, word_error_rate
from services.common.config import ConfigError, fail, parse, require
from services.common.progress import log, setup_logging
from services.common.rundir import RunDir


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a trained recogniser on freshly synthesised held-out voices and on flite voices."""

    run_dir: str
    """Run directory: its model.pt is evaluated (unless --model) and result.json is written there."""
    model: str | None = None
    """A model.pt to evaluate instead of <run-dir>/model.pt (e.g. deploy/models/asr/model.pt)."""
    seed: int | None = None
    """Seed of the test corpus (default: the training seed in <run-dir>/config.json, else 0)."""
    n_test: int = corpus.DEFAULT_SIZES["test"]
    """Held-out espeak-ng utterances (a third each: unseen accent, unseen variant, both unseen)."""
    n_other: int = corpus.DEFAULT_SIZES["other"]
    """Utterances of the other synthesiser (flite), 0 to skip."""
    beam: int = 8
    """Beam width of the prefix beam search."""
    data_workers: int = 0
    """Ray tasks rendering the test corpus at a time (0 = the cluster's CPU count)."""
    rtf_utterances: int = 100
    """Utterances timed one at a time on one thread for the real-time factor."""

    def validate(self) -> None:
        require(self.n_test >= 1, f"--n-test must be >= 1 (got {self.n_test})")
        require(self.n_other >= 0, f"--n-other must be >= 0 (got {self.n_other})")
        require(self.beam >= 1, f"--beam must be >= 1 (got {self.beam})")
        require(self.data_workers >= 0, f"--data-workers must be >= 0 (got {self.data_workers})")
        require(self.rtf_utterances >= 1, f"--rtf-utterances must be >= 1 (got {self.rtf_utterances})")


def model_bytes(args: EvalArgs, run_dir: RunDir) -> bytes:
    if args.model is not None:
        src = RunDir(args.model.rsplit("/", 1)[0] if "/" in args.model else ".")
        name = args.model.rsplit("/", 1)[-1]
        if not src.exists(name):
            raise ConfigError(f"--model {args.model!r} does not exist")
        return src.read_bytes(name)
    if not run_dir.exists("model.pt"):
        raise ConfigError(f"--run-dir {args.run_dir!r} holds no model.pt: train with `dojo asr train --run-dir "
                          f"{args.run_dir}` first, or pass --model")
    return run_dir.read_bytes("model.pt")


def decode_split(model: CTCModel, split: corpus.Split, beam: int) -> dict[str, list]:
    """Greedy and vocabulary-constrained beam transcripts (+ confidences) of every utterance."""
    from services.asr.decode import align_words

    out: dict[str, list] = {"greedy": [], "beam": [], "confidence": []}
    for s in range(0, len(split), 64):
        for lp in predict(model, [split.features(i) for i in range(s, min(len(split), s + 64))]):
            g = decode_greedy(lp)
            out["greedy"].append(g.text)
            out["beam"].append(prefix_beam_search(lp, beam=beam, grammar_name="all").text)
            out["confidence"].append(align_words(lp, [int(c) for c in g.labels], model.cfg.frame_s)[1])
    return out


CONDITIONS = ("clean", *corpus.NOISES, "reverb")


def split_plan(split: str, texts: list[str], seed: int) -> list[corpus.Utterance]:
    """The plan a cached split was rendered from (it must match the split's transcripts)."""
    plan = corpus.plan(split, len(texts), seed)
    if [u.text for u in plan] != texts:
        raise RuntimeError(f"the cached {split} split does not match its plan (seed {seed}): render it again")
    return plan


def conditions(split: str, texts: list[str], seed: int) -> dict[str, list[int]]:
    """Utterance indices of ``split`` by recording condition: ``clean`` (no noise, no reverberation), each noise kind,
    and ``reverb`` (with reverberation, noisy or not). The conditions come from the split's (deterministic) plan."""
    plan = split_plan(split, texts, seed)
    out: dict[str, list[int]] = {c: [] for c in CONDITIONS}
    for i, u in enumerate(plan):
        if not u.noise and not u.rt60:
            out["clean"].append(i)
        if u.noise:
            out[u.noise].append(i)
        if u.rt60:
            out["reverb"].append(i)
    return out


SNR_BANDS = ((5, 10), (10, 15), (15, 20), (20, 25), (25, 30))  # dB: the test sets' noise is drawn from [5, 30)


def snr_bands(split: str, texts: list[str], seed: int) -> dict[str, list[int]]:
    """Indices of ``split``'s noisy utterances by SNR band (``snr_5_10`` …), from its plan."""
    plan = split_plan(split, texts, seed)
    return {f"snr_{lo}_{hi}": [i for i, u in enumerate(plan) if u.noise and lo <= u.snr_db < hi] for lo, hi in SNR_BANDS}


def word_errors(refs: list[str], hyps: list[str]) -> dict[str, tuple[int, int]]:
    """Reference word -> (occurrences, errors): an occurrence is an error when the minimum-edit alignment of its
    utterance (jiwer) substitutes or deletes it. (Insertions belong to no reference word: WER counts them too.)"""
    import jiwer

    out: dict[str, list[int]] = {}
    for ref, hyp in zip(refs, hyps, strict=True):
        words = ref.split()
        for w in words:
            out.setdefault(w, [0, 0])[0] += 1
        for chunk in jiwer.process_words(ref, hyp).alignments[0]:
            if chunk.type in ("substitute", "delete"):
                for w in words[chunk.ref_start_idx:chunk.ref_end_idx]:
                    out[w][1] += 1
    return {w: (n, e) for w, (n, e) in sorted(out.items())}


def wrong_shares(prefix: str, refs: list[str], hyps: list[str]) -> dict[str, Any]:
    """``wrong_{prefix}_digits`` / ``_commands``: the share of the reference's digit / command words substituted or
    deleted; ``words_wrong_{prefix}``: that share for each word."""
    counts = word_errors(refs, hyps)
    res: dict[str, Any] = {}
    for name, vocab in (("digits", DIGIT_WORDS), ("commands", COMMAND_WORDS)):
        n = sum(counts[w][0] for w in vocab if w in counts)
        res[f"wrong_{prefix}_{name}"] = sum(counts[w][1] for w in vocab if w in counts) / n if n else float("nan")
    res[f"words_wrong_{prefix}"] = {w: round(e / n, 4) for w, (n, e) in counts.items()}
    return res


def subset_wers(prefix: str, groups: dict[str, list[int]], refs: list[str], hyps: list[str]) -> dict[str, float]:
    """``{prefix}_{group}``: the WER of each group of utterance indices (NaN for an empty group)."""
    return {f"{prefix}_{name}": word_error_rate([refs[i] for i in idx], [hyps[i] for i in idx]) if idx
            else float("nan") for name, idx in groups.items()}


def plot_conditions(res: dict[str, Any]) -> bytes:
    """Bar chart of the greedy WER by condition, held-out espeak-ng voices next to flite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(CONDITIONS))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for k, (prefix, label) in enumerate((("wer_greedy", "held-out espeak-ng voices"),
                                         ("wer_other_synth", "flite (other synthesiser)"))):
        vals = [100 * res.get(f"{prefix}_{c}", float("nan")) for c in CONDITIONS]
        overall = 100 * res.get(prefix, float("nan"))
        bars = ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, label=f"{label}: {overall:.1f} % overall")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, CONDITIONS)
    ax.set_ylabel("WER, greedy (%)")
    ax.set_title("Word error rate by recording condition")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_words(res: dict[str, Any]) -> bytes:
    """Horizontal bars: the share of each vocabulary word's occurrences the greedy transcripts get wrong, held-out
    espeak-ng voices next to flite, words sorted by the held-out share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held, other = res.get("words_wrong_greedy", {}), res.get("words_wrong_other_synth", {})
    words = sorted(set(held) | set(other), key=lambda w: (held.get(w, 0.0), other.get(w, 0.0)))
    y = np.arange(len(words))
    fig, ax = plt.subplots(figsize=(7, 0.2 * len(words) + 1.4))
    for k, (vals, label) in enumerate(((held, "held-out espeak-ng voices"), (other, "flite (other synthesiser)"))):
        ax.barh(y + (0.5 - k) * 0.4, [100 * vals.get(w, float("nan")) for w in words], 0.4, label=label)
    ax.set_yticks(y, words, fontsize=7)
    ax.set_xlabel("occurrences substituted or deleted, greedy (%)")
    share = {k: 100 * res.get(k, float("nan")) for k in ("wrong_greedy_digits", "wrong_greedy_commands",
                                                          "wrong_other_synth_digits", "wrong_other_synth_commands")}
    ax.set_title("Words got wrong (digits / commands): held-out {wrong_greedy_digits:.1f} / {wrong_greedy_commands:.1f} "
                 "%, flite {wrong_other_synth_digits:.1f} / {wrong_other_synth_commands:.1f} %".format(**share),
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def real_time_factor(model: CTCModel, split: corpus.Split, n: int) -> float:
    """(features-normalisation + network + greedy decoding time) / audio time, one thread, batch 1.

    The features were computed when the corpus was rendered; their STFT is timed separately by
    bench/asr_rtf.py (it is a small part of the total)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        idx = list(range(min(n, len(split))))
        predict(model, [split.features(idx[0])])  # warm-up
        t0 = time.perf_counter()
        for i in idx:
            decode_greedy(predict(model, [split.features(i)])[0])
        return (time.perf_counter() - t0) / float(split.durations[idx].sum())
    finally:
        torch.set_num_threads(threads)


def evaluate(args: EvalArgs) -> dict[str, Any]:
    from services.common.ray_utils import init_ray

    run_dir = RunDir(args.run_dir).ensure_writable()
    blob = model_bytes(args, run_dir)
    model, meta = load_model(blob)
    seed = args.seed
    if seed is None:
        seed = int(run_dir.read_json("config.json").get("seed", 0)) if run_dir.exists("config.json") else 0
    workers = args.data_workers or max(1, int(init_ray().get("CPU", 1)))
    data = corpus.ensure(run_dir, {"test": args.n_test, "other": args.n_other}, seed, workers)
    test = data["test"]
    t0 = time.monotonic()
    hyp = decode_split(model, test, args.beam)
    conf = np.asarray(hyp["confidence"])
    correct = np.asarray([h == r for h, r in zip(hyp["greedy"], test.texts, strict=True)])
    res: dict[str, Any] = {
        "wer_greedy": word_error_rate(test.texts, hyp["greedy"]),
        "wer_beam": word_error_rate(test.texts, hyp["beam"]),
        "cer_greedy": char_error_rate(test.texts, hyp["greedy"]),
        "cer_beam": char_error_rate(test.texts, hyp["beam"]),
        "sentence_accuracy_greedy": float(correct.mean()),
        "confidence_correct_mean": float(conf[correct].mean()) if correct.any() else float("nan"),
        "confidence_wrong_mean": float(conf[~correct].mean()) if (~correct).any() else float("nan"),
        "n_utterances": len(test),
        "test_audio_s": round(float(test.durations.sum()), 1),
        "eval_seed": seed,
        "model_sha256": hashlib.sha256(blob).hexdigest()[:16],
    }
    categories = {cat: [i for i, c in enumerate(test.categories) if c == cat]
                  for cat in ("unseen_accent", "unseen_variant", "unseen_both")}
    res.update(subset_wers("wer_greedy", categories, test.texts, hyp["greedy"]))
    res.update(subset_wers("wer_greedy", conditions("test", test.texts, seed), test.texts, hyp["greedy"]))
    res.update(subset_wers("wer_greedy", snr_bands("test", test.texts, seed), test.texts, hyp["greedy"]))
    res.update(wrong_shares("greedy", test.texts, hyp["greedy"]))
    if "other" in data:
        other = data["other"]
        oh = decode_split(model, other, args.beam)
        res["wer_other_synth"] = word_error_rate(other.texts, oh["greedy"])
        res["wer_other_synth_beam"] = word_error_rate(other.texts, oh["beam"])
        res["cer_other_synth"] = char_error_rate(other.texts, oh["greedy"])
        res["n_other_synth"] = len(other)
        res.update(subset_wers("wer_other_synth", conditions("other", other.texts, seed), other.texts, oh["greedy"]))
        voices = {v: [i for i, u in enumerate(other.voices) if u == f"flite:{v}"] for v in sorted(corpus.FLITE_VOICES)}
        res.update(subset_wers("wer_other_synth", voices, other.texts, oh["greedy"]))
        res.update(wrong_shares("other_synth", other.texts, oh["greedy"]))
    else:
        res.update(wer_other_synth=float("nan"), wer_other_synth_beam=float("nan"), cer_other_synth=float("nan"),
                   n_other_synth=0)
    res["decode_s"] = round(time.monotonic() - t0, 1)
    res["rtf"] = real_time_factor(model, test, args.rtf_utterances)
    merged = run_dir.read_json("result.json") if run_dir.exists("result.json") else {}
    merged.update(res)
    run_dir.write_json("result.json", merged)
    run_dir.write_bytes("eval_conditions.png", plot_conditions(res))
    run_dir.write_bytes("eval_words.png", plot_words(res))
    errors = [(r, h) for r, h in zip(test.texts, hyp["greedy"], strict=True) if r != h][:10]
    log.info("asr eval: some greedy errors (reference -> hypothesis): %s", errors)
    log.info("asr eval: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()
                              if not k.startswith("words_wrong_")})
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from services.common.ray_utils import shutdown_ray_if_local

    setup_logging()
    args = parse(EvalArgs, argv, prog="dojo asr eval")
    try:
        return evaluate(args)
    except ConfigError as exc:
        fail("dojo asr eval", str(exc))
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()
