"""Re-ranking a search's top-k by local feature maps: the arithmetic, on arrays.

Each query's candidates (its top-k exemplars by cosine) are compared with it cell by cell on the
model's local map (:mod:`encoders.local`).  A cell counts in proportion to how much the candidates
differ there (1 - their mean pairwise cosine): where all candidates look alike the cell says nothing
about which one the query is.  A candidate's local score is its weighted mean cell cosine with the
query; its search score moves by ``weight`` x (local score - the candidates' mean), so only the
order among the candidates changes, and a query whose candidates are all alike keeps its scores.
(Measured and chosen in scripts/ablate_local_rerank.py; results in scripts/results/local_rerank/.)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["local_deltas", "rerank", "rerank_top", "verify_top"]


def local_deltas(query: np.ndarray, cands: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``query`` (m, cells, C) and ``cands`` (m, k, cells, C) unit cell vectors; ``valid`` (m, k) marks
    real candidates (a search may return fewer than k).  -> (m, k) float32: each valid candidate's
    weighted mean cell cosine minus the valid candidates' mean; 0 for invalid ones."""
    q = np.asarray(query, dtype=np.float32)
    c = np.asarray(cands, dtype=np.float32)
    if q.ndim != 3 or c.ndim != 4 or c.shape[0] != q.shape[0] or c.shape[2:] != q.shape[1:]:
        raise ValueError(f"query maps {q.shape} and candidate maps {c.shape} do not match "
                         "((m, cells, C) and (m, k, cells, C))")
    m, k = c.shape[:2]
    v = np.ones((m, k), dtype=np.float32) if valid is None else np.asarray(valid, dtype=np.float32)
    n = v.sum(axis=1)                                                   # (m,)
    pair = np.einsum("mice,mjce->mcij", c, c)                           # (m, cells, k, k)
    mask = v[:, None, :, None] * v[:, None, None, :] * (1.0 - np.eye(k, dtype=np.float32))
    off = (pair * mask).sum(axis=(2, 3)) / np.maximum(n * (n - 1), 1.0)[:, None]
    w = np.clip(1.0 - off, 0.0, None)                                   # (m, cells)
    cell = np.einsum("mce,mkce->mkc", q, c)                             # (m, k, cells)
    local = (cell * w[:, None, :]).sum(axis=2) / np.maximum(w.sum(axis=1), 1e-6)[:, None]
    mean = (local * v).sum(axis=1) / np.maximum(n, 1.0)
    return ((local - mean[:, None]) * v).astype(np.float32)


def rerank(scores: np.ndarray, ids: np.ndarray, query_maps: np.ndarray,
           maps_of: Callable[[np.ndarray], np.ndarray], weight: float) -> tuple[np.ndarray, np.ndarray]:
    """A search result (``scores``, ``ids``: (m, k), best first, id -1 for none) re-scored and re-sorted;
    padding (id -1) keeps its score and stays last.

    ``maps_of(ids)`` gives the exemplars' unit cell maps (len(ids), cells, C) for valid ids.
    """
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids)
    if weight == 0 or scores.shape[1] < 2:
        return scores, ids
    valid = ids >= 0
    cands = np.zeros((*ids.shape, *query_maps.shape[1:]), dtype=np.float16)
    if valid.any():
        cands[valid] = maps_of(ids[valid])
    new = scores + np.float32(weight) * local_deltas(query_maps, cands, valid)  # padding keeps its score
    order = np.argsort(np.where(valid, -new, np.inf), axis=1, kind="stable")
    return np.take_along_axis(new, order, axis=1).astype(np.float32), np.take_along_axis(ids, order, axis=1)


def rerank_top(scores: np.ndarray, ids: np.ndarray, query_maps: np.ndarray,
               maps_of: Callable[[np.ndarray], np.ndarray], k: int, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """A deeper search result whose first ``k`` columns (the top-k by cosine) are re-scored by
    :func:`rerank`; the rest keep their cosine, and each row is re-sorted as a whole, so a
    candidate pushed down may fall below the (k+1)-th (as the offline evaluation scores it)."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids)
    head_s, head_i = rerank(scores[:, :k], ids[:, :k], query_maps, maps_of, weight)
    if scores.shape[1] <= k:
        return head_s, head_i
    s = np.concatenate([head_s, scores[:, k:]], axis=1)
    i = np.concatenate([head_i, ids[:, k:]], axis=1)
    order = np.argsort(np.where(i >= 0, -s, np.inf), axis=1, kind="stable")
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def verify_top(scores: np.ndarray, ids: np.ndarray, prints: Sequence[object], rows_of: Callable[[np.ndarray], np.ndarray],
               k: int, weight: float, keypoints: int, comparison: str = "rule") -> tuple[np.ndarray, np.ndarray]:
    """A (re-ranked) search result whose first ``k`` columns are verified by registration
    (encoders.pageprint.verify_deltas): each candidate's score moves by ``weight`` x its delta, and
    each row is re-sorted as a whole.  ``prints``: the queries' page prints (with their grey pages);
    ``rows_of(ids)``: the exemplars' packed prints, of ``keypoints`` keypoints each.  A print with a
    ``memo`` dict reuses the deltas it holds for the same candidates in the same order, and records new
    ones (an exemplar's print never changes under its id)."""
    from encoders import pageprint

    scores = np.array(scores, dtype=np.float32)
    ids = np.asarray(ids)
    if weight == 0 or scores.shape[1] < 2:
        return scores, ids
    for r in range(len(scores)):
        head = ids[r, :k]
        cols = np.flatnonzero(head >= 0)
        if len(cols) < 2:
            continue
        memo = getattr(prints[r], "memo", None)  # deltas this capture already has for these candidates
        key = tuple(int(i) for i in head[cols])
        delta = None if memo is None else memo.get(key)
        if delta is None:
            cands = [pageprint.unpack(row, keypoints) for row in rows_of(head[cols])]
            delta = pageprint.verify_deltas(pageprint.as_print(prints[r]), cands, comparison=comparison)
            if memo is not None:
                memo[key] = delta
        scores[r, cols] += np.float32(weight) * delta
    order = np.argsort(np.where(ids >= 0, -scores, np.inf), axis=1, kind="stable")
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)

