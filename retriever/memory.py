"""A small in-memory gallery: exact cosine search over a few exemplars held in a numpy array.

Why: the reference-compatible :class:`retriever.compat.DocClassifier` builds its register bank at
start-up from a folder of a few images and never persists it; writing a FAISS gallery to a
temporary directory for that would add disk I/O and cleanup for nothing.  It offers the slice of
the :class:`indexer.gallery.Gallery` API the :class:`retriever.Retriever` uses (``search``,
``labels_of``, ``manifest``, ``calibration``, ``items``-free counts).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["MemoryGallery"]


class MemoryGallery:
    """Exemplar features and labels in memory; ids are row numbers."""

    def __init__(self, feats: np.ndarray, labels: Sequence[str], encoder: Any = None,
                 sources: Sequence[str] | None = None, name: str = "<memory>") -> None:
        feats = np.ascontiguousarray(np.asarray(feats, dtype=np.float32))
        if feats.ndim != 2 or len(feats) != len(labels):
            raise ValueError(f"{name}: need (n, dim) features and n labels, got {feats.shape} and {len(labels)}")
        self.feats = feats
        self.labels = np.asarray([str(x) for x in labels], dtype=object)
        self.sources = list(sources) if sources is not None else [None] * len(labels)
        self.path = name
        self.calibration: dict[str, Any] | None = None
        self.self_calibration: dict[str, Any] | None = None  # set by whoever measures it (DocClassifier)
        enc = {}
        if encoder is not None:
            enc = {"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": encoder.dim}
        self.manifest: dict[str, Any] = {"encoder": enc, "metric": "inner_product", "count": len(self.labels),
                                         "labels": len(set(self.labels.tolist()))}

    def __len__(self) -> int:
        return len(self.labels)

    def label_counts(self) -> dict[str, int]:
        labels, counts = np.unique(self.labels.astype(str), return_counts=True)
        return {str(lab): int(c) for lab, c in zip(labels, counts)}

    def search(self, queries: np.ndarray, k: int, labels: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(n, dim)`` queries -> ``(scores, ids)`` of shape ``(n, k)``, best first, -1 ids padded.
        ``labels``: search only the rows of these labels (as a gallery's ID selector does)."""
        q = np.asarray(queries, dtype=np.float32)
        n = len(q)
        rows = np.arange(len(self.labels)) if labels is None else \
            np.flatnonzero(np.isin(self.labels.astype(str), [str(x) for x in labels]))
        sims = q @ self.feats[rows].T if len(rows) else np.zeros((n, 0), dtype=np.float32)
        kk = min(k, sims.shape[1])
        order = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        scores[:, :kk] = np.take_along_axis(sims, order, axis=1)
        ids[:, :kk] = rows[order]
        return scores, ids

    def sources_of(self, ids: np.ndarray) -> list[str | None]:
        return [self.sources[i] if 0 <= i < len(self.sources) else None for i in np.asarray(ids, np.int64).tolist()]

    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.labels)):
            raise KeyError(f"{self.path}: unknown ids in {ids[(ids < 0) | (ids >= len(self.labels))][:5].tolist()}")
        return self.labels[ids]
