"""Metric learning: losses and mining against brute force, retrieval metrics against hand counts,
the committed checkpoints' held-out quality, the CLI contract."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from services.metric.evaluate import knn_accuracy, load_model, map_at_r, recall_at_1, retrieval_metrics
from services.metric.model import (
    EmbeddingNet,
    SiameseNet,
    TripletNet,
    batch_contrastive_loss,
    batch_triplet_loss,
    contrastive_loss,
    pairwise_distances,
    triplet_loss,
)
from tests.conftest import REPO, run_dojo

MODELS = REPO / "deploy" / "models" / "metric"


def test_contrastive_and_triplet_loss_by_hand():
    d = torch.tensor([0.3, 0.2, 0.7])
    same = torch.tensor([1, 0, 0])
    # 0.3² ; max(0, 0.5−0.2)² = 0.09 ; max(0, 0.5−0.7)² = 0
    assert contrastive_loss(d, same, margin=0.5).item() == pytest.approx((0.09 + 0.09 + 0) / 3)
    # d(a,p)=0.5, d(a,n)=0.6, m=0.2 → 0.1 ; d(a,p)=0.1, d(a,n)=0.9 → 0
    assert triplet_loss(torch.tensor([0.5, 0.1]), torch.tensor([0.6, 0.9]), 0.2).item() == pytest.approx(0.05)


def test_siamese_and_triplet_nets_share_weights():
    emb = EmbeddingNet(dim=8, width=4)
    x = torch.rand(3, 28, 28)
    d = SiameseNet(emb)(x, x)
    assert torch.allclose(d, torch.zeros(3), atol=1e-5)
    dap, dan = TripletNet(emb)(x, x, x.flip(0))
    assert torch.allclose(dap, torch.zeros(3), atol=1e-5) and dan[1] < 1e-5 < dan[0]
    z = emb(x)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def _brute_triplets(z, y, margin):
    d = torch.cdist(z, z)
    rows = []
    for a in range(len(y)):
        pos = [p for p in range(len(y)) if p != a and y[p] == y[a]]
        neg = [n for n in range(len(y)) if y[n] != y[a]]
        rows.append((a, pos, neg, d))
    return rows


def test_batch_hard_and_semi_hard_mining_match_brute_force():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(12, 4, generator=g), dim=1)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    m = 0.3
    assert torch.allclose(pairwise_distances(z), torch.cdist(z, z), atol=1e-3)
    hard, semi, every = [], [], []
    for a, pos, neg, d in _brute_triplets(z, y, m):
        hard.append(max(0.0, float(max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + m)))
        for p in pos:
            cands = [d[a, n] for n in neg if d[a, p] < d[a, n] < d[a, p] + m]
            dn = min(cands) if cands else min(d[a, n] for n in neg)
            semi.append(max(0.0, float(d[a, p] - dn + m)))
            every += [max(0.0, float(d[a, p] - d[a, n] + m)) for n in neg]
    active = [v for v in every if v > 0]
    assert batch_triplet_loss(z, y, m, "batch-hard")[0].item() == pytest.approx(sum(hard) / len(hard), abs=1e-5)
    assert batch_triplet_loss(z, y, m, "semi-hard")[0].item() == pytest.approx(sum(semi) / len(semi), abs=1e-5)
    assert batch_triplet_loss(z, y, m, "all")[0].item() == pytest.approx(sum(active) / len(active), abs=1e-5)
    pos = [(i, j) for i, j in itertools.permutations(range(12), 2) if y[i] == y[j]]
    neg = [(i, j) for i, j in itertools.permutations(range(12), 2) if y[i] != y[j]]
    d = torch.cdist(z, z)
    ref = sum(d[i, j] ** 2 for i, j in pos) / len(pos) + sum(max(0, 0.5 - d[i, j]) ** 2 for i, j in neg) / len(neg)
    assert batch_contrastive_loss(z, y, 0.5).item() == pytest.approx(float(ref), abs=1e-5)


def test_retrieval_metrics_by_hand():
    # 1-D embeddings: class 0 at 0, 0.1, 0.5 ; class 1 at 0.45, 1.0, 1.1
    e = torch.tensor([[0.0], [0.1], [0.5], [0.45], [1.0], [1.1]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    # nearest others: 0→1 ✓, 1→0 ✓, 2→3 ✗, 3→2 ✗, 4→5 ✓, 5→4 ✓
    assert recall_at_1(e, y) == pytest.approx(4 / 6)
    # R = 2 for every query. Ranked lists (first 2): 0: [1 ✓, 3 ✗] → (1/1)/2 = .5 ; 1: [0 ✓, 3 ✗] → .5 ;
    # 2: [3 ✗, 1 ✓] → (2nd: 1/2)/2 = .25 ; 3: [2 ✗, 1 ✗] → 0 ; 4: [5 ✓, 2 ✗] → .5 ; 5: [4 ✓, 2 ✗] → .5
    assert map_at_r(e, y) == pytest.approx((0.5 + 0.5 + 0.25 + 0 + 0.5 + 0.5) / 6)
    ref, rl = torch.tensor([[0.0], [0.2], [0.3], [1.0]]), torch.tensor([0, 0, 1, 1])
    assert knn_accuracy(torch.tensor([[0.05], [0.9]]), torch.tensor([0, 1]), ref, rl, k=1) == 1.0
    assert knn_accuracy(torch.tensor([[0.26]]), torch.tensor([0]), ref, rl, k=3) == 1.0  # votes 0,0 vs 1


@pytest.mark.parametrize(("name", "threshold"), [("triplet-mnist", 0.97), ("contrastive-mnist", 0.95)])
def test_committed_checkpoint_meets_recall_on_held_out_test_set(name, threshold):
    torch.set_num_threads(1)
    net, config = load_model(str(MODELS / name))
    assert config["loss"] == name.split("-")[0]
    m = retrieval_metrics(net, "mnist", "test", reference="val")  # kNN references: val (10k), for speed
    assert m["n_queries"] == 10_000
    assert m["recall_at_1"] >= threshold, m
    assert m["knn_accuracy"] >= threshold and 0.5 < m["map_at_r"] <= 1.0, m


def test_cli_bad_arguments_exit_2(tmp_path):
    p = run_dojo("metric", "train", "--steps", "0", "--run-dir", str(tmp_path / "r"))
    assert p.returncode == 2 and "--steps must be >= 1" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_dojo("metric", "train", "--loss", "quadruplet", "--run-dir", str(tmp_path / "r"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    p = run_dojo("metric", "eval", "--run-dir", str(tmp_path / "missing"))
    assert p.returncode == 2 and "no model.pt" in p.stderr


def test_train_smoke_writes_run_dir_and_eval_reads_it(tmp_path):
    rd = tmp_path / "run"
    p = run_dojo("metric", "train", "--loss", "triplet", "--mining", "semi-hard", "--steps", "30", "--eval-every",
                 "15", "--train-images", "3000", "--run-dir", str(rd))
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((rd / "result.json").read_text())
    assert {"recall_at_1", "map_at_r", "knn_accuracy", "anomaly_threshold", "val_recall_at_1"} <= set(result)
    assert result["recall_at_1"] > 0.5  # 30 steps already beat chance (0.1) by far
    for f in ("model.pt", "index.npz", "projection.png", "config.json"):
        assert (rd / f).stat().st_size > 0, f
    assert (rd / "projection.png").read_bytes()[:4] == b"\x89PNG"
    # a second run into the same dir needs --resume; --resume continues from the checkpoint
    p = run_dojo("metric", "train", "--steps", "30", "--run-dir", str(rd))
    assert p.returncode == 2 and "--resume" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "threshold"), [("triplet", 0.97), ("contrastive", 0.95)])
def test_retrain_from_scratch_meets_recall(tmp_path, loss, threshold):
    rd = tmp_path / loss
    p = run_dojo("metric", "train", "--loss", loss, "--data", "mnist", "--run-dir", str(rd), timeout=3600)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((rd / "result.json").read_text())
    assert result["recall_at_1"] >= threshold, result


def test_models_dir_is_small():
    total = sum(f.stat().st_size for f in Path(MODELS).rglob("*") if f.is_file())
    assert 0 < total <= 5 * 1024 * 1024
