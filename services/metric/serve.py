"""Serving embeddings: ``POST /v1/embed`` and ``POST /v1/similar`` (capability "embed").

An image arrives either as ``image_base64`` (PNG/JPEG/... bytes, any size up to
``max_image_side``; converted to grey and resized to 28×28) or as ``pixels`` (a 28×28 list of
numbers in [0, 1], or [0, 255] when any value exceeds 1). The ``EmbedModel`` deployment holds
the embedding net of a ``dojo metric train`` run-dir (``model.pt``) and its index (``index.npz``:
test-split embeddings with labels, training class centroids).
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from fastapi import APIRouter
from pydantic import BaseModel, Field
from ray import serve

from services.common.rundir import RunDir
from services.metric.evaluate import INDEX_FILE, MODEL_FILE, load_model
from services.metric.index import EmbeddingIndex
from services.serve.common import AppArgs, BadInput, Runtime, StartupError, handle

MAX_K = 100


class ImageInput(BaseModel):
    image_base64: str | None = Field(None, description="An encoded image (PNG, JPEG, ...), base64")
    pixels: list[list[float]] | None = Field(None, description="28×28 grey values in [0, 1] (or 0..255)")


class EmbedRequest(ImageInput):
    pass


class EmbedResponse(BaseModel):
    embedding: list[float] = Field(description="Unit-length embedding vector")
    dim: int
    anomaly_score: float = Field(description="Distance to the nearest class centroid of the training embeddings")
    anomaly_threshold: float = Field(description="99th percentile of the training images' anomaly scores")
    is_anomaly: bool = Field(description="anomaly_score > anomaly_threshold")
    nearest_class: int = Field(description="Class of the nearest centroid")


class SimilarRequest(ImageInput):
    k: int = Field(5, ge=1, le=MAX_K, description="Number of neighbours to return")


class Neighbour(BaseModel):
    item: int = Field(description="Index of the item in the index's split (e.g. MNIST test image number)")
    distance: float
    label: int


class SimilarResponse(BaseModel):
    neighbours: list[Neighbour]
    index_split: str
    index_size: int
    anomaly_score: float
    anomaly_threshold: float
    is_anomaly: bool
    nearest_class: int


def decode_image(req: ImageInput, max_side: int) -> np.ndarray:
    """The request's image as a (28, 28) float32 array in [0, 1]; BadInput (422) for anything else."""
    if (req.image_base64 is None) == (req.pixels is None):
        raise BadInput("give exactly one of image_base64 or pixels")
    if req.pixels is not None:
        rows = req.pixels
        if len(rows) != 28 or any(len(r) != 28 for r in rows):
            raise BadInput(f"pixels must be 28 rows of 28 values, got {len(rows)} rows")
        a = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
            raise BadInput("pixels must be finite values in [0, 1] or [0, 255]")
        return a / 255.0 if a.max() > 1.0 else a
    try:
        raw = base64.b64decode(req.image_base64, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("image_base64 is not valid base64") from None
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(raw))
        if max(img.size) > max_side:
            raise BadInput(f"image is {img.size[0]}x{img.size[1]} pixels; the largest side allowed is {max_side}")
        img = img.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BadInput("image_base64 does not hold a readable image (PNG, JPEG, ...)") from None
    if img.size != (28, 28):
        img = img.resize((28, 28), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


@serve.deployment(name="EmbedModel")
class EmbedModel:
    """The embedding net and its index, on CUDA when there is one."""

    def __init__(self, run_dir: str):
        rd = RunDir(run_dir)
        for f in (MODEL_FILE, INDEX_FILE):
            if not rd.exists(f):
                raise StartupError(f"embed checkpoint {rd.path(f)} is missing: create it with "
                                   f"`dojo metric train --loss triplet --data mnist --run-dir {run_dir}`")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net, self.config = load_model(rd, self.device)
        self.index = EmbeddingIndex.from_bytes(rd.read_bytes(INDEX_FILE))
        from services.metric import metrics as mm

        self._mm = mm
        self._m = mm.MetricSet([mm.EMBEDDED, mm.ANOMALY], {})

    @torch.no_grad()
    def _embed(self, image: np.ndarray, endpoint: str) -> tuple[torch.Tensor, dict]:
        z = self.net(torch.from_numpy(image)[None].to(self.device)).float().cpu()    # (1, D)
        score, cls = self.index.anomaly(z)
        s = float(score[0])
        self._m.inc(self._mm.EMBEDDED, 1, {"endpoint": endpoint})
        self._m.observe(self._mm.ANOMALY, max(s, 1e-6), {"endpoint": endpoint})
        return z, {"anomaly_score": s, "anomaly_threshold": self.index.threshold,
                   "is_anomaly": s > self.index.threshold, "nearest_class": int(cls[0])}

    def embed(self, image: np.ndarray) -> dict:
        z, anomaly = self._embed(image, "embed")
        return {"embedding": z[0].tolist(), "dim": int(z.shape[1]), **anomaly}

    def similar(self, image: np.ndarray, k: int) -> dict:
        z, anomaly = self._embed(image, "similar")
        d, idx = self.index.search(z, k)
        neighbours = [{"item": int(i), "distance": float(x), "label": int(self.index.labels[i])}
                      for x, i in zip(d[0], idx[0], strict=True)]
        return {"neighbours": neighbours, "index_split": self.index.split, "index_size": len(self.index.labels),
                **anomaly}


router = APIRouter(tags=["embeddings"])


@router.post("/v1/embed", response_model=EmbedResponse)
async def embed_route(req: EmbedRequest) -> EmbedResponse:
    """Embed a 28×28 grey image (MNIST-like); also its anomaly score."""
    image = decode_image(req, Runtime.args.max_image_side)
    return EmbedResponse(**await handle("embed").embed.remote(image))


@router.post("/v1/similar", response_model=SimilarResponse)
async def similar_route(req: SimilarRequest) -> SimilarResponse:
    """The k nearest items of the index (held-out test images) with distances and labels."""
    image = decode_image(req, Runtime.args.max_image_side)
    return SimilarResponse(**await handle("embed").similar.remote(image, req.k))


def bind(args: AppArgs):
    path = args.checkpoint_path(args.embed_checkpoint)
    rd = RunDir(path)
    for f in (MODEL_FILE, INDEX_FILE):
        if not rd.exists(f):
            raise StartupError(f"embed checkpoint {rd.path(f)} is missing: create it with "
                               f"`dojo metric train --loss triplet --data mnist --run-dir {path}`")
    return EmbedModel.bind(path)
