"""FAISS index construction, search and I/O for every index type a gallery can use.

A gallery index is built only from a :class:`indexer.specs.Plan` (see specs.py for how a plan
is chosen).  Ids are the gallery's item ids in every type:

* ``flat``  — ``IndexIDMap2(IndexFlatIP)``: exact, removable, vectors reconstructible by id.
* ``hnsw``  — ``IndexIDMap2(IndexHNSWFlat/SQ)``.  HNSW cannot remove: removed ids become
  *tombstones*, filtered at search time with ``SearchParametersHNSW(sel=IDSelectorNot(...))``,
  until ``indexer compact`` rebuilds without them.
* ``ivf``   — ``IndexIVF{Flat,SQ8,PQ..}`` with its *own* ids (``add_with_ids``), not wrapped in
  an IDMap: ``IDMap2(IVF).remove_ids`` compacts the id map while the IVF lists keep the old
  positions, so later searches return the wrong ids (seen on faiss 1.15.1).  IVF removes natively.
* ``faiss`` — any factory string; wrapped in IDMap2 unless it is IVF-based; removals are
  tombstones unless it is IVF-based.

Searches use per-call ``SearchParameters`` (``efSearch``, ``nprobe``, tombstone selector), never
global index state, so concurrent readers with different parameters do not interfere.

FAISS runs with one OpenMP thread unless ``$DOCRETRIEVER_FAISS_THREADS`` says otherwise: on
this 2-core shared box two threads measured 4-6x slower for gallery-sized searches.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import faiss

from .atomic import atomic_write_path
from .errors import GalleryError
from .specs import (IVF_MIN_POINTS_PER_LIST, IVF_TRAIN_POINTS_PER_LIST, RERANK_MIN, SEARCH_PARAMS, Plan, flat_plan,
                    parse_spec, plan_for)

DEFAULT_SPEC = "flat"
PAD_SCORE = float("-inf")  # score reported next to a padded id of -1
TRAIN_SEED = 1234


def set_faiss_threads(n: int | None = None) -> int:
    """Set FAISS's OpenMP threads (default 1, or $DOCRETRIEVER_FAISS_THREADS); returns the number set."""
    if n is None:
        n = int(os.environ.get("DOCRETRIEVER_FAISS_THREADS", "1") or 1)
    n = max(1, int(n))
    faiss.omp_set_num_threads(n)
    return n


set_faiss_threads()


def is_supported_spec(spec: str) -> bool:
    try:
        parse_spec(spec)
    except GalleryError:
        return False
    return True


# ---------------------------------------------------------------------- construction
def _unwrap(index: Any) -> Any:
    """The innermost index below IDMap/PreTransform wrappers."""
    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            index = faiss.downcast_index(index.index)
        elif isinstance(index, faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        else:
            return index


def _is_id_mapped(index: Any) -> bool:
    return isinstance(faiss.downcast_index(index), (faiss.IndexIDMap, faiss.IndexIDMap2))


def _native_ids(index: Any) -> bool:
    """IVF indexes store ids themselves; everything else needs an IDMap2 wrapper."""
    return isinstance(_unwrap(index), faiss.IndexIVF)


def create(plan: Plan, dim: int) -> Any:
    """An empty (possibly untrained) index for ``plan``."""
    if dim < 1:
        raise GalleryError(f"index dimension must be positive, not {dim}")
    if plan.type == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    try:
        inner = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryError(f"FAISS cannot build index {plan.factory!r}: {str(exc).strip().splitlines()[-1]}") from None
    base = _unwrap(inner)
    if isinstance(base, faiss.IndexHNSW) and plan.efConstruction:
        base.hnsw.efConstruction = int(plan.efConstruction)
    if isinstance(base, faiss.IndexHNSW) and plan.efSearch:
        base.hnsw.efSearch = int(plan.efSearch)
    if isinstance(base, faiss.IndexIVF) and plan.nprobe:
        base.nprobe = int(plan.nprobe)
    if _is_id_mapped(inner) or _native_ids(inner):
        return inner
    return faiss.IndexIDMap2(inner)


def make_index(spec: str, dim: int, params: Mapping[str, Any] | None = None) -> Any:
    """The empty index a new gallery of ``spec`` starts with (``ivf``/``auto``: flat until trained)."""
    return create(plan_for(parse_spec(spec, params), 0, dim=dim), dim)


def train(index: Any, plan: Plan, vecs: np.ndarray) -> Plan:
    """Train ``index`` if it needs it; returns the plan with ``trained_on`` set (None if no training)."""
    if index.is_trained:
        return Plan(**{**plan.__dict__, "trained_on": None}) if plan.type == "faiss" else plan
    if len(vecs) == 0:
        raise GalleryError(f"{plan.factory!r} must be trained, and there are no vectors yet")
    base = _unwrap(index)
    n = len(vecs)
    cap = n
    if isinstance(base, faiss.IndexIVF):
        cap = IVF_TRAIN_POINTS_PER_LIST * int(base.nlist)  # we sample; FAISS then uses all of it
        base.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
        pq = getattr(faiss.downcast_index(base), "pq", None)
        if pq is not None:  # PQ sub-quantizers need their own k-means points (39 per centroid)
            cap = max(cap, IVF_MIN_POINTS_PER_LIST * int(pq.ksub))
    sample = vecs
    if n > cap:
        rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(n, size=cap, replace=False))
        sample = vecs[rows]
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as exc:
        raise GalleryError(f"FAISS could not train {plan.factory!r} on {len(sample)} vectors: "
                           f"{str(exc).strip().splitlines()[-1]}") from None
    return Plan(**{**plan.__dict__, "trained_on": n if plan.type in ("ivf", "faiss") else None})


