"""Synthetic register images for the indexer tests: each label looks clearly different.

Dark background with label-seeded coloured blocks and the label drawn as text, so even the tiny
random-projection test model gives cosines well below the near-duplicate bound across labels.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np


def make_image(label: str, variant: int = 0, size: tuple[int, int] = (72, 96)) -> np.ndarray:
    """A BGR uint8 image determined by (label, variant)."""
    seed = zlib.crc32(f"{label}/{variant}".encode())
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    for _ in range(7):
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        bh, bw = int(rng.integers(6, h // 2)), int(rng.integers(6, w // 2))
        img[y:y + bh, x:x + bw] = rng.integers(40, 256, 3)
    cv2.putText(img, label[:6], (4, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return img


def write_image(path: Path, label: str, variant: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), make_image(label, variant)):
        raise RuntimeError(f"cv2 could not write {path}")
    return path


def make_register(root: Path, labels: dict[str, int], ext: str = ".png") -> Path:
    """root/<label>/<i><ext> with ``labels[label]`` images each (labels may contain '/')."""
    for label, n in labels.items():
        for i in range(n):
            write_image(root / label / f"{i}{ext}", label, i)
    return root


def near_copy(src: Path, dst: Path) -> Path:
    """Same picture, different bytes (one pixel nudged): a near-duplicate with another sha256."""
    img = cv2.imread(str(src))
    img[0, 0] = (img[0, 0].astype(int) + 1) % 256
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), img)
    return dst


def bad_files(root: Path) -> list[Path]:
    """A zero-byte file, a text file named .jpg and a truncated JPEG."""
    root.mkdir(parents=True, exist_ok=True)
    empty = root / "empty.jpg"
    empty.write_bytes(b"")
    text = root / "notes.jpg"
    text.write_text("this is not an image, just some text\n")
    ok, enc = cv2.imencode(".jpg", make_image("trunc", 0))
    assert ok
    truncated = root / "truncated.jpg"
    truncated.write_bytes(enc.tobytes()[: len(enc) // 2])
    return [empty, text, truncated]
