"""Search parameters tuned to the gallery, not fixed: the cheapest ``nprobe`` / ``efSearch`` that keeps
the top-1 label of approximate search equal to exact search's on >= ``TARGET`` of the queries.

Why: a fixed ``nprobe`` is either wasted on easy data or short on hard data (1M vectors in 20,000
evenly spread clusters needed twice the probes of real-feature clusters for the same agreement).
As autofaiss tunes an index to a recall target, the gallery measures itself when an approximate
index is built (build, compact, import, an ``auto`` gallery switching from flat): queries are its
own exemplars moved to cosine ~0.7 (as a capture is to its exemplar) along the directions the
gallery varies in, the reference is exact search over every live vector, and candidates are tried from the
cheapest up through the gallery's own search path (codec, re-ranking).  The result goes into the
manifest (``search_tuning``) and becomes the plan's default; ``indexer stats`` shows it.
Parameters the user set (``--param nprobe=...``) are kept as given, never tuned.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from . import index as idx
from .specs import Plan

TARGET = 0.99          # top-1 label agreement with exact search, for real queries
HEADROOM = 4.0         # ... aimed at on the tuning queries with this many times less disagreement: queries
                       # drawn from the gallery are easier than captures (bench_index.py at 1M: 0.994 on them
                       # at nprobe 4 while capture-like queries agreed 0.98; 0.995 at nprobe 8)
MIN_VECTORS = 1000     # below this an approximate index is searched exhaustively enough: not worth tuning
RETUNE_GROWTH = 2.0    # tuned again (on a write) once the gallery has grown this much since
QUERIES = 500          # tuning queries (fewer in a smaller gallery)
QUERY_COSINE = 0.7     # how far a tuning query sits from the exemplar it is drawn from
K = 10                 # results per query, as a classification search asks for several labels
NPROBE = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)


def _queries(vecs: np.ndarray, n: int, seed: int, labels: np.ndarray | None = None, basis: int = 4096,
             per_label: int = 16) -> np.ndarray:
    """Captures as the gallery would see them: the centre of a label's exemplars (up to
    ``per_label`` of them; the exemplar itself for a label with one), moved to cosine QUERY_COSINE
    along the directions the gallery itself varies in (noise with the covariance of its vectors).
    A query drawn around one exemplar would have that exemplar as a clear winner; a capture sits
    between its type's exemplars and near other types' (measured at 1M: exemplar-centred queries
    agreed at nprobe 4 while capture-like ones did not)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vecs), size=min(n, len(vecs)), replace=False)
    base = vecs[rows].astype(np.float32)
    if labels is not None:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        for i, r in enumerate(rows):
            lo, hi = np.searchsorted(sorted_labels, labels[r], "left"), np.searchsorted(sorted_labels, labels[r], "right")
            if hi - lo > 1:
                members = order[lo:hi]
                if len(members) > per_label:
                    members = rng.choice(members, per_label, replace=False)
                c = vecs[members].astype(np.float32).mean(axis=0)
                base[i] = c / max(float(np.linalg.norm(c)), 1e-12)
    sample = vecs[rng.choice(len(vecs), size=min(basis, len(vecs)), replace=False)].astype(np.float32)
    sample -= sample.mean(axis=0, keepdims=True)
    noise = rng.standard_normal((len(base), len(sample)), dtype=np.float32) @ sample
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    # unit noise at length t from a unit vector: cos = 1 / sqrt(1 + t^2) (noise ~ orthogonal to base)
    q = base + np.sqrt(1.0 / QUERY_COSINE ** 2 - 1.0) * noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _exact_top1(q: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """Row of the best exact match of each query: FAISS's blocked exhaustive search (no index built)."""
    import faiss

    _, rows = faiss.knn(np.ascontiguousarray(q, dtype=np.float32), np.ascontiguousarray(vecs, dtype=np.float32), 1,
                        metric=faiss.METRIC_INNER_PRODUCT)
    return rows[:, 0]


def tune_plan(index: Any, plan: Plan, ids: np.ndarray, vecs: np.ndarray, labels: np.ndarray, exact: Any = None,
              user_params: Mapping[str, Any] | None = None, target: float = TARGET, queries: int = QUERIES,
              seed: int = 0) -> tuple[Plan, dict[str, Any] | None]:
    """``(plan with the tuned default, record)``; ``(plan, None)`` for an exact index.  ``ids``,
    ``vecs`` and ``labels`` are the live items (aligned), ``exact`` the store re-ranking reads."""
    key = tuned_param(plan)
    if key is None or len(ids) < MIN_VECTORS:
        return plan, None
    grid = EF_SEARCH if key == "efSearch" else \
        tuple(p for p in NPROBE if not plan.nlist or p <= plan.nlist) or (plan.nlist or 1,)
    given = dict(user_params or {})
    if key in given:
        return plan, {"param": key, "value": int(given[key]), "source": "set by the user (--param); not tuned"}
    t0 = time.perf_counter()
    aim = 1.0 - (1.0 - target) / HEADROOM
    labels = np.asarray(labels).astype(str)
    q = _queries(vecs, queries, seed, labels)
    want = labels[_exact_top1(q, vecs)]
    tried = []
    chosen = None
    for value in grid:
        _, got = idx.search(index, q, K, plan, {key: int(value)}, None, exact)
        top = got[:, 0]
        found = top >= 0
        pos = np.searchsorted(ids, top[found])
        hit = np.zeros(len(q), dtype=bool)
        hit[found] = labels[np.minimum(pos, len(ids) - 1)] == want[found]
        agreement = float(hit.mean())
        tried.append({key: int(value), "agreement": round(agreement, 4)})
        if agreement >= aim:
            chosen = (value, agreement)
            break
    reached = chosen is not None
    value, agreement = chosen if reached else (grid[-1], tried[-1]["agreement"])
    record = {"param": key, "value": int(value), "target": target, "aimed_at": round(aim, 4),
              "agreement": round(agreement, 4),
              "reached": reached, "queries": int(len(q)), "query_cosine": QUERY_COSINE, "vectors": int(len(ids)),
              "tried": tried, "seconds": round(time.perf_counter() - t0, 2),
              "source": "tuned at build: cheapest value whose top-1 labels agree with exact search on >= aimed_at "
                        "of queries drawn from the gallery"}
    return replace(plan, **{key: int(value)}), record


def tuned_param(plan: Plan) -> str | None:
    """The search-time parameter that trades speed for agreement in this plan, None for exact search."""
    if plan.type == "hnsw" or (plan.type == "faiss" and plan.efSearch is not None):
        return "efSearch"
    if plan.type == "ivf" or (plan.type == "faiss" and plan.nprobe is not None):
        return "nprobe"
    return None


def due(plan: Plan, record: Mapping[str, Any] | None, n: int) -> bool:
    """Whether a write that grew the gallery to ``n`` vectors should tune again: an approximate index
    never tuned (it started small, as an HNSW gallery filled one add at a time does), or grown
    RETUNE_GROWTH-fold since; never a parameter the user set."""
    if tuned_param(plan) is None or n < MIN_VECTORS:
        return False
    if not record:
        return True
    return "vectors" in record and n >= RETUNE_GROWTH * int(record["vectors"])


def describe(record: Mapping[str, Any] | None) -> str:
    """One line for `indexer stats`."""
    if not record:
        return "exact index: nothing to tune"
    if "agreement" not in record:
        return f"{record['param']}={record['value']} ({record['source']})"
    aim = record.get("aimed_at", record["target"])
    ok = "" if record["reached"] else f" ({aim} not reached: the largest value tried)"
    return (f"{record['param']}={record['value']}: top-1 label agreement {record['agreement']:.4f} with exact search "
            f"on {record['queries']} queries from the gallery (aimed at {aim} for {record['target']} on captures){ok}; "
            f"{record['vectors']:,} vectors, {record['seconds']} s")
