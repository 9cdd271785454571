"""FAISS index construction and I/O, behind one spec string.

A gallery stores its index *spec* (``manifest["index_spec"]``) and builds the index only through
:func:`make_index`, so other index types (HNSW, IVF, ...) can be added later by registering a
builder in ``_BUILDERS`` without touching the gallery code.  Today the only spec is ``"flat"``:
``IndexIDMap2(IndexFlatIP(dim))`` — exact inner product (= cosine on unit vectors), item ids as
FAISS ids, vectors reconstructible by id (needed by verify and export), and cheap batched removal.

FAISS runs with one OpenMP thread unless ``$DOCRETRIEVER_FAISS_THREADS`` says otherwise: on
this 2-core shared box two threads measured 4-6x slower for gallery-sized searches.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

import faiss

from .errors import GalleryError

DEFAULT_SPEC = "flat"
PAD_SCORE = float("-inf")  # score reported next to a padded id of -1


def set_faiss_threads(n: int | None = None) -> int:
    """Set FAISS's OpenMP threads (default 1, or $DOCRETRIEVER_FAISS_THREADS); returns the number set."""
    if n is None:
        n = int(os.environ.get("DOCRETRIEVER_FAISS_THREADS", "1") or 1)
    n = max(1, int(n))
    faiss.omp_set_num_threads(n)
    return n


set_faiss_threads()


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


# spec -> builder.  Builders return an empty index that takes add_with_ids / remove_ids / search
# with inner-product scores.  A trained index type (IVF) would also need a `train` step here.
_BUILDERS: dict[str, Callable[[int], faiss.Index]] = {"flat": _flat}


def supported_specs() -> list[str]:
    return sorted(_BUILDERS)


def make_index(spec: str, dim: int) -> faiss.Index:
    """The one place a gallery index is created: ``spec`` (e.g. ``"flat"``) for ``dim``-d vectors."""
    if dim < 1:
        raise GalleryError(f"index dimension must be positive, not {dim}")
    try:
        builder = _BUILDERS[spec]
    except KeyError:
        raise GalleryError(
            f"index spec {spec!r} is not supported by this docretriever (supported: {', '.join(supported_specs())})"
        ) from None
    return builder(dim)


def serialize(index: faiss.Index) -> memoryview:
    return memoryview(faiss.serialize_index(index))


def clone(index: faiss.Index) -> faiss.Index:
    """An independent copy (so a failed write never leaves a half-mutated index in memory)."""
    try:
        return faiss.clone_index(index)
    except RuntimeError:  # index types clone_index does not know
        return faiss.deserialize_index(faiss.serialize_index(index))


def read_index(path: str | os.PathLike) -> faiss.Index:
    """Load an index file (raises OSError/RuntimeError on a missing or corrupt file)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return faiss.deserialize_index(data)


def index_ids(index: faiss.Index) -> np.ndarray:
    """The ids an ID-mapped index holds, in storage order (int64)."""
    if not hasattr(index, "id_map"):
        raise GalleryError(f"index type {type(index).__name__} is not ID-mapped")
    return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)


def all_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every stored item, in storage order."""
    ids = index_ids(index)
    if index.ntotal == 0:
        return ids, np.zeros((0, index.d), dtype=np.float32)
    inner = faiss.downcast_index(index.index)
    return ids, inner.reconstruct_n(0, index.ntotal).astype(np.float32, copy=False)


def code_bytes_per_vector(index: faiss.Index) -> int:
    """Bytes each vector costs in the index: its code plus its 8-byte id (ID map)."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return int(inner.sa_code_size()) + (8 if hasattr(index, "id_map") else 0)


def search(index: faiss.Index, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids); missing results (id -1) get score PAD_SCORE."""
    scores, ids = index.search(feats, k)
    scores = scores.astype(np.float32, copy=False)
    ids = ids.astype(np.int64, copy=False)
    scores[ids < 0] = PAD_SCORE
    return scores, ids


def neighbours_above(index: faiss.Index, feats: np.ndarray, bound: float) -> list[tuple[int, int, float]]:
    """All (query row, stored id, score) with score >= bound — exact for the flat index."""
    if index.ntotal == 0 or len(feats) == 0:
        return []
    # range_search keeps scores strictly above the radius; nudge it so `>= bound` is kept.
    lims, dist, ids = index.range_search(np.ascontiguousarray(feats, dtype=np.float32),
                                         float(np.nextafter(np.float32(bound), np.float32(-2))))
    out = []
    for row in range(len(feats)):
        for j in range(lims[row], lims[row + 1]):
            if dist[j] >= np.float32(bound):
                out.append((row, int(ids[j]), float(dist[j])))
    return out
