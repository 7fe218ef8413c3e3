"""Graphs for node classification, all built offline.

* Zachary's karate club (networkx): 34 members, 78 friendships, two clubs after the split
  ("Mr. Hi" = 0, "Officer" = 1). Features: one-hot node ids (as in Kipf & Welling's example);
  one labelled node per class: the two leaders, nodes 0 and 33.
* A stochastic block model: ``blocks`` communities, each node with on average ``deg_in``
  neighbours in its own block and ``deg_out`` in others; noisy features (a class mean vector
  scaled by ``signal`` plus unit Gaussian noise), so features alone classify poorly and the
  graph carries the rest. ``labels_per_class`` labelled nodes per class (Planetoid style).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass
class Graph:
    edge_index: torch.Tensor   # (2, E) int64, both directions of every undirected edge
    x: torch.Tensor            # (N, F) float32 node features
    y: torch.Tensor            # (N,) int64 classes (-1 = unknown)
    train_mask: torch.Tensor   # (N,) bool: the labelled nodes
    name: str = ""

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1]) // 2


def undirected(edges: np.ndarray) -> torch.Tensor:
    """(E, 2) undirected edges → (2, 2E) edge_index with both directions."""
    e = torch.as_tensor(np.asarray(edges, dtype=np.int64).reshape(-1, 2))
    return torch.cat([e.T, e.T.flip(0)], dim=1)


def karate() -> Graph:
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    y = torch.tensor([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)])
    train = torch.zeros(n, dtype=torch.bool)
    train[[0, 33]] = True
    return Graph(undirected(np.array(g.edges())), torch.eye(n), y, train, "karate")


def sbm(nodes: int = 2000, blocks: int = 5, deg_in: float = 6.0, deg_out: float = 2.0, features: int = 32,
        signal: float = 0.35, labels_per_class: int = 20, seed: int = 0) -> Graph:
    """A stochastic block model with noisy class-dependent features (numpy; 100k nodes in ~1 s)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, blocks, size=nodes)
    members = [np.flatnonzero(y == b) for b in range(blocks)]
    edges = []
    # within-block edges: each node draws about deg_in/2 partners in its block (both ends count)
    for m in members:
        k = rng.poisson(deg_in / 2 * len(m))
        edges.append(np.stack([rng.choice(m, k), rng.choice(m, k)], 1))
    # between-block edges: random pairs, kept when their blocks differ
    k = rng.poisson(deg_out / 2 * nodes * blocks / (blocks - 1))
    pairs = rng.integers(0, nodes, size=(k, 2))
    edges.append(pairs[y[pairs[:, 0]] != y[pairs[:, 1]]])
    e = np.concatenate(edges)
    e = e[e[:, 0] != e[:, 1]]
    e = np.unique(np.sort(e, axis=1), axis=0)
    means = rng.normal(size=(blocks, features))
    x = signal * means[y] + rng.normal(size=(nodes, features))
    train = np.zeros(nodes, dtype=bool)
    for m in members:
        train[rng.choice(m, min(labels_per_class, len(m)), replace=False)] = True
    return Graph(undirected(e), torch.tensor(x, dtype=torch.float32), torch.tensor(y), torch.tensor(train),
                 f"sbm-{nodes}")
