"""`dojo asr data|train|eval`: one-line errors, corpus plans (the commands themselves run in test_docs.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.asr import corpus
from services.asr.features import log_mel
from services.asr.text import COMMAND_WORDS, DIGIT_WORDS
from tests.conftest import run_dojo


@pytest.mark.parametrize("argv,needle", [
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--subsample", "5"], "--subsample must be 2, 3 or 4"),
    (["train", "--gpus", "1.5"], "--gpus above 1 must be whole"),
    (["train", "--inter-ctc", "1"], "--inter-ctc must be in [0, 1)"),
    (["train", "--max-restarts", "-1"], "--max-restarts must be >= 0"),
    (["train", "--lr", "nope"], "nope"),
    (["data", "--n-train", "-1"], "--n-train must be >= 0"),
    (["train", "--mix-speech", "1"], "--mix-speech must be in [0, 1)"),
    (["train", "--mix-snr", "20", "5"], "--mix-snr must be LOW HIGH with LOW <= HIGH"),
    (["eval", "--n-test", "0", "--run-dir", "x"], "--n-test must be >= 1"),
    (["train", "--pico-share", "1.5"], "--pico-share must be in [0, 1]"),
    (["data", "--pico-share", "-0.1"], "--pico-share must be in [0, 1]"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, tmp_path):
    p = run_dojo("asr", *argv, *(["--run-dir", str(tmp_path / "r")] if "--run-dir" not in argv else []), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(f"dojo asr {argv[0]}: error:"), p.stderr


def test_run_dir_problems_are_one_line_errors(tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "model.pt").write_bytes(b"x")
    p = run_dojo("asr", "train", "--run-dir", str(tmp_path / "done"), timeout=120)
    assert p.returncode == 2 and "already holds a trained model" in p.stderr
    p = run_dojo("asr", "train", "--run-dir", str(tmp_path / "new"), "--resume", timeout=120)
    assert p.returncode == 2 and "--resume: no checkpoint" in p.stderr
    p = run_dojo("asr", "eval", "--run-dir", str(tmp_path / "empty"), timeout=120)
    assert p.returncode == 2 and "holds no model.pt" in p.stderr and "dojo asr train" in p.stderr


def test_more_gpus_than_the_local_cluster_has_fail_before_the_corpus_is_rendered(tmp_path):
    p = run_dojo("asr", "train", "--gpus", "64", "--run-dir", str(tmp_path / "r"), timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("dojo asr train: error: --gpus 64: the Ray cluster has "), p.stderr[-2000:]
    assert not (tmp_path / "r" / "data").exists()  # nothing rendered


def test_corpus_plans_are_deterministic_and_hold_voices_out():
    vs = corpus.voice_split()
    assert not set(vs["train_accents"]) & set(vs["test_accents"])
    assert not set(vs["train_variants"]) & set(vs["test_variants"])
    train = corpus.plan("train", 400, seed=3)
    assert train == corpus.plan("train", 400, seed=3) and train != corpus.plan("train", 400, seed=4)
    for u in train + corpus.plan("val", 100, seed=3):
        if u.engine == "festival":
            lo, hi = corpus.FESTIVAL_VOICES[u.voice].warp
            assert lo <= u.warp <= hi and u.category == "train"
            continue
        accent, _, variant = u.voice.partition("+")
        assert u.engine == "espeak" and u.warp == 1.0
        assert accent in vs["train_accents"] + tuple(corpus.FOREIGN_ACCENTS)
        assert variant == "" or variant in vs["train_variants"]
    foreign = np.mean([u.voice.split("+")[0] in corpus.FOREIGN_ACCENTS for u in train if u.engine == "espeak"])
    assert abs(foreign - corpus.FOREIGN_SHARE) < 0.06, foreign
    share = np.mean([u.engine == "festival" for u in train])
    assert abs(share - corpus.RECORDED_SHARE) < 0.06, share
    ona = np.mean([u.voice == corpus.ONA_VOICE for u in train if u.engine == "festival"])
    assert abs(ona - corpus.ONA_SHARE) < 0.12, ona
    narrow = np.mean([u.band_rate in corpus.NARROWBAND_RATES for u in train])
    assert abs(narrow - corpus.NARROWBAND_SHARE) < 0.05 and {u.band_rate for u in train} == {0, 8000, 11025}
    test = corpus.plan("test", 300, seed=3)
    counts = {c: sum(u.category == c for u in test) for c in ("unseen_accent", "unseen_variant", "unseen_both")}
    assert set(counts.values()) == {100}
    for u in test:
        accent, _, variant = u.voice.partition("+")
        assert accent in vs["test_accents"] or variant in vs["test_variants"]
    assert {u.engine for u in test} == {"espeak"} and {u.band_rate for u in test} == {0}
    assert all(corpus.spoken(u) == u.text for u in test)  # test voices read English spelling
    other = corpus.plan("other", 50, seed=3)
    assert {u.engine for u in other} == {"flite"}
    assert set(corpus.FESTIVAL_VOICES) == {"ked_diphone", "upc_ca_ona_hts"}
    assert {"ked", "ona"}.isdisjoint(corpus.FLITE_VOICES)  # training speakers are none of flite's test speakers


def test_pico_share_takes_festival_utterances_and_leaves_the_rest_of_the_plan():
    """--pico-share: that share of the recorded-speaker training utterances go to SVOX Pico's voices; everything else
    (espeak-ng utterances, test and flite plans) stays, and at 0 the plan and its fingerprint are the recipe's."""
    base, mixed = corpus.plan("train", 2000, seed=3), corpus.plan("train", 2000, seed=3, pico_share=0.5)
    assert base == corpus.plan("train", 2000, seed=3, pico_share=0.0) and "pico" not in {u.engine for u in base}
    pico = [u for u in mixed if u.engine == "pico"]
    recorded = sum(u.engine in ("festival", "pico") for u in mixed)
    assert abs(len(pico) / recorded - 0.5) < 0.06 and {u.voice for u in pico} == set(corpus.PICO_VOICES)
    assert all(corpus.PICO_VOICES[u.voice][0] <= u.warp <= corpus.PICO_VOICES[u.voice][1] for u in pico)
    assert abs(recorded / len(mixed) - corpus.RECORDED_SHARE) < 0.03
    for split in ("test", "other"):
        assert corpus.plan(split, 50, 3, pico_share=0.5) == corpus.plan(split, 50, 3)
    assert corpus.plan_id("train", 2000, 3) == corpus.plan_id("train", 2000, 3, 0.0) != corpus.plan_id("train", 2000, 3, 0.5)
    with pytest.raises(ValueError, match="pico_share must be in"):
        corpus.plan("train", 2, 3, pico_share=1.5)
    u = dataclasses.replace(pico[0], text="seven help", noise="", rt60=0.0, lead_s=0.0, tail_s=0.0)
    x = corpus.render(u)
    assert x.dtype == np.float32 and 0.4 < len(x) / corpus.SAMPLE_RATE < 3.0 and np.abs(x).max() > 0.01
    assert np.array_equal(x, corpus.render(u))  # deterministic


