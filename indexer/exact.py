"""Exact float32 vectors kept beside a lossy index (SQ8/PQ codes), for re-ranking and export.

Why: an IVF-SQ8 index stores 1 byte per dimension (the default IVF-PQ4fs a quarter of one: a 4-bit
code per pair of dimensions), so its scores are approximations of the cosine; accept/reject
thresholds were calibrated on exact cosines.  The gallery asks the lossy index for ``rerank * k``
candidates and re-scores them against these vectors, so every score it returns is the exact cosine
(and export/verify see the vectors that were registered).

Layout: the store is a list of immutable *segments*; each segment is two ``.npy`` files,
``exact-000N.npy`` (float32, rows x dim) and ``exact-000N.ids.npy`` (int64 item ids, ascending).
Every new segment holds ids larger than all earlier ones (ids are never reused), so the
concatenated ids are sorted and one ``searchsorted`` finds any row.  An add writes only a new
segment (no copy of the existing gigabyte at 1M vectors); when there are more than
MAX_SEGMENTS the writer merges them into one, dropping removed ids.  Files are never modified
after the manifest names them, so readers can memory-map them safely (a pruned file stays
readable through an existing mapping).  The vectors are memory-mapped read-only: re-ranking
touches only the candidate rows (page cache, shared between processes), not 1 KB per vector of
private RAM.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import atomic_write
from .errors import GalleryCorruptError

MAX_SEGMENTS = 8


def _map(path: Path) -> np.ndarray:
    """Memory-map a segment's vectors read-only, advising random access (re-ranking reads
    scattered 1 KB rows: no readahead when the file is not in the page cache).  The mapped pages
    are shared page cache, not private memory; with a hot cache the kernel's fault-around still
    maps neighbouring pages, so RssFile grows towards the file size (bench_index.py: 1.3 GB
    file-backed vs 0.43 GB anonymous RSS after 1,000 queries on a 1M-vector gallery)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    mm = getattr(arr, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_RANDOM"):
        try:
            mm.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):  # pragma: no cover - platforms without madvise
            pass
    return arr


@dataclass
class Segment:
    vectors_file: str
    ids_file: str
    ids: np.ndarray  # int64, ascending
    vectors: np.ndarray  # float32 (rows, dim), memory-mapped

    def describe(self) -> dict[str, Any]:
        return {"vectors": self.vectors_file, "ids": self.ids_file, "rows": int(len(self.ids))}


