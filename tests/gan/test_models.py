"""Smoke-run every GAN model for a few tiny iterations, resume included."""

from __future__ import annotations

import json

import pytest
import torch

from services.common.config import ConfigError, rebuild
from services.gan.train import MODELS, args_class, train

EXPECTED = {
    "dcgan": {"fd", "inception_score"},
    "wgan": {"fd", "inception_score", "wasserstein"},
    "wgan-gp": {"fd", "inception_score", "wasserstein", "gradient_penalty"},
    "cgan": {"cond_accuracy", "fd", "inception_score"},
    "pix2pix": {"l1", "ssim", "identity_l1", "l1_ratio"},
    "cyclegan": {"cycle_l1", "translation_l1", "identity_translation_l1"},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_and_resumes(name, tmp_path):
    cls = args_class(name)
    args = rebuild(cls, {"iters": 2, "steps_per_iter": 2, "batch_size": 16, "eval_samples": 100,
                         "checkpoint_every": 1, "run_dir": str(tmp_path)})
    result = train(name, args)
    assert EXPECTED[name] <= set(result)
    assert all(isinstance(v, (int, float, str)) for v in result.values())
    assert result["metric"] == result[result["metric_key"]]
    for v in result.values():
        if isinstance(v, float):
            assert v == v, result  # no NaN
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["model"] == name and (tmp_path / "config.json").exists()
    png = (tmp_path / "samples.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "samples" / "samples-000002.png").exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "ckpt-0000000002.pt"
    # resume: two more iterations continue from the checkpoint, not from scratch
    args = rebuild(cls, {**{k: getattr(args, k) for k in ("steps_per_iter", "batch_size", "eval_samples",
                                                           "checkpoint_every", "run_dir")},
                         "iters": 3, "resume": True})
    result2 = train(name, args)
    assert result2["initial_metric"] == result["initial_metric"]
    assert (tmp_path / "checkpoints" / "ckpt-0000000003.pt").exists()
    state = torch.load(tmp_path / "checkpoints" / "ckpt-0000000003.pt", weights_only=False)
    assert "model" in state


@pytest.mark.parametrize("name,bad,needle", [
    ("dcgan", {"lr": -1.0}, "--lr must be > 0"),
    ("wgan", {"n_critic": 0}, "--n-critic must be >= 1"),
    ("wgan-gp", {"gp_lambda": 0.0}, "--gp-lambda must be > 0"),
    ("pix2pix", {"l1_lambda": -1.0}, "--l1-lambda"),
    ("cyclegan", {"lambda_cyc": -1.0}, "--lambda-cyc"),
    ("cgan", {"iters": 0}, "--iters must be >= 1"),
])
def test_bad_values_are_rejected(name, bad, needle):
    with pytest.raises(ConfigError, match=needle):
        rebuild(args_class(name), bad)