def build(plan: Plan, dim: int, ids: np.ndarray, vecs: np.ndarray) -> tuple[Any, Plan]:
    """Create, train (on ``vecs`` themselves) and fill an index.  A FAISS factory index that cannot
    be trained on this few vectors falls back to flat (recorded in the plan's reason)."""
    index = create(plan, dim)
    try:
        plan = train(index, plan, vecs)
    except GalleryError as exc:
        if plan.type != "faiss":
            raise
        plan = flat_plan(f"{exc}; exact flat search until the gallery is bigger")
        index = create(plan, dim)
    add(index, ids, vecs)
    return index, plan


def add(index: Any, ids: np.ndarray, vecs: np.ndarray) -> None:
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))


def can_remove(index: Any) -> bool:
    """Flat (IDMap2) and IVF indexes remove ids; others (HNSW, graph/transform factories) cannot."""
    return _native_ids(index) or isinstance(_unwrap(index), faiss.IndexFlat)


def remove(index: Any, ids: np.ndarray) -> int:
    """Remove ``ids`` natively (flat, IVF) in one batched call; returns how many were removed."""
    return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


# ---------------------------------------------------------------------- facts
def index_ids(index: Any) -> np.ndarray:
    """The ids an index holds, in storage order (int64); IVF: list by list."""
    idx = faiss.downcast_index(index)
    if hasattr(idx, "id_map"):
        return faiss.vector_to_array(idx.id_map).astype(np.int64, copy=False)
    base = _unwrap(idx)
    if isinstance(base, faiss.IndexIVF):
        inv = base.invlists
        parts = [faiss.rev_swig_ptr(inv.get_ids(l), inv.list_size(l)).copy()
                 for l in range(base.nlist) if inv.list_size(l)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    raise GalleryError(f"index type {type(idx).__name__} holds no item ids")


def is_lossy(index: Any) -> bool:
    """True when stored codes are not the float32 vectors (SQ/PQ codes, transforms): scores are
    approximate, so the gallery keeps the exact vectors beside the index (exact.py)."""
    idx = faiss.downcast_index(index)
    if _is_id_mapped(idx):
        idx = faiss.downcast_index(idx.index)
    if isinstance(idx, faiss.IndexPreTransform):
        return True
    base = _unwrap(idx)
    if isinstance(base, faiss.IndexHNSW):
        base = faiss.downcast_index(base.storage)
    return not isinstance(base, (faiss.IndexFlat, faiss.IndexIVFFlat))


def all_vectors(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every stored item in storage order — for lossless indexes only."""
    ids = index_ids(index)
    d = index.d
    if index.ntotal == 0:
        return ids, np.zeros((0, d), dtype=np.float32)
    base = _unwrap(index)
    if isinstance(base, faiss.IndexHNSW):
        return ids, faiss.downcast_index(base.storage).reconstruct_n(0, index.ntotal).astype(np.float32, copy=False)
    if isinstance(base, faiss.IndexFlat):
        return ids, base.reconstruct_n(0, index.ntotal).astype(np.float32, copy=False)
    if isinstance(base, faiss.IndexIVFFlat):
        inv = base.invlists
        parts = [faiss.rev_swig_ptr(inv.get_codes(l), inv.list_size(l) * inv.code_size).copy().view(np.float32)
                 .reshape(-1, d) for l in range(base.nlist) if inv.list_size(l)]
        return ids, np.concatenate(parts)
    raise GalleryError(f"{type(base).__name__} stores compressed codes; the gallery's exact vector store holds "
                       "the vectors")


def memory_bytes_per_vector(index: Any) -> float:
    """Bytes of RAM each vector costs in the index: code, 8-byte id, and HNSW graph links."""
    base = _unwrap(index)
    ident = 8  # int64 id in the IDMap or the IVF list
    if isinstance(base, faiss.IndexHNSW):
        code = faiss.downcast_index(base.storage).sa_code_size()
        links = base.hnsw.neighbors.size() / index.ntotal if index.ntotal else base.hnsw.nb_neighbors(0)
        return float(code + ident + 4 * links)  # int32 neighbour ids
    if isinstance(base, faiss.IndexIVF):
        return float(base.code_size + ident)
    try:
        return float(base.sa_code_size() + ident)
    except RuntimeError:
        return float("nan")


def code_bytes_per_vector(index: Any) -> int:
    """Bytes each vector costs in a flat index: its code plus its 8-byte id (kept for callers)."""
    return int(round(memory_bytes_per_vector(index)))


def describe(index: Any) -> str:
    base = _unwrap(index)
    outer = type(faiss.downcast_index(index)).__name__
    return outer if outer == type(base).__name__ else f"{outer}({type(base).__name__})"


# ---------------------------------------------------------------------- search
class Tombstones:
    """Removed ids still inside an index that cannot remove (HNSW); excluded from every search."""

    def __init__(self, dead: np.ndarray) -> None:
        self.ids = np.unique(np.asarray(dead, dtype=np.int64))
        # built once per generation: IDSelectorBatch hashes every id (~1 ms per 10k ids)
        self._batch = faiss.IDSelectorBatch(self.ids) if len(self.ids) else None
        self.selector = faiss.IDSelectorNot(self._batch) if self._batch is not None else None

    def __len__(self) -> int:
        return int(len(self.ids))


def _search_parameters(index: Any, ef: int | None, nprobe: int | None, sel: Any, keep: list) -> Any:
    """SearchParameters for ``index`` (recursing through wrappers); ``keep`` holds SWIG refs alive."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return _search_parameters(idx.index, ef, nprobe, sel, keep)  # IDMap translates sel to its ids
    if isinstance(idx, faiss.IndexPreTransform):
        p = faiss.SearchParametersPreTransform()
        p.index_params = _search_parameters(idx.index, ef, nprobe, sel, keep)
        keep.append(p.index_params)
        return p
    if isinstance(idx, faiss.IndexHNSW):
        p = faiss.SearchParametersHNSW()
        if ef is not None:
            p.efSearch = int(ef)
        else:
            p.efSearch = int(idx.hnsw.efSearch)
    elif isinstance(idx, faiss.IndexIVF):
        p = faiss.SearchParametersIVF()
        p.nprobe = int(nprobe if nprobe is not None else idx.nprobe)
        q = faiss.downcast_index(idx.quantizer)
        if ef is not None and isinstance(q, faiss.IndexHNSW):
            qp = faiss.SearchParametersHNSW()
            qp.efSearch = int(ef)
            p.quantizer_params = qp
            keep.append(qp)
    else:
        if sel is None:
            return None
        p = faiss.SearchParameters()
    if sel is not None:
        p.sel = sel
    return p


def search(index: Any, feats: np.ndarray, k: int, plan: Plan | None = None,
           params: Mapping[str, int] | None = None, dead: Tombstones | None = None,
           exact: Any = None, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids); missing results (id -1) get score PAD_SCORE.

    ``params`` (efSearch, nprobe, rerank) override the plan's defaults for this call; those that do
    not apply to this index type are ignored.  ``dead`` ids are never returned.  With ``exact``
    (an ExactStore) and rerank > 0, ``rerank * k`` candidates are re-scored by exact cosine.
    ``allow``: live ids the search is restricted to, by an ``IDSelectorBatch`` inside the index
    search (so the top-k is the top-k *of those ids*, not a post-filtered global top-k).
    """
    plan = plan or flat_plan("flat")
    p = {**plan.search_defaults, **dict(params or {})}
    applies = {key for key, types in SEARCH_PARAMS.items() if plan.type in types}
    p = {key: v for key, v in p.items() if key in applies}
    rerank = int(p.get("rerank", 0)) if exact is not None else 0
    fetch = k
    if rerank:
        fetch = min(index.ntotal, max(k * rerank, RERANK_MIN, k))
    n_dead = len(dead) if dead is not None else 0
    fetch = min(max(fetch, 1), max(index.ntotal, 1))
    keep: list = []
    sel = dead.selector if n_dead else None
    if allow is not None:  # allowed ids are live ones: the tombstones are excluded with the rest
        allow = np.ascontiguousarray(allow, dtype=np.int64)
        sel = faiss.IDSelectorBatch(allow)
        keep.append(sel)
        fetch = min(fetch, max(len(allow), 1))
    sp = _search_parameters(index, p.get("efSearch"), p.get("nprobe"), sel, keep)
    q = np.ascontiguousarray(feats, dtype=np.float32)
    if sp is None:
        scores, ids = index.search(q, fetch)
    else:
        scores, ids = index.search(q, fetch, params=sp)
    ids = ids.astype(np.int64, copy=False)
    scores = scores.astype(np.float32, copy=False)
    if n_dead:  # the selector already excludes them; this is a guard, not the mechanism
        hit = np.isin(ids, dead.ids)
        if hit.any():
            ids = np.where(hit, -1, ids)
            scores = np.where(hit, np.float32(PAD_SCORE), scores)
    if rerank:
        scores, ids = exact.rerank(q, ids, k)
    elif fetch > k:
        scores, ids = scores[:, :k], ids[:, :k]
    if ids.shape[1] < k:  # fewer stored than asked
        pad = k - ids.shape[1]
        ids = np.concatenate([ids, np.full((len(ids), pad), -1, np.int64)], 1)
        scores = np.concatenate([scores, np.full((len(ids), pad), PAD_SCORE, np.float32)], 1)
    scores = np.array(scores, dtype=np.float32)
    scores[ids < 0] = PAD_SCORE
    return scores, ids


def neighbours_above(index: Any, feats: np.ndarray, bound: float) -> list[tuple[int, int, float]]:
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


# ---------------------------------------------------------------------- io
def clone(index: Any) -> Any:
    """An independent copy (so a failed write never leaves a half-mutated index in memory)."""
    try:
        return faiss.clone_index(index)
    except RuntimeError:  # index types clone_index does not know
        return faiss.deserialize_index(faiss.serialize_index(index))


def write_index(index: Any, path: str | os.PathLike) -> None:
    """Write atomically: faiss streams to a temp file (no second in-memory copy), fsync, rename."""
    atomic_write_path(path, lambda tmp: faiss.write_index(index, tmp))


def read_index(path: str | os.PathLike, mmap: bool = False) -> Any:
    """Load an index file (OSError/RuntimeError on a missing or corrupt file).

    ``mmap=True`` maps the file read-only instead of reading it (IO_FLAG_MMAP_IFC): flat codes,
    HNSW storage and IVF inverted lists then live in the page cache, shared between processes,
    and a 1M-vector index opens in milliseconds.  For IVF this beats IO_FLAG_MMAP, whose
    OnDiskInvertedLists searched 2.4x slower (1.84 vs 0.77 ms CPU per query, IVF1024,SQ8, 300k
    vectors, nprobe 48) while IFC kept full speed.  Any add/remove on an IFC-mapped index fails a
    C++ assertion that aborts the whole interpreter, so the gallery reloads without mmap before
    every write (Gallery._writable).  All index types map the same way.
    """
    path = Path(path)
    if not mmap:
        data = np.fromfile(str(path), dtype=np.uint8)
        return faiss.deserialize_index(data)
    os.stat(path)  # FileNotFoundError for a missing file (faiss would raise a bare RuntimeError)
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
