"""bench/gpu_check.py, the prepared GPU check, run here on the CPU (``--allow-cpu --quick``): a lent GPU
machine's few minutes must not be the first time its code runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_check_runs_and_reports(ray_local, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_wheels

    cpus = ray_local.cluster_resources()["CPU"]
    size = gpu_wheels.build_asr_sample(tmp_path / "asr")  # rendered by the session's Ray, which must stay up
    assert ray_local.is_initialized() and ray_local.cluster_resources()["CPU"] == cpus
    assert size < 4 * 2**20  # it travels with the wheels: 64 MiB in all (bench/gpu_wheels.py prints the sum)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--allow-cpu", "--quick", "--out", str(tmp_path / "out"),
                        "--asr-sample", str(tmp_path / "asr")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    checks = ["env", "ray_placement", "a3c_cartpole", "a3c_throughput", "asr_decode", "asr_train_step",
              "asr_train_ray"]
    assert all(res[c]["ok"] for c in checks), res
    dev = res["device"]  # cpu here; cuda where torch sees a GPU
    assert res["a3c_cartpole"]["ps_device"].startswith(dev) and res["a3c_cartpole"]["frames"] >= 20_000
    assert 0 < res["a3c_throughput"]["ps_cpu"]["efficiency"] < 1
    assert res["asr_decode"]["same_transcripts"] == 1.0 and res["asr_decode"]["wer_greedy_cpu"] < 0.3
    assert res["asr_train_ray"]["device"] == dev and res["asr_train_ray"]["steps"] > 0


def test_without_cuda_it_refuses_unless_allowed(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode != 0 and "torch sees no CUDA device (pass --allow-cpu" in p.stderr
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--allow-cpu", "--only", "nope"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unknown checks ['nope']" in p.stderr