class ExactStore:
    """Read access to the exact vectors of a gallery generation (see module doc).

    Subclasses keep other per-exemplar rows the same way (:class:`LocalStore`): ``STEM`` names the
    files, ``DTYPE`` the values; a row is ``shape`` values (``dim`` for vectors)."""

    STEM = "exact"
    DTYPE: Any = np.float32
    WHAT = "exact vector"

    def __init__(self, segments: Sequence[Segment], dim: "int | tuple[int, ...]") -> None:
        self.segments = list(segments)
        self.shape = tuple(int(x) for x in (dim if isinstance(dim, tuple) else (dim,)))
        self.dim = self.shape[0] if len(self.shape) == 1 else int(np.prod(self.shape))
        self.ids = np.concatenate([s.ids for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        self._starts = np.cumsum([0] + [len(s.ids) for s in self.segments])
        if len(self.ids) > 1 and not np.all(np.diff(self.ids) > 0):
            raise GalleryCorruptError(f"{self.WHAT} store ids are not strictly increasing across segments")

    # ------------------------------------------------------------------ io
    @classmethod
    def open(cls, root: Path, described: Sequence[dict[str, Any]] | None,
             dim: "int | tuple[int, ...]") -> "ExactStore":
        shape = tuple(int(x) for x in (dim if isinstance(dim, tuple) else (dim,)))
        segs = []
        for d in described or []:
            ids = np.load(root / d["ids"], allow_pickle=False)
            vecs = _map(root / d["vectors"])
            if vecs.shape != (len(ids), *shape) or vecs.dtype != cls.DTYPE or \
                    ids.dtype != np.int64 or len(ids) != int(d.get("rows", len(ids))):
                raise GalleryCorruptError(f"{root / d['vectors']}: {cls.WHAT}s {vecs.shape} {vecs.dtype} do not "
                                          f"match {d['ids']} ({len(ids)} ids, rows of {shape} "
                                          f"{np.dtype(cls.DTYPE).name})")
            segs.append(Segment(d["vectors"], d["ids"], ids, vecs))
        return cls(segs, shape)

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.segments]

    @property
    def files(self) -> list[str]:
        return [f for s in self.segments for f in (s.vectors_file, s.ids_file)]

    @property
    def rows(self) -> int:
        return int(len(self.ids))

    def nbytes(self) -> int:
        return int(self.rows * (self.dim * np.dtype(self.DTYPE).itemsize + 8))

    @classmethod
    def write_segment(cls, root: Path, generation: int, ids: np.ndarray, vecs: np.ndarray, tag: str = "") -> Segment:
        """Write one segment atomically (tmp + fsync + rename each file); ``ids`` ascending."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vecs = np.ascontiguousarray(vecs, dtype=cls.DTYPE)
        if len(ids) > 1 and not np.all(np.diff(ids) > 0):
            order = np.argsort(ids, kind="stable")
            ids, vecs = ids[order], vecs[order]
        stem = f"{cls.STEM}-{generation:04d}{tag}"
        vname, iname = f"{stem}.npy", f"{stem}.ids.npy"
        atomic_write(root / vname, lambda fh: np.save(fh, vecs, allow_pickle=False), sync_dir=False)
        atomic_write(root / iname, lambda fh: np.save(fh, ids, allow_pickle=False), sync_dir=False)
        return Segment(vname, iname, ids, _map(root / vname))

    def appended(self, root: Path, generation: int, ids: np.ndarray, vecs: np.ndarray,
                 live: np.ndarray | None = None) -> "ExactStore":
        """A new store = this one + a segment for ``ids`` (merged into one segment, keeping only
        ``live`` ids, when that would exceed MAX_SEGMENTS)."""
        if len(ids) == 0:
            return self
        if len(self.ids) and int(np.min(ids)) <= int(self.ids[-1]):
            raise GalleryCorruptError(f"new ids must be above the {self.WHAT} store's largest id {int(self.ids[-1])}")
        if len(self.segments) + 1 > MAX_SEGMENTS:
            keep_ids, keep_vecs = self.lookup_all(live)
            return type(self)([self.write_segment(root, generation, np.concatenate([keep_ids, ids]),
                                                  np.concatenate([keep_vecs, vecs]))], self.shape)
        return type(self)(self.segments + [self.write_segment(root, generation, ids, vecs)], self.shape)

    def merged(self, root: Path, generation: int, live: np.ndarray) -> "ExactStore":
        """One segment holding only the ``live`` ids' rows (compaction)."""
        keep_ids, keep_vecs = self.lookup_all(np.asarray(live, dtype=np.int64))
        return type(self)([self.write_segment(root, generation, keep_ids, keep_vecs)], self.shape)

    def warm(self, chunk_rows: int = 65_536) -> int:
        """Fault every mapped page in now (one sequential pass) instead of during the first queries,
        which otherwise pay a page fault per re-ranked row; returns the bytes touched.  The pages
        are shared page cache: reclaimable, and counted once across processes."""
        touched = 0
        for seg in self.segments:
            mm = getattr(seg.vectors, "_mmap", None)
            if mm is not None and hasattr(mmap, "MADV_WILLNEED"):
                try:
                    mm.madvise(mmap.MADV_WILLNEED)  # start readahead of the whole file
                except (OSError, ValueError):  # pragma: no cover
                    pass
            step = max(1, 4096 // np.dtype(self.DTYPE).itemsize)  # one value per page of a row (a map: ~6 pages)
            for start in range(0, len(seg.vectors), chunk_rows):
                block = seg.vectors[start:start + chunk_rows]
                float(block.reshape(len(block), -1)[:, ::step].astype(np.float32).sum())  # faults in every page
                touched += block.nbytes
        return touched

    # ------------------------------------------------------------------ reading
    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers of ``ids`` (any shape); raises if one is missing."""
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.ids, flat)
        pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
        ok = (pos < len(self.ids)) & (self.ids[pos_c] == flat) if len(self.ids) else np.zeros(flat.shape, bool)
        if not ok.all():
            raise GalleryCorruptError(f"{self.WHAT} store lacks ids {sorted(set(flat[~ok].tolist()))[:20]}; "
                                      "run `indexer verify`")
        return pos_c.reshape(np.shape(ids))

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Rows for ``ids`` (1-d): (len(ids), *shape) of DTYPE (exact vectors: float32 (len(ids), dim))."""
        rows = self.rows_of(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(self.segments) == 1:  # the common case (and the one per-query re-ranking pays for)
            return np.asarray(self.segments[0].vectors[rows], dtype=self.DTYPE)
        out = np.empty((len(rows), *self.shape), dtype=self.DTYPE)
        if len(rows) == 0:
            return out
        seg = np.searchsorted(self._starts, rows, side="right") - 1
        for s in np.unique(seg):
            m = seg == s
            out[m] = self.segments[s].vectors[rows[m] - self._starts[s]]
        return out

    def lookup_all(self, live: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every row, or only of ``live`` ids (ascending)."""
        if live is None:
            if not self.segments:
                return self.ids.copy(), np.zeros((0, *self.shape), self.DTYPE)
            return self.ids.copy(), np.concatenate([np.asarray(s.vectors) for s in self.segments])
        live = np.asarray(live, dtype=np.int64)
        return live, self.get(live)

    def rerank(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate ``ids`` (n, c; -1 = none) by exact inner product; best ``k`` first."""
        n, c = ids.shape
        valid = ids >= 0
        if n == 1:  # single query: fewer numpy calls (this runs once per query at ~0.1 ms budgets)
            cand = ids[0][valid[0]]
            s1 = self.get(cand) @ queries[0]
            order = np.argsort(-s1, kind="stable")[:k]
            out_s = np.full((1, k), -np.inf, dtype=np.float32)
            out_i = np.full((1, k), -1, dtype=np.int64)
            out_s[0, :len(order)] = s1[order]
            out_i[0, :len(order)] = cand[order]
            return out_s, out_i
        scores = np.full((n, c), -np.inf, dtype=np.float32)
        if valid.any():
            vecs = self.get(ids[valid])
            rows = np.nonzero(valid)[0]
            scores[valid] = np.einsum("ij,ij->i", vecs, queries[rows], dtype=np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(np.where(valid, ids, -1), order, 1)



class LocalStore(ExactStore):
    """Each exemplar's local feature map (unit cell vectors, float16 (cells, channels): 23 KB for the
    default model's 144 x 80), kept like the exact vectors, for re-ranking a search's top candidates
    (rerank.py).  Only a query's few candidates are read per search."""

    STEM = "local"
    DTYPE = np.float16
    WHAT = "local map"


class PagePrintStore(ExactStore):
    """Each exemplar's page print (:mod:`encoders.pageprint`: keypoints and the normalised page, one
    uint8 row of ~150 KB), kept like the exact vectors, for verifying a search's top candidates by
    registering the capture onto them.  Only a query's few candidates are read per search."""

    STEM = "pages"
    DTYPE = np.uint8
    WHAT = "page print"
