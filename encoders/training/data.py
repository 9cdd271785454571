"""Training sources and the reference project's x24 class expansion.

A *source* is one base image: a synthetic document template (family + template seed; its
fills vary the personal data between views) or a real natural/graphic image (a crop of a
wallpaper, an icon).  Every source gives 24 classes: 4 rotations x {as is, vertically flipped}
x {full, top half, bottom half} (all 24, unlike the reference's off-by-one).  Flips and
quarter turns are therefore *classes*, never augmentations.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

VARIANTS = 24

# Real-image roots used for TRAINING.  The evaluation benchmark uses other roots
# (/usr/share/wallpapers); reserved sources (package documentation, card games) are never read.
TRAIN_IMAGE_GLOBS = (
    "/usr/share/backgrounds/**/*.jpg",
    "/usr/share/backgrounds/**/*.png",
    "/usr/share/icons/Adwaita/512x512/**/*.png",
    "/usr/share/icons/Adwaita/96x96/**/*.png",
)


@dataclass(frozen=True)
class Source:
    """One base image; ``kind`` is "synth" (family, template_seed; ``member`` >= 0 makes it that
    member of the template's sibling set, ``synth.siblings``) or "image" (path, crop)."""

    kind: str
    family: str = ""
    template_seed: int = 0
    member: int = -1
    path: str = ""
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 as fractions

    @property
    def key(self) -> str:
        if self.kind == "synth":
            return f"synth:{self.family}:{self.template_seed}" + (f"/{self.member}" if self.member >= 0 else "")
        return f"image:{self.path}:{','.join(f'{c:.3f}' for c in self.crop)}"


def stable_seed(*parts: object) -> int:
    """A seed from values, stable across processes (Python's hash() is salted)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def source_group(key: str) -> str:
    """What a source's siblings share: the family of a synthetic template, the file of a real image
    (its crops are siblings).  ``synth:payslip:123`` -> ``synth:payslip``."""
    kind, rest = key.split(":", 1)
    if kind not in ("synth", "image"):
        raise ValueError(f"not a source key: {key!r}")
    return f"{kind}:{rest.rsplit(':', 1)[0]}"


def class_groups(source_keys: Sequence[str], labels: np.ndarray | None = None) -> np.ndarray:
    """One group id per class, classes laid out as ``source index * VARIANTS + variant`` (the
    cache's layout): sources of one group seen through the same variant are siblings.  Classes
    absent from ``labels`` (a partial cache) get a negative id of their own: nobody's sibling."""
    ids: dict[str, int] = {}
    per_source = np.array([ids.setdefault(source_group(k), len(ids)) for k in source_keys], dtype=np.int64)
    groups = (per_source[:, None] * VARIANTS + np.arange(VARIANTS)[None, :]).reshape(-1)
    if labels is not None:
        absent = np.ones(len(groups), bool)
        absent[np.unique(labels)] = False
        groups[absent] = -1 - np.flatnonzero(absent)
    return groups


def synth_sources(families: list[str], templates_per_family: int, seed: int = 0,
                  template_offset: int = 0, siblings: int = 1) -> list[Source]:
    """Templates ``template_offset .. template_offset + templates_per_family - 1`` of each family:
    an offset draws templates disjoint from an earlier cache's, so caches can be added together.
    ``siblings`` > 1 makes each template a set of that many types: the template and siblings with
    one element changed (``synth.siblings``), each a class of its own."""
    out = []
    for fam in families:
        for t in range(template_offset, template_offset + templates_per_family):
            ts = stable_seed("train-template", seed, fam, t) % 10**9
            if siblings > 1:
                out.extend(Source("synth", family=fam, template_seed=ts, member=k) for k in range(siblings))
            else:
                out.append(Source("synth", family=fam, template_seed=ts))
    return out


def image_sources(globs: tuple[str, ...] = TRAIN_IMAGE_GLOBS, crops_per_large_image: int = 6,
                  seed: int = 0, max_icons: int = 400) -> list[Source]:
    """Real images; large ones (wallpapers) give several crops, each its own source."""
    rng = np.random.default_rng(seed)
    out: list[Source] = []
    icons = 0
    for pattern in globs:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if not os.path.isfile(path):
                continue
            if "/icons/" in path:
                if icons >= max_icons:
                    continue
                icons += 1
                out.append(Source("image", path=path))
                continue
            out.append(Source("image", path=path))
            for _ in range(crops_per_large_image - 1):
                w, h = rng.uniform(0.3, 0.6, size=2)
                x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                out.append(Source("image", path=path, crop=(float(x0), float(y0), float(x0 + w), float(y0 + h))))
    return out


_IMAGE_CACHE: dict[str, np.ndarray] = {}


def _load_real(path: str, max_side: int = 1400) -> np.ndarray:
    if path not in _IMAGE_CACHE:
        from ..decode import read_image

        img = read_image(path)
        s = max_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        if len(_IMAGE_CACHE) > 64:
            _IMAGE_CACHE.clear()
        _IMAGE_CACHE[path] = img
    return _IMAGE_CACHE[path]


def render_source(src: Source, fill: int, scale: float = 0.5, min_side: int = 256) -> np.ndarray:
    """The clean base image of a source (fill ``fill`` for synthetic documents)."""
    if src.kind == "synth":
        if src.member >= 0:
            from .synth.siblings import render_sibling, sibling

            return render_sibling(sibling(src.family, src.template_seed, src.member), fill, scale)
        from .synth import render_document

        return render_document(src.family, src.template_seed, fill_seed=fill, scale=scale)
    img = _load_real(src.path)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = src.crop
    img = img[int(y0 * h):max(int(y1 * h), int(y0 * h) + 8), int(x0 * w):max(int(x1 * w), int(x0 * w) + 8)]
    if min(img.shape[:2]) < min_side:  # icons: upscale so captures have pixels to lose
        s = min_side / min(img.shape[:2])
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    return img


def apply_variant(img: np.ndarray, v: int) -> np.ndarray:
    """Variant ``v`` in [0, 24): rotation (v % 4) x 90 deg, vertical flip ((v // 4) % 2), part (v // 8)."""
    if not 0 <= v < VARIANTS:
        raise ValueError(f"variant must be in [0, {VARIANTS}), got {v}")
    rot, flip, part = v % 4, (v // 4) % 2, v // 8
    if rot:
        img = np.rot90(img, k=rot)
    if flip:
        img = img[::-1]
    if part == 1:
        img = img[: img.shape[0] // 2]
    elif part == 2:
        img = img[img.shape[0] // 2:]
    return np.ascontiguousarray(img)
