"""An Omniglot-like few-shot benchmark rendered offline from Debian's font packages.

Omniglot (1,623 hand-drawn characters from 50 alphabets) cannot be downloaded here, so
we build its analogue from what ships in ``fonts-noto-core``, ``fonts-freefont-ttf`` and
``fonts-unifont``:

* a *class* is one letter (Unicode category Lu/Ll/Lo) of one script, grouped into
  *alphabets* by the script word of its Unicode name ("ETHIOPIC SYLLABLE HA" → ETHIOPIC);
  ideographic and syllabary blocks with thousands of signs (CJK, Hangul, Yi, Tangut,
  cuneiform, hieroglyphs, ...) are left out, and each alphabet keeps at most
  ``per_script`` letters;
* the *drawers* of a letter are the fonts that contain it (Noto Sans/Serif in several
  weights and slants, FreeSans/Serif/Mono, Unifont): each renders it once, cropped to its
  ink and scaled into a 24×24 box centred in 28×28;
* near-duplicate letters (homoglyphs such as Latin "o", Cyrillic "о", Greek "ο", or
  "O" once sizes are normalised) are removed globally (cosine similarity of the
  renders > ``dedupe_threshold``), so no two classes look alike;
* whole alphabets go to meta-train, meta-val or meta-test (like Omniglot's background
  and evaluation sets), so meta-test letters *and* scripts never appear in training;
* every sampled image gets a random affine distortion (rotation, scale, shear,
  translation) and, sometimes, thicker strokes — applied on the fly in torch.

The rendered arrays are cached as one ``.npz`` file (~30 MB) under ``cache_dir``.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import math
import os
import re
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

FONT_GLOBS = (
    "/usr/share/fonts/truetype/noto/*.ttf",
    "/usr/share/fonts/truetype/freefont/*.ttf",
    "/usr/share/fonts/opentype/unifont/unifont*.otf",
)
DEBIAN_PACKAGES = "fonts-noto-core fonts-freefont-ttf fonts-unifont"
SPLITS = ("train", "val", "test")
VERSION = 1
SIZE, BOX = 28, 24

# Scripts with thousands of logographic / syllabic signs, presentation forms and math styles.
EXCLUDED = re.compile(
    r"^(CJK|HANGUL|HALFWIDTH|FULLWIDTH|YI|TANGUT|KHITAN|NUSHU|HENTAIGANA|CUNEIFORM|EGYPTIAN|ANATOLIAN|"
    r"MATHEMATICAL|DOUBLE-STRUCK|SCRIPT$|BLACK-LETTER|LINEAR A|BAMUM|CANADIAN|MEROITIC HIEROGLYPHIC|"
    r"KATAKANA|HIRAGANA|BOPOMOFO|IDEOGRAPHIC)"
)
# Latin, Greek and Cyrillic share many shapes: keep them together in meta-training.
ALWAYS_TRAIN = ("LATIN", "GREEK", "CYRILLIC")
_ALIASES = {"GEORGIAN MTAVRULI": "GEORGIAN", "KHMER INDEPENDENT": "KHMER"}
_SCRIPT = re.compile(
    r"^(.*?) (?:CAPITAL |SMALL )?(?:LETTER|SYLLABLE|LIGATURE|CHARACTER|IDEOGRAPH|VOWEL|CONSONANT)\b"
)


def script_of(ch: str) -> str | None:
    """The alphabet a letter belongs to, from its Unicode name; None for non-letters."""
    if unicodedata.category(ch) not in ("Lu", "Ll", "Lo"):
        return None
    name = unicodedata.name(ch, "")
    if not name:
        return None
    m = _SCRIPT.match(name)  # signs, symbols and marks without LETTER/SYLLABLE/... are not letters
    return _ALIASES.get(m.group(1), m.group(1)) if m else None


def font_paths() -> list[str]:
    return sorted(p for g in FONT_GLOBS for p in glob.glob(g))


def coverage(paths: list[str]) -> dict[int, list[str]]:
    """codepoint → the fonts whose cmap contains it."""
    from fontTools.ttLib import TTFont

    cov: dict[int, list[str]] = collections.defaultdict(list)
    for p in paths:
        cmap = TTFont(p, lazy=True).getBestCmap() or {}
        for cp in cmap:
            cov[cp].append(p)
    return cov


def render(ch: str, font) -> np.ndarray | None:
    """One letter in one font: ink cropped, scaled to fit BOX×BOX, centred in SIZE×SIZE (uint8)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(canvas).text((32, 32), ch, fill=255, font=font)
    bbox = canvas.getbbox()
    if bbox is None:
        return None
    glyph = canvas.crop(bbox)
    w, h = glyph.size
    if w * h < 12:  # a dot or a hairline: not a letter shape
        return None
    scale = BOX / max(w, h)
    glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    out = Image.new("L", (SIZE, SIZE), 0)
    out.paste(glyph, ((SIZE - glyph.size[0]) // 2, (SIZE - glyph.size[1]) // 2))
    return np.asarray(out, dtype=np.uint8)


@dataclasses.dataclass
class GlyphSet:
    """Renders of every kept letter, with its alphabet and split."""

    images: np.ndarray  # (M, 28, 28) uint8, all renders of all classes
    offsets: np.ndarray  # (C + 1,) renders of class c are images[offsets[c]:offsets[c + 1]]
    codepoints: np.ndarray  # (C,)
    scripts: np.ndarray  # (C,) str
    split: np.ndarray  # (C,) str: train / val / test

    def classes(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def summary(self) -> dict[str, int]:
        out = {"classes": len(self.codepoints), "renders": len(self.images),
               "scripts": len(set(self.scripts.tolist()))}
        for s in SPLITS:
            idx = self.classes(s)
            out[f"{s}_classes"] = len(idx)
            out[f"{s}_scripts"] = len(set(self.scripts[idx].tolist()))
        return out


def _dedupe(first: np.ndarray, threshold: float) -> np.ndarray:
    """Indices to keep so that no two kept renders have cosine similarity > threshold."""
    v = first.reshape(len(first), -1).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-8
    keep: list[int] = []
    kept = np.zeros((0, v.shape[1]), np.float32)
    for start in range(0, len(v), 512):  # greedy, in order, blockwise against what is kept
        block = v[start:start + 512]
        sim_prev = block @ kept.T if len(kept) else np.zeros((len(block), 0), np.float32)
        ok_prev = (sim_prev <= threshold).all(axis=1)
        newly: list[int] = []
        for i in range(len(block)):
            if not ok_prev[i]:
                continue
            if newly and (block[newly] @ block[i] > threshold).any():
                continue
            newly.append(i)
        keep += [start + i for i in newly]
        kept = np.concatenate([kept, block[newly]])
    return np.asarray(keep, dtype=np.int64)


def build(per_script: int = 80, min_script: int = 15, max_fonts: int = 8, dedupe_threshold: float = 0.93,
          val_fraction: float = 0.12, test_fraction: float = 0.25, seed: int = 0) -> GlyphSet:
    """Render the benchmark from the installed fonts (about 20–60 s on one core)."""
    from PIL import ImageFont

    paths = font_paths()
    if not paths:
        raise FileNotFoundError(f"no fonts found: install the Debian packages {DEBIAN_PACKAGES}")
    rng = np.random.default_rng(seed)
    cov = coverage(paths)
    by_script: dict[str, list[int]] = collections.defaultdict(list)
    for cp in sorted(cov):
        s = script_of(chr(cp))
        if s is not None and not EXCLUDED.match(s):
            by_script[s].append(cp)
    fonts: dict[str, object] = {}
    classes: list[tuple[int, str, list[np.ndarray]]] = []
    for s in sorted(by_script):
        cps = by_script[s]
        if len(cps) < min_script:
            continue
        if len(cps) > per_script:  # spread over the block, deterministic
            cps = [cps[i] for i in sorted(rng.choice(len(cps), per_script, replace=False))]
        for cp in cps:
            cands = list(cov[cp])
            if len(cands) > max_fonts:
                cands = [cands[i] for i in sorted(rng.choice(len(cands), max_fonts, replace=False))]
            renders = []
            for p in cands:
                if p not in fonts:
                    fonts[p] = ImageFont.truetype(p, 64)
                img = render(chr(cp), fonts[p])
                if img is not None:
                    renders.append(img)
            if renders:
                classes.append((cp, s, renders))
    keep = _dedupe(np.stack([r[0] for _, _, r in classes]), dedupe_threshold)
    classes = [classes[i] for i in keep]
    counts = collections.Counter(s for _, s, _ in classes)
    scripts = [s for s in sorted(counts) if counts[s] >= min_script]
    classes = [c for c in classes if c[1] in set(scripts)]
    # Whole alphabets per split, drawn at random until each split has its share of letters.
    order = [s for s in rng.permutation(scripts).tolist() if s not in ALWAYS_TRAIN]
    total = sum(counts[s] for s in scripts)
    assign, filled = {}, {"test": 0, "val": 0}
    for s in order:
        if filled["test"] < test_fraction * total:
            assign[s] = "test"
        elif filled["val"] < val_fraction * total:
            assign[s] = "val"
        else:
            assign[s] = "train"
        if assign[s] != "train":
            filled[assign[s]] += counts[s]
    for s in scripts:
        assign.setdefault(s, "train")
    images = [img for _, _, r in classes for img in r]
    offsets = np.cumsum([0] + [len(r) for _, _, r in classes])
    return GlyphSet(
        images=np.stack(images), offsets=offsets.astype(np.int64),
        codepoints=np.asarray([cp for cp, _, _ in classes], np.int64),
        scripts=np.asarray([s for _, s, _ in classes]),
        split=np.asarray([assign[s] for _, s, _ in classes]),
    )


def default_cache_dir() -> str:
    base = os.environ.get("DOJO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "raydojo")
    return os.path.join(base, "glyphs")


def cache_key(**build_kwargs) -> str:
    """Changes when the fonts, the code version or the build arguments change."""
    h = hashlib.sha256(f"v{VERSION}|{sorted(build_kwargs.items())}".encode())
    for p in font_paths():
        st = os.stat(p)
        h.update(f"{os.path.basename(p)}:{st.st_size}".encode())
    return h.hexdigest()[:16]


def load(cache_dir: str | None = None, **build_kwargs) -> GlyphSet:
    """The benchmark from the cache, rendering it first if needed (atomic write: safe for
    concurrent Tune trials)."""
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, f"glyphs-{cache_key(**build_kwargs)}.npz")
    if not os.path.exists(path):
        gs = build(**build_kwargs)
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez_compressed(tmp, **dataclasses.asdict(gs))
        os.replace(tmp, path)
        return gs
    with np.load(path) as z:
        return GlyphSet(**{f.name: z[f.name] for f in dataclasses.fields(GlyphSet)})


class FewShotSampler:
    """N-way K-shot tasks over one split: random classes, random renders, random distortions."""

    def __init__(self, glyphs: GlyphSet, split: str, ways: int, shots: int, queries: int,
                 distort: bool = True):
        self.classes = glyphs.classes(split)
        if len(self.classes) < ways:
            raise ValueError(f"split {split!r} has {len(self.classes)} classes, fewer than {ways} ways")
        self.images = torch.from_numpy(glyphs.images)  # (M, 28, 28) uint8
        self.offsets = torch.from_numpy(glyphs.offsets)
        self.ways, self.shots, self.queries, self.distort = ways, shots, queries, distort

    def sample(self, tasks: int, gen: torch.Generator):
        """(support x, support y, query x, query y): (T, N·K, 1, 28, 28), (T, N·K), (T, N·Q, ...), (T, N·Q)."""
        n, k, q = self.ways, self.shots, self.queries
        chosen = torch.stack([torch.randperm(len(self.classes), generator=gen)[:n] for _ in range(tasks)])
        cls = torch.from_numpy(self.classes)[chosen]  # (T, N)
        lo, hi = self.offsets[cls], self.offsets[cls + 1]  # (T, N)
        pick = torch.rand(tasks, n, k + q, generator=gen)
        idx = lo[..., None] + (pick * (hi - lo)[..., None]).long()  # (T, N, K+Q): a random render each
        x = self.images[idx.flatten()].float().div_(255.0).unsqueeze(1)  # (T·N·(K+Q), 1, 28, 28)
        if self.distort:
            x = distort(x, gen)
        x = x.view(tasks, n, k + q, 1, SIZE, SIZE)
        y = torch.arange(n).view(1, n, 1).expand(tasks, n, k + q)
        sx, qx = x[:, :, :k].reshape(tasks, n * k, 1, SIZE, SIZE), x[:, :, k:].reshape(tasks, n * q, 1, SIZE, SIZE)
        sy, qy = y[:, :, :k].reshape(tasks, n * k), y[:, :, k:].reshape(tasks, n * q)
        return sx, sy, qx, qy


def distort(x: torch.Tensor, gen: torch.Generator, rotate_deg: float = 15.0, scale: tuple = (0.8, 1.15),
            shear: float = 0.25, shift: float = 0.12, thicken_p: float = 0.3) -> torch.Tensor:
    """Random affine warp per image (bilinear) and, with probability thicken_p, thicker strokes."""
    b = x.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    a = u(-rotate_deg, rotate_deg) * math.pi / 180
    s = u(*scale)
    sh = u(-shear, shear)
    rot = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], -2)  # (B, 2, 2)
    shr = torch.zeros(b, 2, 2)
    shr[:, 0, 0] = shr[:, 1, 1] = 1.0
    shr[:, 0, 1] = sh
    lin = (rot @ shr) / s.view(b, 1, 1)  # output → input coordinates
    theta = torch.cat([lin, torch.stack([u(-shift, shift), u(-shift, shift)], -1).unsqueeze(-1)], -1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    thick = torch.rand(b, generator=gen) < thicken_p
    if thick.any():
        x[thick] = F.max_pool2d(x[thick], 3, stride=1, padding=1) * 0.5 + x[thick] * 0.5
    return x


def sample_images(glyphs: GlyphSet, split: str, n: int, gen: torch.Generator,
                  distort_images: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """n distorted images of random classes of a split with split-wide labels 0..C−1 (joint training)."""
    classes = torch.from_numpy(glyphs.classes(split))
    offsets = torch.from_numpy(glyphs.offsets)
    y = torch.randint(len(classes), (n,), generator=gen)
    lo, hi = offsets[classes[y]], offsets[classes[y] + 1]
    idx = lo + (torch.rand(n, generator=gen) * (hi - lo)).long()
    x = torch.from_numpy(glyphs.images)[idx].float().div_(255.0).unsqueeze(1)  # (n, 1, 28, 28)
    return (distort(x, gen) if distort_images else x), y
