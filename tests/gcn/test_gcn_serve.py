"""/v1/graph/classify over real HTTP: karate club from two labels; bad graphs → 422 naming the problem."""

from __future__ import annotations

import httpx
import pytest
from ray import serve

from services.gcn.graphs import karate
from services.serve.app import build_app


@pytest.fixture(scope="module")
def url(ray_local):
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app({"api_keys_env": "DOJO_TEST_NO_KEYS"}), name="graph", route_prefix="/graph")
    yield "http://127.0.0.1:8000/graph"
    serve.delete("graph")


def test_classify_karate_club(url):
    g = karate()
    edges = g.edge_index[:, : g.num_edges].T.tolist()
    body = {"num_nodes": 34, "edges": edges, "labels": {"0": 0, "33": 1}}
    r = httpx.post(f"{url}/v1/graph/classify", json=body, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["num_classes"] == 2 and len(out["labels"]) == 34 and len(out["probabilities"]) == 34
    assert out["labels"][0] == 0 and out["labels"][33] == 1
    acc = sum(int(a == b) for a, b in zip(out["labels"], g.y.tolist(), strict=True)) / 34
    assert acc >= 0.85, acc
    # with features (the spatial variant): two feature columns that say which leader a node touches
    feats = [[float(i == 0 or [i, 0] in edges or [0, i] in edges), float(i == 33 or [i, 33] in edges
              or [33, i] in edges)] for i in range(34)]
    r = httpx.post(f"{url}/v1/graph/classify", json={**body, "features": feats, "model": "spatial"}, timeout=120)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("body", "message"), [
    ({"num_nodes": 0, "edges": [], "labels": {"0": 0}}, "empty"),
    ({"num_nodes": 3, "edges": [[0, 1], [1, 7]], "labels": {"0": 0}}, "edge 1 (1, 7)"),
    ({"num_nodes": 3, "edges": [[0, 1]], "labels": {"0": 0}, "features": [[1.0, 2.0], [1.0], [0.0, 1.0]]},
     "wrong feature width"),
    ({"num_nodes": 3, "edges": [[0, 1]], "labels": {"0": 0}, "features": [[1.0], [1.0]]}, "2 rows"),
    ({"num_nodes": 3, "edges": [[0, 1]], "labels": {}}, "at least one"),
    ({"num_nodes": 3, "edges": [[0, 1]], "labels": {"5": 1}}, "node 5"),
    ({"num_nodes": 3, "edges": [[0, 1, 2]], "labels": {"0": 0}}, "edges"),
    ({"num_nodes": 3, "edges": "nope", "labels": {"0": 0}}, "edges"),
])
def test_bad_graphs_get_422_with_message(url, body, message):
    r = httpx.post(f"{url}/v1/graph/classify", json=body, timeout=60)
    assert r.status_code == 422 and message in r.json()["detail"], r.text
