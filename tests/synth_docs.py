"""Tiny synthetic "document types" for evaluation and calibration tests (cv2 only, seeded).

A type is a fixed layout of coloured blocks and lines; a capture of it is the layout with a
small shift, brightness change and noise, so even a random-projection model tells types apart.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def type_image(type_id: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1000 + type_id)
    img = np.full((size, size, 3), 235, np.uint8)
    for _ in range(5):
        x0, y0 = rng.integers(0, size - 12, 2)
        w, h = rng.integers(8, size // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.rectangle(img, (int(x0), int(y0)), (int(min(size - 1, x0 + w)), int(min(size - 1, y0 + h))), colour, -1)
    return img


def capture(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dx, dy = rng.integers(-2, 3, 2)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    out = out * rng.uniform(0.9, 1.1) + rng.normal(0, 6, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def make_benchmark(root: Path, n_types: int = 6, n_queries: int = 3, n_unknown_types: int = 2,
                   splits: tuple[str, ...] = ("val", "test")) -> Path:
    """The benchmark layout scripts/evaluate.py reads: <root>/<split>/{register,queries,unknown}/<type>/..."""
    for s_i, split in enumerate(splits):
        base = root / split
        for t in range(n_types):
            img = type_image(t)
            write(base / "register" / f"type{t:02d}" / "specimen.png", img)
            for k in range(n_queries):
                write(base / "queries" / f"type{t:02d}" / f"{k}.jpg", capture(img, 100 * t + k + 7 * s_i))
        for u in range(n_unknown_types):
            img = type_image(500 + u)
            for k in range(n_queries):
                write(base / "unknown" / f"other{u:02d}" / f"{k}.jpg", capture(img, 9000 + 10 * u + k))
    (root / "manifest.json").write_text('{"synthetic": true}\n')
    return root
