"""Every command in docs/asr.md (and README's "Speech to text" section) runs: the `dojo asr` ones here with
tiny budgets, the `curl` ones in tests/asr/test_serve.py::test_documented_curl_commands."""

from __future__ import annotations

import json
import re

from services.asr.text import VOCABULARY
from tests.conftest import REPO, bash_commands, run_dojo

TINY = {
    "data": ["--n-train", "8", "--n-val", "4", "--n-test", "6", "--n-other", "3"],
    "train": ["--n-train", "40", "--n-val", "6", "--hidden", "16", "--proj", "16", "--channels", "4", "--layers", "1",
              "--batch-frames", "4000"],
    "eval": ["--n-test", "6", "--n-other", "3", "--rtf-utterances", "3"],
}
COVERED_ELSEWHERE = {
    r"^make asr-model": "tests/asr/test_quality.py::test_retrain_from_scratch_meets_the_thresholds (slow)",
    r"^curl ": "tests/asr/test_serve.py::test_documented_curl_commands",
    r"^serve run deploy/serve/raydojo.yaml": "tests/serve (the Serve application's own tests)",
}


def documented() -> list[str]:
    cmds = bash_commands((REPO / "docs" / "asr.md").read_text())
    readme = (REPO / "README.md").read_text()
    section = re.search(r"\n#+ Speech to text\n(.*?)(?=\n#+ |\Z)", readme, re.S)
    return cmds + (bash_commands(section.group(1)) if section else [])


def test_every_documented_command_is_accounted_for():
    for cmd in documented():
        assert cmd.startswith(".venv/bin/dojo asr ") or any(re.search(p, cmd) for p in COVERED_ELSEWHERE), cmd


def test_documented_dojo_commands_run(tmp_path):
    ran = []
    for cmd in documented():
        if not cmd.startswith(".venv/bin/dojo asr "):
            continue
        argv = [a.replace("runs/", f"{tmp_path}/runs/") for a in cmd.split()[1:]]
        argv = [str(REPO / a) if a.startswith("deploy/") else a for a in argv]
        argv += [a for a in TINY[argv[1]] if a not in argv]
        if argv[1] == "train":  # the docs' minute budgets are for real runs
            argv = [a for i, a in enumerate(argv) if a != "--max-minutes" and argv[i - 1] != "--max-minutes"]
        p = run_dojo(*argv, timeout=400)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
        ran.append(argv[1])
    assert {"data", "train", "eval"} <= set(ran)
    small = json.loads((tmp_path / "runs" / "asr-small" / "result.json").read_text())
    assert small["epochs"] == 3 and {"wer_greedy", "wer_beam", "cer_greedy", "cer_beam", "wer_other_synth", "rtf",
                                     "n_utterances"} <= set(small)
    ev = json.loads((tmp_path / "runs" / "asr-eval" / "result.json").read_text())
    assert ev["n_utterances"] == 6 and {"wer_greedy_clean", "wer_greedy_reverb", "wer_other_synth_babble"} <= set(ev)
    assert (tmp_path / "runs" / "asr-eval" / "eval_conditions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"wer_greedy_snr_5_10", "wer_other_synth_slt", "wrong_greedy_commands", "wrong_other_synth_digits"} <= set(ev)
    assert set(ev["words_wrong_greedy"]) <= set(VOCABULARY)
    assert (tmp_path / "runs" / "asr-eval" / "eval_words.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "runs" / "asr-data" / "data" / "manifest.json").read_text())["train"]["n"] == 8
