"""GCN: the hand-worked examples through the project's layers, Â against an independent numpy
formula, karate club and SBM accuracy, the CLI contract and the Tune sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from services.gcn.graphs import karate, sbm
from services.gcn.layers import GCNConv, MeanAggConv, WeightedSumConv, gcn_norm, mean_norm
from services.gcn.train import TrainArgs, run
from tests.conftest import run_dojo


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)  # the machine is shared; OpenMP spinning on 2 busy cores is far slower


def test_weighted_sum_convolution_hand_example():
    # y_m = Σ_n f(n)·g(m, n), g = 1, 3, 5 for m − n = 1, 0, −1; f = (0, 2, 4, 6, 8) → (–, 26, 44, 62, –)
    y = WeightedSumConv({1: 1, 0: 3, -1: 5})(torch.tensor([0.0, 2, 4, 6, 8]))
    assert math.isnan(y[0]) and math.isnan(y[4])
    assert y[1:4].tolist() == [26.0, 44.0, 62.0]  # exact


def test_neighbour_averaging_hand_example():
    # node 0 with neighbours 1 and 2: weights 1/3 over (93.8, 102.4, 96.7) → 97.6
    edges = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
    layer = MeanAggConv(1, 1, bias=False).double()
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)  # identity map: the layer is pure neighbour averaging
    x = torch.tensor([[93.8], [102.4], [96.7]], dtype=torch.float64)
    y = layer(x, mean_norm(edges, 3, dtype=torch.float64))
    assert round(float(y[0, 0]), 1) == 97.6
    assert float(y[0, 0]) == pytest.approx((93.8 + 102.4 + 96.7) / 3, abs=1e-12)
    assert mean_norm(edges, 3).to_dense()[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_gcn_norm_and_layer_match_numpy_on_karate():
    g = karate()
    n = g.num_nodes
    a = np.zeros((n, n))
    a[g.edge_index[0].numpy(), g.edge_index[1].numpy()] = 1.0
    a_tilde = a + np.eye(n)
    d = a_tilde.sum(1)
    ref = a_tilde / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    a_hat = gcn_norm(g.edge_index, n, dtype=torch.float64).to_dense().numpy()
    assert np.allclose(a_hat, ref, atol=1e-12) and np.allclose(a_hat, a_hat.T)
    assert g.num_edges == 78 and int(g.y.sum()) == 17  # 17 members follow the Officer
    layer = GCNConv(n, 4).double()
    x = torch.randn(n, n, dtype=torch.float64)
    out = layer(x, gcn_norm(g.edge_index, n, dtype=torch.float64)).detach().numpy()
    w = layer.linear.weight.detach().numpy()
    assert np.allclose(out, ref @ x.numpy() @ w.T + layer.bias.detach().numpy(), atol=1e-10)


@pytest.mark.parametrize("model", ["spectral", "spatial"])
def test_karate_club_median_of_five_seeds(model):
    r = run(TrainArgs(graph="karate", model=model, seeds=5, baseline=False))
    assert r["labelled"] == 2 and r["nodes"] == 34
    assert r["accuracy"] >= 0.85, r


def test_sbm_gcn_beats_mlp_by_ten_points():
    g = sbm(nodes=1000, seed=0)
    assert g.num_classes == 5 and int(g.train_mask.sum()) == 100
    r = run(TrainArgs(graph="sbm", seeds=3, epochs=150), g)
    assert r["accuracy"] - r["mlp_accuracy"] >= 0.10, r
    assert r["accuracy"] >= 0.8, r


def test_sbm_generator_degrees_and_homophily():
    g = sbm(nodes=5000, deg_in=6, deg_out=2, seed=1)
    src, dst = g.edge_index
    mean_deg = g.edge_index.shape[1] / g.num_nodes
    same = float((g.y[src] == g.y[dst]).float().mean())
    assert 6.5 < mean_deg < 8.5 and 0.7 < same < 0.8  # ≈ 8 neighbours, ≈ 6/8 in the own block


def test_cli_train_and_bad_arguments(tmp_path):
    p = run_dojo("gcn", "train", "--graph", "karate", "--seeds", "1", "--epochs", "60", "--run-dir",
                 str(tmp_path / "k"))
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((tmp_path / "k" / "result.json").read_text())
    assert result["graph"] == "karate" and result["accuracy"] > result["mlp_accuracy"]
    p = run_dojo("gcn", "train", "--dropout", "1.5", "--run-dir", str(tmp_path / "x"))
    assert p.returncode == 2 and "--dropout" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_dojo("gcn", "train", "--graph", "cora", "--run-dir", str(tmp_path / "x"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1


def test_tune_sweep(ray_local, tmp_path):
    from services.gcn.sweep import SweepArgs, sweep

    r = sweep(SweepArgs(samples=2, epochs=30, sbm_nodes=300, run_dir=str(tmp_path / "sweep")))
    assert r["trials"] == 2 and r["errors"] == 0 and 0.2 < r["best_accuracy"] <= 1.0
    assert json.loads((tmp_path / "sweep" / "result.json").read_text())["best_model"] in ("spectral", "spatial")
