"""Shared helpers for the bulk tests: a tiny gallery and generated scans of every supported kind."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

LABELS = ["invoice", "passport", "receipt"]
THRESHOLD = 0.5  # cosine; the tiny random model has no threshold table


def scan(seed: int, h: int = 80, w: int = 60) -> np.ndarray:
    """A small coloured 'scan' with a few shapes; every seed differs."""
    r = np.random.default_rng(seed)
    img = np.full((h, w, 3), r.integers(0, 256, 3), np.uint8)
    for _ in range(4):
        c = tuple(int(x) for x in r.integers(0, 256, 3))
        x, y = int(r.integers(0, w - 10)), int(r.integers(0, h - 10))
        cv2.rectangle(img, (x, y), (x + int(r.integers(5, 25)), y + int(r.integers(5, 25))), c, -1)
    return img


def build_gallery(encoder, root: Path, name: str = "gallery"):
    """One exemplar per label in LABELS, as an on-disk indexer Gallery."""
    from indexer.gallery import Gallery

    reg = root / f"{name}-register"
    for i, lab in enumerate(LABELS):
        (reg / lab).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(reg / lab / "front.png"), scan(1000 + i))
    return Gallery.build(reg, root / name, encoder, force=True)


def write_scans(folder: Path, n: int, start: int = 0, ext: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"scan-{i:05d}{ext}"
        cv2.imwrite(str(p), scan(i))
        out.append(p)
    return out


def write_tiff(path: Path, pages: int) -> Path:
    from PIL import Image

    ims = [Image.fromarray(scan(500 + i)[:, :, ::-1]) for i in range(pages)]
    ims[0].save(path, save_all=True, append_images=ims[1:], compression="tiff_deflate")
    return path


def write_pdf(path: Path, pages: int) -> Path:
    from PIL import Image

    ims = [Image.fromarray(scan(700 + i, 300, 220)[:, :, ::-1]) for i in range(pages)]
    ims[0].save(path, save_all=True, append_images=ims[1:], resolution=72.0)
    return path


def bulk(inputs, gallery, out, encoder, **kw):
    """run_bulk on paths with the tiny model's defaults: explicit threshold, quiet, small batches."""
    from retriever.bulk import run_bulk

    kw.setdefault("threshold", THRESHOLD)
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 4)
    return run_bulk([str(i) for i in inputs], str(gallery.path), out, encoder=encoder, **kw)


def interrupted_run(monkeypatch, nth_batch: int, *args, **kw) -> None:
    """Run :func:`bulk` with a Ctrl-C raised in its ``nth_batch``-th batch (parts before it committed),
    then restore the batch processor so the caller can resume."""
    import pytest

    from retriever import bulk_batch

    real = bulk_batch.BatchProcessor.process
    calls = [0]

    def interrupting(self, *a, **k):
        calls[0] += 1
        if calls[0] == nth_batch:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(bulk_batch.BatchProcessor, "process", interrupting)
    with pytest.raises(KeyboardInterrupt):
        bulk(*args, **kw)
    monkeypatch.setattr(bulk_batch.BatchProcessor, "process", real)
