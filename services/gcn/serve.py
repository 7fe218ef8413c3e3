"""``POST /v1/graph/classify`` (capability "graph"): semi-supervised node classification of a
graph sent in the request.

The request holds the graph (``num_nodes``, an undirected ``edges`` list), optional node
``features`` (one row per node, all the same width; one-hot node ids when omitted) and a few
``labels`` ({node: class}). A two-layer GCN is trained on the labelled nodes in a Ray task
(the ingress stays responsive) and the response holds a class and class probabilities per node.
There is no model deployment: ``bind`` returns None.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import ray
import torch
from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.serve.common import AppArgs, BadInput

MAX_NODES, MAX_EDGES, MAX_FEATURE_VALUES, MAX_ONEHOT_NODES = 20_000, 200_000, 2_000_000, 5_000


class ClassifyRequest(BaseModel):
    num_nodes: int = Field(description="Number of nodes; nodes are 0 .. num_nodes-1")
    edges: list[tuple[int, int]] = Field(description="Undirected edges as [u, v] pairs")
    labels: dict[int, int] = Field(description="The known classes: {node: class}, at least one node")
    features: list[list[float]] | None = Field(None, description="One feature row per node (same width); "
                                                                  "one-hot node ids when omitted")
    model: Literal["spectral", "spatial"] = Field("spectral", description="GCN propagation rule")
    epochs: int = Field(200, ge=1, le=1000)
    hidden: int = Field(16, ge=1, le=256)
    seed: int = 0


class ClassifyResponse(BaseModel):
    labels: list[int] = Field(description="Predicted class of every node (given labels are kept)")
    probabilities: list[list[float]] = Field(description="Class probabilities per node")
    train_accuracy: float = Field(description="Accuracy of the model on the labelled nodes")
    num_classes: int


def validate(req: ClassifyRequest) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Check the graph; (edges (E, 2), features (N, F) or None, labelled nodes, their classes) or BadInput."""
    n = req.num_nodes
    if n <= 0:
        raise BadInput("the graph is empty: num_nodes must be >= 1")
    if n > MAX_NODES:
        raise BadInput(f"num_nodes {n} exceeds the limit of {MAX_NODES}")
    if len(req.edges) > MAX_EDGES:
        raise BadInput(f"{len(req.edges)} edges exceed the limit of {MAX_EDGES}")
    edges = np.asarray(req.edges, dtype=np.int64).reshape(-1, 2)
    bad = np.flatnonzero((edges < 0).any(1) | (edges >= n).any(1))
    if len(bad):
        u, v = edges[bad[0]]
        raise BadInput(f"edge {int(bad[0])} ({u}, {v}) refers to a node that does not exist "
                       f"(nodes are 0..{n - 1})")
    if not req.labels:
        raise BadInput("labels must name at least one labelled node")
    nodes = np.array(list(req.labels.keys()), dtype=np.int64)
    classes = np.array(list(req.labels.values()), dtype=np.int64)
    if (nodes < 0).any() or (nodes >= n).any():
        raise BadInput(f"labels name node {int(nodes[(nodes < 0) | (nodes >= n)][0])}, which does not exist "
                       f"(nodes are 0..{n - 1})")
    if (classes < 0).any() or classes.max() >= 1000:
        raise BadInput("classes must be integers in 0..999")
    if req.features is None:
        if n > MAX_ONEHOT_NODES:
            raise BadInput(f"without features the graph may have at most {MAX_ONEHOT_NODES} nodes (one-hot ids)")
        return edges, None, nodes, classes
    if len(req.features) != n:
        raise BadInput(f"features has {len(req.features)} rows but num_nodes is {n}")
    width = len(req.features[0])
    if width == 0:
        raise BadInput("feature rows must not be empty")
    wrong = next((i for i, r in enumerate(req.features) if len(r) != width), None)
    if wrong is not None:
        raise BadInput(f"wrong feature width: row {wrong} has {len(req.features[wrong])} values, row 0 has {width}")
    if n * width > MAX_FEATURE_VALUES:
        raise BadInput(f"{n}x{width} feature values exceed the limit of {MAX_FEATURE_VALUES}")
    x = np.asarray(req.features, dtype=np.float32)
    if not np.isfinite(x).all():
        raise BadInput("features must be finite numbers")
    return edges, x, nodes, classes


def classify(edges: np.ndarray, x: np.ndarray | None, nodes: np.ndarray, classes: np.ndarray, n: int,
             model: str = "spectral", epochs: int = 200, hidden: int = 16, seed: int = 0) -> dict:
    """Train a two-layer GCN on the labelled nodes and predict every node (runs anywhere: task or process)."""
    from services.gcn.graphs import Graph, undirected
    from services.gcn.layers import GCN
    from services.gcn.train import fit

    torch.set_num_threads(1)
    y = torch.full((n,), -1, dtype=torch.int64)
    y[torch.from_numpy(nodes)] = torch.from_numpy(classes)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.from_numpy(nodes)] = True
    feats = torch.eye(n) if x is None else torch.from_numpy(np.array(x))
    g = Graph(undirected(edges), feats, y, mask, "request")
    n_cls = int(classes.max()) + 1
    net = GCN(feats.shape[1], hidden, n_cls, dropout=0.5, kind=model)
    r = fit(net, g, epochs=epochs, seed=seed)
    pred = r["pred"].clone()
    train_acc = float((pred[mask] == y[mask]).float().mean())
    pred[mask] = y[mask]
    return {"labels": pred.tolist(), "probabilities": r["probs"].round(decimals=4).tolist(),
            "train_accuracy": train_acc, "num_classes": n_cls}


# No logical CPU reserved: a request must never queue behind training jobs or replicas that hold
# every CPU of the cluster (it did, for minutes, in a busy test session). Concurrency is bounded by
# the ingress's max_ongoing_requests; the task itself uses one torch thread.
_classify_task = ray.remote(num_cpus=0, max_retries=0)(classify)

router = APIRouter(tags=["graphs"])


@router.post("/v1/graph/classify", response_model=ClassifyResponse)
async def classify_route(req: ClassifyRequest) -> ClassifyResponse:
    """Label every node of a graph from a few labelled ones (a GCN trained for this request)."""
    edges, x, nodes, classes = validate(req)
    out = await _classify_task.remote(edges, x, nodes, classes, req.num_nodes, req.model, req.epochs, req.hidden,
                                      req.seed)
    return ClassifyResponse(**out)


def bind(args: AppArgs):
    """No model deployment: each request trains its own small GCN in a Ray task."""
    return None
