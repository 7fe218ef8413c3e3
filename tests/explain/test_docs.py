"""Every command in docs/explain.md, and in README.md's "Explanations" section once it exists, runs:
`dojo explain` commands with small budgets, curl and python3 lines against the live application."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess

import numpy as np
from PIL import Image

from tests.conftest import REPO, bash_commands, run_dojo
from tests.explain.conftest import COMMITTED

EXAMPLES = "deploy/models/explain/examples/"
SMALL = {  # budgets appended to the documented commands (later flags win)
    ("explain", "train"): ["--image-epochs", "1", "--max-train-images", "256", "--max-test-images", "256",
                           "--tabular-epochs", "20"],
    ("explain", "eval"): ["--images", "6", "--sanity-images", "2", "--samples", "64", "--steps", "8",
                          "--datasets", "mnist"],
}


def documented() -> list[str]:
    cmds = bash_commands((REPO / "docs" / "explain.md").read_text())
    readme = (REPO / "README.md").read_text()
    m = re.search(r"^## Explanations\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    return cmds + (bash_commands(m.group(1)) if m else [])


def test_every_documented_command_is_run_here():
    for cmd in documented():
        assert cmd.startswith((".venv/bin/dojo explain", "curl ", "python3 -c")), f"no test runs: {cmd}"


def test_doc_dojo_commands_run(tmp_path):
    runs, n = tmp_path / "runs", 0
    for cmd in documented():
        if not cmd.startswith(".venv/bin/dojo"):
            continue
        argv = [a.replace("runs/", f"{runs}/") for a in cmd.split()[1:]]
        p = run_dojo(*argv, *SMALL[tuple(argv[:2])], timeout=600)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
        n += 1
    assert n >= 2
    trained = json.loads((runs / "explain" / "result.json").read_text())
    assert set(trained) == set(json.loads((COMMITTED / "result.json").read_text()))  # same keys every time
    evaluated = json.loads((runs / "explain-eval" / "result.json").read_text())
    assert {f"mnist_{m}_deletion_auc" for m in ("cam", "gradcam", "lime", "shap")} <= set(evaluated)
    assert Image.open(runs / "explain-eval" / "examples.png").size == (5 * 112, 4 * 112)


def test_doc_http_commands_run(url, tmp_path):
    host = url.removeprefix("http://")
    outputs = []
    for cmd in documented():
        if not cmd.startswith(("curl ", "python3 -c")):
            continue
        cmd = cmd.replace("localhost:8000", host).replace(EXAMPLES, f"{REPO}/{EXAMPLES}")
        p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
        outputs.append(p.stdout)
    assert any('"mnist"' in o and '"cancer"' in o for o in outputs)  # the models listing
    gradcam = json.loads((tmp_path / "gradcam.json").read_text())
    assert gradcam["label"] == "7" and gradcam["method"] == "gradcam"
    assert Image.open(io.BytesIO(base64.b64decode(gradcam["overlay_png"]))).size == (84, 84)
    assert Image.open(tmp_path / "gradcam.png").size == (84, 84)
    cam = json.loads((tmp_path / "cam.json").read_text())
    assert cam["label"] == "Ankle boot" and cam["target_label"] == "Sneaker"
    shap = json.loads((tmp_path / "shap.json").read_text())
    total = sum(shap["attributions"].values())
    assert abs(total - (shap["probabilities"][shap["target"]] - shap["base_value"])) < 1e-3
    kserve = json.loads((tmp_path / "kserve.json").read_text())
    assert kserve["predictions"] == [2, 1] and len(kserve["explanations"]) == 2
    assert np.array(kserve["explanations"][0]["attributions"]).shape == (28, 28)


def test_docs_metrics_table_is_current():
    import services.explain.metrics  # noqa: F401 - registers the definitions
    from services.common.metrics import markdown_table

    assert markdown_table("dojo_explain_") in (REPO / "docs" / "explain.md").read_text()
