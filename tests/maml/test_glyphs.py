"""The offline few-shot benchmark: enough classes, disjoint splits, no look-alikes across splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.maml import glyphs


@pytest.fixture(scope="module")
def gs(glyph_cache):
    return glyphs.load(glyph_cache)


def test_size_and_splits(gs):
    s = gs.summary()
    assert s["classes"] >= 4000 and s["scripts"] >= 50, s  # Omniglot: 1,623 characters, 50 alphabets
    assert s["test_classes"] >= 600 and s["val_classes"] >= 300 and s["train_classes"] >= 2000, s
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        ca, cb = gs.classes(a), gs.classes(b)
        assert not set(gs.codepoints[ca]) & set(gs.codepoints[cb])
        assert not set(gs.scripts[ca]) & set(gs.scripts[cb]), "whole alphabets belong to one split"
    assert {"LATIN", "GREEK", "CYRILLIC"} <= set(gs.scripts[gs.classes("train")])
    assert len(gs.codepoints) == len(set(gs.codepoints.tolist()))
    renders = np.diff(gs.offsets)
    assert renders.min() >= 1 and renders.mean() > 2  # several fonts ("drawers") per letter on average


def test_no_look_alikes_across_splits(gs):
    """The first render of every class is < the dedupe threshold in cosine similarity from all others."""
    first = gs.images[gs.offsets[:-1]].reshape(len(gs.codepoints), -1).astype(np.float32)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    test, train = first[gs.classes("test")], first[gs.classes("train")]
    assert (test @ train.T).max() <= 0.93 + 1e-5


def test_cache_roundtrip(gs, glyph_cache):
    again = glyphs.load(glyph_cache)
    assert np.array_equal(again.images, gs.images) and np.array_equal(again.split, gs.split)


def test_sampler_shapes_labels_and_distortion(gs):
    s = glyphs.FewShotSampler(gs, "test", ways=5, shots=2, queries=3)
    sx, sy, qx, qy = s.sample(4, torch.Generator().manual_seed(0))
    assert sx.shape == (4, 10, 1, 28, 28) and qx.shape == (4, 15, 1, 28, 28)
    assert sy.tolist()[0] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and qy.shape == (4, 15)
    assert 0.0 <= float(sx.min()) and float(sx.max()) <= 1.0 and float(sx.mean()) > 0.02
    # Same seed, same tasks; distortion makes two draws of a class differ.
    again = s.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], sx)
    assert not torch.equal(sx[:, 0], sx[:, 1])
    with pytest.raises(ValueError, match="fewer than"):
        glyphs.FewShotSampler(gs, "val", ways=100_000, shots=1, queries=1)


def test_script_names():
    assert glyphs.script_of("A") == "LATIN" and glyphs.script_of("ж") == "CYRILLIC"
    assert glyphs.script_of("\u12a0") == "ETHIOPIC" and glyphs.script_of("\u10d0") == "GEORGIAN"
    assert glyphs.script_of("1") is None and glyphs.script_of("+") is None
