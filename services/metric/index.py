"""The embedding index that `/v1/similar` searches: embeddings of a held-out split with labels,
class centroids of the training embeddings, and the anomaly score.

anomaly score = distance from an embedding to the nearest class centroid. ``threshold`` is the
99th percentile of that score over the training images, so ``score > threshold`` flags an input
that looks unlike every class the model was trained on.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch


@dataclasses.dataclass
class EmbeddingIndex:
    embeddings: torch.Tensor   # (N, D) float32, unit rows
    labels: torch.Tensor       # (N,) int64
    centroids: torch.Tensor    # (C, D) float32, mean training embedding per class
    threshold: float           # 99th percentile of the training images' anomaly scores
    split: str = "test"

    @classmethod
    def build(cls, emb: torch.Tensor, labels: torch.Tensor, train_emb: torch.Tensor, train_labels: torch.Tensor,
              split: str = "test") -> EmbeddingIndex:
        n_cls = int(train_labels.max()) + 1
        centroids = torch.stack([train_emb[train_labels == c].mean(0) for c in range(n_cls)])
        scores = torch.cdist(train_emb, centroids).min(1).values
        return cls(emb.float(), labels.long(), centroids, float(torch.quantile(scores, 0.99)), split)

    def search(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, item ids) of the ``k`` nearest items for each query row: (B, k) each."""
        d = torch.cdist(q.float(), self.embeddings)                               # (B, N)
        return d.topk(min(k, len(self.embeddings)), dim=1, largest=False)

    def anomaly(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score, nearest centroid's class) per query row."""
        d = torch.cdist(q.float(), self.centroids)                                # (B, C)
        score, cls = d.min(1)
        return score, cls

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, embeddings=self.embeddings.numpy().astype(np.float16),
                            labels=self.labels.numpy().astype(np.int16), centroids=self.centroids.numpy(),
                            threshold=np.float32(self.threshold), split=np.array(self.split))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EmbeddingIndex:
        z = np.load(io.BytesIO(data))
        return cls(torch.from_numpy(z["embeddings"].astype(np.float32)), torch.from_numpy(z["labels"].astype(np.int64)),
                   torch.from_numpy(z["centroids"].astype(np.float32)), float(z["threshold"]), str(z["split"]))