def test_dojo_asr_data_renders_pico_voices_through_ray(tmp_path):
    p = run_dojo("asr", "data", "--run-dir", str(tmp_path), "--seed", "3", "--n-train", "40", "--n-val", "0",
                 "--n-test", "0", "--n-other", "0", "--pico-share", "1", timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    train = corpus.Split.from_bytes((tmp_path / "data" / "train.npz").read_bytes())
    plan = corpus.plan("train", 40, 3, pico_share=1.0)
    assert train.voices == [f"{u.engine}:{u.voice}" for u in plan] and {"pico:en-US", "pico:en-GB"} <= set(train.voices)
    i = next(i for i, u in enumerate(plan) if u.engine == "pico")
    assert np.allclose(train.features(i), log_mel(corpus.render(plan[i])).numpy().astype(np.float16), atol=1e-2)


def test_foreign_accented_voices_read_every_word_in_their_spelling():
    """espeak-ng voices of other languages read the vocabulary respelt in their orthography (English with their
    accent), and festival's ona the Catalan way; the transcript stays English."""
    vocabulary = set(DIGIT_WORDS + COMMAND_WORDS)
    for lang, spelling in corpus.FOREIGN_ACCENTS.items():
        assert set(spelling) == vocabulary, lang
    u = next(u for u in corpus.plan("train", 400, seed=3) if u.voice.startswith("de+") or u.voice == "de")
    u = dataclasses.replace(u, text="three help", noise="", rt60=0.0)
    assert corpus.spoken(u) == "srih help" and u.text == "three help"
    x = corpus.render(u)
    assert 0.3 < len(x) / 16_000 < 4 and np.abs(x).max() > 0
    assert corpus.spoken(dataclasses.replace(u, engine="festival", voice=corpus.ONA_VOICE)) == "trí jelp"
    assert corpus.spoken(dataclasses.replace(u, voice="en-us")) == "three help"


def _f0(x: np.ndarray, rate: int = 16_000) -> float:
    """Median pitch (Hz) of the voiced 40 ms frames, by autocorrelation (an independent estimate)."""
    out = []
    n = int(0.04 * rate)
    for s in range(0, len(x) - n, n):
        f = x[s:s + n] - x[s:s + n].mean()
        if (f**2).mean() < 0.05 * (x**2).mean():
            continue
        ac = np.correlate(f, f, "full")[n - 1:]
        lo, hi = rate // 400, rate // 60  # 60-400 Hz
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            out.append(rate / lag)
    return float(np.median(out))


def test_festival_speaker_warp_scales_pitch_and_duration():
    """The second training synthesiser renders, and the speaker warp makes one recorded voice many: warp w
    multiplies pitch by w and divides the duration by w."""
    base = dict(text="seven nine oh", engine="festival", voice=corpus.FESTIVAL_VOICE, category="train", rate=1.0,
                pitch=110.0, pitch_range=5, gap=0, lead_s=0.1, tail_s=0.1, rt60=0.0, noise="", snr_db=30.0,
                level_db=-6.0, seed=1)
    plain = corpus.render(corpus.Utterance(**base))
    warped = corpus.render(corpus.Utterance(**base, warp=1.25))
    speech = [len(x) / 16_000 - 0.2 for x in (plain, warped)]
    assert 0.7 < speech[0] < 3 and speech[1] / speech[0] == pytest.approx(1 / 1.25, rel=0.03)
    f_plain, f_warped = _f0(plain), _f0(warped)
    assert 80 < f_plain < 160, f_plain
    assert f_warped / f_plain == pytest.approx(1.25, rel=0.08), (f_plain, f_warped)
    # a shard renders its festival utterances, of both voices, through one festival process, in their order
    ona = corpus.Utterance(**{**base, "voice": corpus.ONA_VOICE, "text": "three delete"})
    shard = corpus.render_shard([corpus.Utterance(**base), ona, corpus.Utterance(**{**base, "text": "cancel"})], 0)
    assert len(shard["lengths"]) == 3 and shard["lengths"][2] < shard["lengths"][0]
    ona_alone = corpus.render(ona)
    assert shard["lengths"][1] == len(log_mel(ona_alone)) and 0.6 < len(ona_alone) / 16_000 - 0.2 < 3
    assert 150 < _f0(ona_alone) < 260  # a woman's voice


def test_rendering_is_reproducible_up_to_espeak_state():
    """The plan (text, voice, prosody, noise, room) is exact; libespeak-ng carries state from one
    synthesis to the next in a process (lengths vary by up to a few tens of milliseconds, most after a
    process's first synthesis or a change of voice; breathy variants differ), so
    audio is reproducible in length and level, not bit for bit; festival's is bit for bit. Rendered features
    are cached per run-dir."""
    plan = corpus.plan("train", 6, seed=9)
    fest = next(u for u in plan if u.engine == "festival")
    assert np.array_equal(corpus.render(fest), corpus.render(fest))
    u = next(u for u in plan if u.engine == "espeak")
    a, b = corpus.render(u), corpus.render(u)
    assert a.dtype == b.dtype and abs(len(a) - len(b)) <= 0.01 * len(a) + 0.05 * 16_000
    assert abs(float(np.sqrt((a**2).mean()) / np.sqrt((b**2).mean())) - 1) < 0.2
    assert 0.3 < len(a) / 16_000 < 8 and 0 < abs(a).max() <= 1


def test_narrowband_sources_have_nothing_above_half_their_rate():
    base = corpus.plan("train", 1, seed=5)[0]
    kw = dict(rt60=0.0, noise="", engine="espeak", voice="en-us", warp=1.0)
    full = corpus.render(dataclasses.replace(base, **kw, band_rate=0))
    narrow = corpus.render(dataclasses.replace(base, **kw, band_rate=8000))

    def share_above(x, hz):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[np.fft.rfftfreq(len(x), 1 / 16_000) > hz].sum() / p.sum()

    assert share_above(full, 4600) > 1e-4  # espeak has (a little) energy above 4.6 kHz ...
    assert share_above(narrow, 4600) < share_above(full, 4600) / 100  # ... the 8 kHz source next to none


# libespeak-ng 1.51 (Debian) segfaults on this one: a low-pitched variant with a wide pitch range
CRASHER = corpus.Utterance(text="four oh seven one", engine="espeak", voice="en-us-nyc+Demonic", category="train",
                           rate=175, pitch=15, pitch_range=86, gap=8, lead_s=0.05, tail_s=0.05, rt60=0.0, noise="",
                           snr_db=20.0, level_db=-6.0, seed=5)


def test_a_crash_in_a_child_process_is_an_exception_here():
    import ctypes

    assert corpus.isolated(np.arange, 3.0).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(corpus.SynthesisCrash, match="signal 11"):
        corpus.isolated(ctypes.string_at, 0)  # a null-pointer read: SIGSEGV in the child


def test_an_espeak_crash_is_survived_and_the_utterance_tamed():
    args = (CRASHER.text, CRASHER.voice, 175, 15, 86, 8)
    try:
        corpus.isolated(corpus.espeak().synth, *args)
    except corpus.SynthesisCrash:
        pass
    else:
        pytest.skip("this libespeak-ng does not crash on the known case")
    x = corpus.render(CRASHER)  # range 86 crashes; 53 does not
    assert x.size > 0.5 * corpus.SAMPLE_RATE and np.isfinite(x).all()
    assert np.abs(x).max() == pytest.approx(10 ** (-6 / 20), rel=1e-3)


def test_a_shard_with_an_utterance_that_crashes_libespeak_ng_still_renders(ray_local):
    """The real failure: libespeak-ng segfaults while a Ray task renders a shard; the corpus still completes."""
    utts = corpus.plan("train", 3, 0)[:2] + [CRASHER]
    split = corpus.build(utts, workers=1, seed=0, shard_size=2)
    assert len(split) == 3 and split.texts[2] == CRASHER.text
    assert split.lengths.min() > 30 and np.isfinite(split.feats.astype(np.float32)).all()


def test_espeak_ng_samples_do_not_depend_on_what_was_synthesised_before():
    """libespeak-ng keeps state between syntheses: the same call twice in one library gives other samples. A batch
    runs in a fresh library, so it gives the same samples whatever ran before it; so does a whole shard."""
    import ctypes

    plan = corpus.plan("test", 12, seed=0)
    calls = [corpus.espeak_call(u) for u in plan]
    twice = corpus.espeak_batch(calls[:6] * 2)
    assert any(not np.array_equal(a, b) for a, b in zip(twice[:6], twice[6:], strict=True))  # the state exists
    first = corpus.espeak_batch(calls[:6])
    corpus.espeak_batch(calls[6:])
    assert all(np.array_equal(a, b) for a, b in zip(first, corpus.espeak_batch(calls[:6]), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(first, twice[:6], strict=True))
    shard = corpus.render_shard(plan[:8], 11)  # with babble (espeak-ng too) and breathy variants (libc's rand())
    corpus.render_shard(plan[8:], 12)
    libc = ctypes.CDLL(None)
    libc.srand(12345)  # whatever this process did to libc's random state, which a fork inherits
    libc.rand()
    again = corpus.render_shard(plan[:8], 11)
    assert all(np.array_equal(shard[k], again[k]) for k in shard)


def test_conditions_split_the_test_set_by_its_plan():
    """`dojo asr eval`'s break-down: every utterance is clean or has one noise kind; reverb cuts across; each
    condition's WER is the WER of exactly its utterances (checked against a per-utterance count)."""
    import jiwer

    from services.asr.evaluate import CONDITIONS, conditions, subset_wers

    plan = corpus.plan("test", 60, seed=5)
    refs = [u.text for u in plan]
    groups = conditions("test", refs, 5)
    assert tuple(groups) == CONDITIONS
    noisy = [i for k in corpus.NOISES for i in groups[k]]
    assert sorted(groups["clean"] + noisy + [i for i in groups["reverb"] if not plan[i].noise]) == list(range(60))
    assert all(plan[i].rt60 > 0 for i in groups["reverb"]) and not set(groups["clean"]) & set(groups["reverb"])
    hyps = [r if i % 3 else "oh " + r for i, r in enumerate(refs)]  # one insertion in every third utterance
    res = subset_wers("wer_greedy", groups, refs, hyps)
    for c, idx in groups.items():
        if idx:
            errors = sum(jiwer.process_words(refs[i], hyps[i]).insertions for i in idx)
            assert res[f"wer_greedy_{c}"] == pytest.approx(errors / sum(len(refs[i].split()) for i in idx))
    with pytest.raises(RuntimeError, match="does not match its plan"):
        conditions("test", refs[::-1], 5)


def test_snr_bands_hold_every_noisy_utterance_once():
    from services.asr.evaluate import snr_bands

    plan = corpus.plan("test", 200, seed=5)
    bands = snr_bands("test", [u.text for u in plan], 5)
    assert len(bands) == 5 and sorted(i for idx in bands.values() for i in idx) == [
        i for i, u in enumerate(plan) if u.noise]
    assert all(10 <= plan[i].snr_db < 15 for i in bands["snr_10_15"])


def test_word_errors_count_substitutions_and_deletions_per_reference_word():
    """By hand, and against jiwer's totals on a larger random case: per-word errors + insertions = S + D + I."""
    import jiwer

    from services.asr.evaluate import word_errors, wrong_shares

    refs, hyps = ["one two home", "go", "up down", "nine"], ["one too", "go on", "", "nine"]
    assert word_errors(refs, hyps) == {"one": (1, 0), "two": (1, 1), "home": (1, 1), "go": (1, 0), "up": (1, 1),
                                       "down": (1, 1), "nine": (1, 0)}
    res = wrong_shares("greedy", refs, hyps)
    assert res["wrong_greedy_digits"] == pytest.approx(1 / 3) and res["wrong_greedy_commands"] == pytest.approx(3 / 4)
    assert res["words_wrong_greedy"]["home"] == 1.0 and res["words_wrong_greedy"]["nine"] == 0.0

    rng = np.random.default_rng(3)
    refs = [u.text for u in corpus.plan("test", 80, seed=5)]
    vocab = sorted({w for r in refs for w in r.split()})
    hyps = [" ".join(w if rng.random() < 0.8 else str(rng.choice(vocab)) for w in r.split()
                     if rng.random() < 0.9) + (" oh" if rng.random() < 0.2 else "") for r in refs]
    out = jiwer.process_words(refs, [h or "x" for h in hyps])
    counts = word_errors(refs, [h or "x" for h in hyps])
    assert sum(n for n, _ in counts.values()) == sum(len(r.split()) for r in refs)
    assert sum(e for _, e in counts.values()) == out.substitutions + out.deletions
