"""The near-duplicate policy: two images of *different* types this alike make both labels ambiguous.

A new exemplar at cosine >= the gallery's bound (0.97 by default) to an exemplar of another label is
refused unless forced.  On approximate indexes the check looks at NEAR_DUP_NEIGHBOURS neighbours with
cheap search parameters and re-scores exactly where codes err (see the constants).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import index as idx
from .ingest import Batch, near_duplicate_pairs_within

if TYPE_CHECKING:
    from .state import State as _State

# Near-duplicate checks on an approximate index look at this many neighbours per new vector, with
# cheaper search parameters than queries (a vector at cosine >= 0.97 lies in the same IVF list or
# graph neighbourhood; this keeps adding 10k vectors to a 1M IVF gallery within seconds).  Scores
# are re-ranked exactly, so the bound is compared with true cosines.
NEAR_DUP_NEIGHBOURS = 16
NEAR_DUP_SEARCH = {"nprobe": 4, "efSearch": 64}
# On scalar-quantised codes the check reads code scores (no re-ranking of every candidate: 10k new
# vectors x 64 candidates would gather 650 MB of exact rows) and re-scores exactly only those
# within this margin of the bound; SQ8 cosine errors on unit vectors are ~0.01 at most (measured
# max 0.006 on 100k real-like features).  PQ codes err far more (4-bit fast-scan PQ128x4fs: mean
# -0.062, sd 0.026, max 0.19), so under PQ or an unknown factory every one of the
# NEAR_DUP_NEIGHBOURS candidates is re-scored exactly (16 rows per new vector).
NEAR_DUP_CODE_ERROR = {"sq8": 0.05, "fp16": 0.05, "sq4": 0.1}
# The check among the new vectors themselves is quadratic; bigger batches skip it (noted).
NEAR_DUP_BATCH_MAX = 20_000


class NearDuplicatesMixin:
    """Near-duplicate checks of a batch against the gallery (mixed into :class:`indexer.gallery.Gallery`)."""

    _s: "_State"

    def _neighbours_above(self, feats: np.ndarray, bound: float) -> list[tuple[int, int, float]]:
        """(new row, stored id, exact cosine) with cosine >= bound.  Exact on a flat index (range
        search); on an approximate one, among the NEAR_DUP_NEIGHBOURS nearest (a near-duplicate is
        the nearest neighbour of any usable ANN index)."""
        s = self._s
        if self.count == 0 or len(feats) == 0:
            return []
        if s.plan.type == "flat" and s.dead is None:
            return idx.neighbours_above(s.index, feats, bound)
        out = []
        p = s.plan.search_defaults  # a near-duplicate sits in the query's own list / graph region:
        cheap = {k: min(v, NEAR_DUP_SEARCH[k]) for k, v in p.items() if k in NEAR_DUP_SEARCH}
        lossy = s.exact is not None
        if lossy:  # approximate code scores first; only candidates within the code error get exact ones
            cheap["rerank"] = 0
        for start in range(0, len(feats), 4096):
            chunk = feats[start:start + 4096]
            scores, ids = self.search(chunk, NEAR_DUP_NEIGHBOURS, params=cheap)
            margin = NEAR_DUP_CODE_ERROR.get(s.plan.codec or "", 2.0)  # 2: cosines span [-1, 1]
            floor = np.float32(bound - margin) if lossy else np.float32(bound)
            rows, cols = np.nonzero((scores >= floor) & (ids >= 0))
            if lossy and len(rows):
                exact = np.einsum("ij,ij->i", s.exact.get(ids[rows, cols]), chunk[rows])
                keep = exact >= np.float32(bound)
                rows, cols, found = rows[keep], cols[keep], exact[keep]
            else:
                found = scores[rows, cols]
            out += [(start + int(r), int(ids[r, c]), float(v)) for r, c, v in zip(rows, cols, found)]
        return out

    def _near_duplicates(self, batch: Batch, bound: float, notes: list[str]) -> list[str]:
        lines = []
        hits = self._neighbours_above(batch.feats, bound)
        if hits:
            sources = self._s.items.column("source")
            for row, item_id, score in hits:
                pos = int(np.searchsorted(self._s.ids, item_id))
                if self._s.labels[pos] != batch.labels[row]:
                    lines.append(f"{batch.sources[row]} ({batch.labels[row]!r}) ~ id {item_id} "
                                 f"{sources[pos].as_py()} ({self._s.labels[pos]!r}): cosine {score:.4f}")
        if len(batch) > NEAR_DUP_BATCH_MAX:
            notes.append(f"near-duplicates among the {len(batch)} new vectors were not checked (more than "
                         f"{NEAR_DUP_BATCH_MAX}: the check is quadratic); each was checked against the gallery")
            return lines
        for i, j, score in near_duplicate_pairs_within(batch.feats, batch.labels, bound):
            lines.append(f"{batch.sources[i]} ({batch.labels[i]!r}) ~ {batch.sources[j]} ({batch.labels[j]!r}): "
                         f"cosine {score:.4f}")
        return lines
