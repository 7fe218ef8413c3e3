"""Pictures in and out, without torch (the ingress uses these): decode an upload into the model's
28×28 input, and render attributions as a PNG heatmap over the input or as a bar chart for rows."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

FORMATS = ("PNG", "JPEG")


class ImageError(ValueError):
    """An input image we refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def b64decode(text: str) -> bytes:
    """Standard base64, with or without a ``data:image/...;base64,`` prefix."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image_base64 is not valid base64: {exc}") from exc


def decode(data: bytes, max_side: int) -> np.ndarray:
    """PNG/JPEG bytes -> grayscale uint8 (H, W); the size is checked before pixels are decoded."""
    if not data:
        raise ImageError("the image is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is far too large: {exc}", 413) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"could not decode the upload as a PNG or JPEG image ({len(data)} bytes)", 415) from exc
    if img.format not in FORMATS:
        raise ImageError(f"unsupported image format {img.format} (send PNG or JPEG)", 415)
    w, h = img.size
    if max(w, h) > max_side:
        raise ImageError(f"image is {w}x{h} pixels; the largest accepted side is {max_side} pixels", 413)
    try:
        img.load()
    except (OSError, ValueError) as exc:
        raise ImageError(f"the {img.format} image is truncated or corrupt: {exc}") from exc
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, img)  # transparent = background (black, as in MNIST)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def to_model_input(gray: np.ndarray, invert: bool = False) -> np.ndarray:
    """(H, W) uint8 -> (28, 28) float32 in [0, 1]; ``invert`` for dark-on-light pictures."""
    img = Image.fromarray(gray)
    if img.size != (28, 28):
        img = img.resize((28, 28), Image.Resampling.BOX if min(img.size) >= 28 else Image.Resampling.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    return 1.0 - x if invert else x


def _jet(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 (..., 3), the classic 'jet' ramp (blue = low, red = high)."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def overlay(gray: np.ndarray, attributions: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Heatmap of (28, 28) attributions (evidence for the target, scaled to its maximum) blended over
    the grayscale input (H, W); the picture has the input's size."""
    a = np.clip(np.nan_to_num(np.asarray(attributions, dtype=np.float64)), 0, None)
    a = a / a.max() if a.max() > 0 else a
    h, w = gray.shape
    heat = Image.fromarray(_jet(a)).resize((w, h), Image.Resampling.BILINEAR)
    base = Image.fromarray(gray).convert("RGB")
    return Image.blend(base, heat, alpha)


def bar_chart(names: list[str], values: list[float], width: int = 520) -> Image.Image:
    """Horizontal bars of signed attributions (green for, red against the target) with feature names."""
    font = ImageFont.load_default()
    row, label_w = 18, 190
    img = Image.new("RGB", (width, row * len(names) + 12), "white")
    d = ImageDraw.Draw(img)
    mid, span = label_w + (width - label_w) // 2, (width - label_w) // 2 - 8
    top = max((abs(v) for v in values), default=0.0) or 1.0
    d.line([(mid, 4), (mid, img.height - 4)], fill="gray")
    for i, (n, v) in enumerate(zip(names, values, strict=True)):
        y = 6 + i * row
        d.text((4, y), n[:30], fill="black", font=font)
        end = mid + int(span * v / top)
        d.rectangle([min(mid, end), y + 2, max(mid, end), y + row - 4], fill="green" if v >= 0 else "red")
    return img
