"""Exact retrieval metrics: TPR at fixed FPR with the threshold achieving it, AUROC, top-1, open set.

Why exact: the product promises "accept iff cosine >= t keeps false accepts at or below the FPR you
asked for".  Interpolated or histogram-binned ROC points can break that promise at small FPRs, so
every threshold here is read off the sorted negative scores, and a row is reported as *not
measurable* when there are too few negatives to observe the asked rate (n_neg < 1/FPR) instead of
extrapolating one.

Protocol.  A register holds one or several clean exemplars per type; every query is scored against
every register *type* by cosine, a type with several exemplars scoring its best exemplar.  The pair
(query, its own type) is a positive; (query, any other type) is a negative.  Queries of unregistered
types ("unknowns") are scored the same way and only their best score matters (would the system
accept them as something?).  Scores are cosines in [-1, 1]; the reference project (DocClassifier)
reported ``(cos + 1) / 2``, given as an extra row by :func:`markdown_table`.

numpy only: the script, the calibration and the retriever can all use it without the training stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

DEFAULT_FPRS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
# Bound on the float32 elements of one queries x register block (16 MB).
DEFAULT_MAX_BLOCK = 4_000_000
_EPS = 1e-9  # tolerance for n_neg * fpr landing a hair below an integer (1e-4 * 10_000)


def to_unit_interval(cos: float | np.ndarray) -> float | np.ndarray:
    """Map a cosine in [-1, 1] to the reference project's score scale ``(cos + 1) / 2`` in [0, 1]."""
    if isinstance(cos, np.ndarray):
        return (cos.astype(np.float64) + 1.0) / 2.0
    return (float(cos) + 1.0) / 2.0


def negatives_needed(fpr: float) -> int:
    """Smallest number of negative pairs at which a false-positive rate of ``fpr`` can be observed."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"FPR must be in (0, 1), got {fpr!r}")
    return int(math.ceil(1.0 / fpr - _EPS))


def is_measurable(fpr: float, n_neg: int) -> bool:
    return n_neg >= negatives_needed(fpr)


# --------------------------------------------------------------------------------------------------
# Scoring queries against a register
# --------------------------------------------------------------------------------------------------
@dataclass
class ScoreSets:
    """Everything the metrics need, reduced from the queries x register-types score matrix.

    ``neg`` is sorted ascending (float32); ``pos``, ``known_best``, ``known_correct`` and
    ``known_pred`` are aligned with the known queries in input order, ``unknown_best`` and
    ``unknown_pred`` with the unknown queries.
    """

    types: np.ndarray           # (n_types,) register type names, sorted
    n_exemplars: int            # register rows (>= n_types)
    pos: np.ndarray             # (n_known,) float32 score of each known query with its own type
    neg: np.ndarray             # (n_neg,) float32, sorted ascending
    known_best: np.ndarray      # (n_known,) float32 best score over all register types
    known_pred: np.ndarray      # (n_known,) int type index of the top-1
    known_correct: np.ndarray   # (n_known,) bool, top-1 is the query's own type
    unknown_best: np.ndarray    # (n_unknown,) float32
    unknown_pred: np.ndarray    # (n_unknown,) int
    unknown_as_negatives: bool = False
    # open set (retriever.openset): runner-up *label* scores, and each known query's best and
    # runner-up with its own type left out (how it scores against the register without its type)
    known_second: np.ndarray | None = None      # (n_known,) float32, NaN with a single type
    known_loo_best: np.ndarray | None = None    # (n_known,) float32, NaN with a single type
    known_loo_second: np.ndarray | None = None  # (n_known,) float32, NaN with < 3 types
    unknown_second: np.ndarray | None = None    # (n_unknown,) float32, NaN with a single type

    @property
    def register_size(self) -> dict[str, int]:
        return {"types": int(len(self.types)), "exemplars": int(self.n_exemplars)}


class ScoreAccumulator:
    """Collects blocks of the (queries x register types) score matrix, keeping memory linear.

    Feed it blocks from :func:`type_score_blocks` or from any other source of per-type scores
    (the gallery calibration feeds FAISS search results); ``finish`` sorts the negatives once.
    """

    def __init__(self, types: Sequence[str], n_exemplars: int | None = None,
                 unknown_as_negatives: bool = False) -> None:
        self.types = np.asarray(types)
        if len(self.types) == 0:
            raise ValueError("the register is empty: nothing to score against")
        if len(np.unique(self.types)) != len(self.types):
            raise ValueError("register type names must be unique")
        self.n_exemplars = int(n_exemplars if n_exemplars is not None else len(self.types))
        self.unknown_as_negatives = unknown_as_negatives
        self._pos: list[np.ndarray] = []
        self._neg: list[np.ndarray] = []
        self._kbest: list[np.ndarray] = []
        self._kpred: list[np.ndarray] = []
        self._kcorrect: list[np.ndarray] = []
        self._ubest: list[np.ndarray] = []
        self._upred: list[np.ndarray] = []
        self._ksecond: list[np.ndarray] = []
        self._kloo1: list[np.ndarray] = []
        self._kloo2: list[np.ndarray] = []
        self._usecond: list[np.ndarray] = []

    @staticmethod
    def _top3(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of each row's 3 best types, best first; missing columns -1 / NaN."""
        m, t = block.shape
        k = min(3, t)
        part = np.argpartition(-block, k - 1, axis=1)[:, :k] if t > k else np.tile(np.arange(t), (m, 1))
        vals = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = np.full((m, 3), -1, dtype=np.int64)
        sc = np.full((m, 3), np.nan, dtype=np.float32)
        idx[:, :k] = np.take_along_axis(part, order, axis=1)
        sc[:, :k] = np.take_along_axis(vals, order, axis=1)
        sc[np.isneginf(sc)] = np.nan  # a type the search did not return has no score to compare
        return idx, sc

    def add_known(self, block: np.ndarray, true_idx: np.ndarray) -> None:
        """``block`` (m, n_types) scores of m registered-type queries; ``true_idx`` their type index."""
        block = np.asarray(block, dtype=np.float32)
        true_idx = np.asarray(true_idx, dtype=np.int64)
        m, t = block.shape
        if t != len(self.types) or len(true_idx) != m:
            raise ValueError(f"score block {block.shape} does not match {len(self.types)} types / {len(true_idx)} labels")
        rows = np.arange(m)
        self._pos.append(block[rows, true_idx].copy())
        mask = np.ones_like(block, dtype=bool)
        mask[rows, true_idx] = False
        self._neg.append(block[mask])
        pred = np.argmax(block, axis=1)
        self._kbest.append(block[rows, pred])
        self._kpred.append(pred)
        self._kcorrect.append(pred == true_idx)
        idx, sc = self._top3(block)
        self._ksecond.append(sc[:, 1].copy())
        rest = np.where(idx == true_idx[:, None], np.nan, sc)  # own type left out
        rest = np.where(np.isnan(rest), -np.inf, rest)
        rest.sort(axis=1)
        rest = rest[:, ::-1]
        rest[np.isinf(rest)] = np.nan
        self._kloo1.append(rest[:, 0].copy())
        self._kloo2.append(rest[:, 1].copy())

    def add_unknown(self, block: np.ndarray) -> None:
        """``block`` (m, n_types) scores of m queries whose type is not in the register."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != len(self.types):
            raise ValueError(f"score block {block.shape} does not match {len(self.types)} types")
        pred = np.argmax(block, axis=1)
        self._ubest.append(block[np.arange(len(block)), pred])
        self._upred.append(pred)
        self._usecond.append(self._top3(block)[1][:, 1].copy())
        if self.unknown_as_negatives:
            self._neg.append(block.ravel())

    def finish(self) -> ScoreSets:
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)

        neg = cat(self._neg, np.float32)
        neg.sort(kind="stable")
        return ScoreSets(types=self.types, n_exemplars=self.n_exemplars, pos=cat(self._pos, np.float32), neg=neg,
                         known_best=cat(self._kbest, np.float32), known_pred=cat(self._kpred, np.int64),
                         known_correct=cat(self._kcorrect, bool), unknown_best=cat(self._ubest, np.float32),
                         unknown_pred=cat(self._upred, np.int64), unknown_as_negatives=self.unknown_as_negatives,
                         known_second=cat(self._ksecond, np.float32), known_loo_best=cat(self._kloo1, np.float32),
                         known_loo_second=cat(self._kloo2, np.float32), unknown_second=cat(self._usecond, np.float32))


def _group_register(reg_feats: np.ndarray, reg_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort register rows by label: (feats sorted, unique types, start offset of each type)."""
    labels = np.asarray(reg_labels).astype(str)
    reg_feats = np.asarray(reg_feats, dtype=np.float32)
    if reg_feats.ndim != 2 or len(reg_feats) != len(labels):
        raise ValueError(f"register features {reg_feats.shape} and {len(labels)} labels do not match")
    order = np.argsort(labels, kind="stable")
    types, starts = np.unique(labels[order], return_index=True)
    return reg_feats[order], types, starts


def type_score_blocks(query_feats: np.ndarray, reg_feats_sorted: np.ndarray, starts: np.ndarray,
                      max_block: int = DEFAULT_MAX_BLOCK) -> Iterable[tuple[int, np.ndarray]]:
    """Yield ``(first_query_row, scores (m, n_types))``, each type scored by its best exemplar.

    Queries are processed in blocks of at most ``max_block`` query x exemplar cosines, so memory
    stays bounded whatever the number of pairs.
    """
    q = np.asarray(query_feats, dtype=np.float32)
    n_reg = len(reg_feats_sorted)
    step = max(1, max_block // max(1, n_reg))
    for i in range(0, len(q), step):
        sims = q[i:i + step] @ reg_feats_sorted.T
        yield i, (np.maximum.reduceat(sims, starts, axis=1) if n_reg != len(starts) else sims)


def pair_scores(query_feats: np.ndarray, query_labels: Sequence[str], reg_feats: np.ndarray,
                reg_labels: Sequence[str], unknown_feats: np.ndarray | None = None,
                unknown_as_negatives: bool = False, max_block: int = DEFAULT_MAX_BLOCK) -> ScoreSets:
    """Score every query against every register type (features must be L2-normalised rows).

    Every ``query_labels`` entry must be a register label (put unregistered types in
    ``unknown_feats``).  With ``unknown_as_negatives`` the unknown-query x type pairs are also
    negatives (more negatives for a small calibration set; they are different-type pairs too).
    """
    reg_sorted, types, starts = _group_register(reg_feats, reg_labels)
    qlabels = np.asarray(query_labels).astype(str)
    query_feats = np.asarray(query_feats, dtype=np.float32)
    if len(query_feats) != len(qlabels):
        raise ValueError(f"{len(query_feats)} query features but {len(qlabels)} query labels")
    if len(query_feats) and query_feats.shape[1] != reg_sorted.shape[1]:
        raise ValueError(f"query features are {query_feats.shape[1]}-d, register features {reg_sorted.shape[1]}-d")
    true_idx = np.searchsorted(types, qlabels)
    bad = (true_idx >= len(types)) | (types[np.minimum(true_idx, len(types) - 1)] != qlabels)
    if bad.any():
        missing = sorted(set(qlabels[bad].tolist()))
        raise ValueError(f"query labels not in the register: {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                         "(pass queries of unregistered types as unknown_feats)")
    acc = ScoreAccumulator(types, n_exemplars=len(reg_sorted), unknown_as_negatives=unknown_as_negatives)
    for i, block in type_score_blocks(query_feats, reg_sorted, starts, max_block):
        acc.add_known(block, true_idx[i:i + len(block)])
    if unknown_feats is not None and len(unknown_feats):
        for _, block in type_score_blocks(unknown_feats, reg_sorted, starts, max_block):
            acc.add_unknown(block)
    return acc.finish()


def negatives_at_or_above(query_feats: np.ndarray, query_labels: Sequence[str], reg_feats: np.ndarray,
                          reg_labels: Sequence[str], threshold: float,
                          max_block: int = DEFAULT_MAX_BLOCK) -> list[tuple[int, str, float]]:
    """The negative pairs scoring ``>= threshold`` as ``(query row, register type, score)``, highest
    first: the pairs that set a low-FPR threshold, i.e. which types the model confuses."""
    reg_sorted, types, starts = _group_register(reg_feats, reg_labels)
    qlabels = np.asarray(query_labels).astype(str)
    out: list[tuple[int, str, float]] = []
    for i, block in type_score_blocks(np.asarray(query_feats, dtype=np.float32), reg_sorted, starts, max_block):
        own = types[None, :] == qlabels[i:i + len(block), None]
        rows, cols = np.nonzero((block >= threshold) & ~own)
        out += [(int(i + r), str(types[c]), float(block[r, c])) for r, c in zip(rows, cols)]
    return sorted(out, key=lambda x: -x[2])


# --------------------------------------------------------------------------------------------------
# Metrics on score sets
# --------------------------------------------------------------------------------------------------
def _sorted(a: np.ndarray, assume_sorted: bool) -> np.ndarray:
    a = np.asarray(a)
    return a if assume_sorted else np.sort(a, kind="stable")


def threshold_at(neg_sorted: np.ndarray, fpr: float) -> float | None:
    """Smallest threshold t with ``#(neg >= t) / n_neg <= fpr`` (accept iff score >= t), or None.

    With k = floor(fpr * n_neg) negatives allowed above threshold, t is the next representable
    number above the (k+1)-th largest negative: everything strictly above it is accepted, which is
    at most k negatives even with ties.  None when n_neg < 1/fpr (not measurable).
    """
    n = len(neg_sorted)
    if not is_measurable(fpr, n):
        return None
    k = int(math.floor(fpr * n + _EPS))
    if k >= n:
        return float("-inf")
    v = neg_sorted[n - 1 - k]  # the (k+1)-th largest
    dtype = neg_sorted.dtype if np.issubdtype(neg_sorted.dtype, np.floating) else np.float64
    return float(np.nextafter(dtype.type(v), dtype.type(np.inf)))


def rate_at_or_above(sorted_scores: np.ndarray, t: float) -> float:
    """Fraction of ``sorted_scores`` (ascending) that are >= t."""
    n = len(sorted_scores)
    if n == 0:
        return float("nan")
    return float(n - np.searchsorted(sorted_scores, t, side="left")) / n


def threshold_table(pos: np.ndarray, neg: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS,
                    neg_sorted: bool = False) -> list[dict[str, Any]]:
    """One row per target FPR: {fpr, tpr, threshold, measured_fpr, measurable}.

    ``threshold`` is a cosine; accept iff score >= threshold; ``measured_fpr <= fpr`` always.
    Rows with fewer than 1/fpr negatives have ``measurable=False`` and None for the numbers.
    """
    neg_s = _sorted(neg, neg_sorted)
    pos_s = np.sort(np.asarray(pos), kind="stable")
    if len(pos_s) == 0:
        raise ValueError("no positive pairs: cannot measure a TPR")
    rows = []
    for fpr in fprs:
        t = threshold_at(neg_s, fpr)
        if t is None:
            rows.append({"fpr": float(fpr), "tpr": None, "threshold": None, "measured_fpr": None, "measurable": False})
            continue
        rows.append({"fpr": float(fpr), "tpr": rate_at_or_above(pos_s, t), "threshold": t,
                     "measured_fpr": rate_at_or_above(neg_s, t), "measurable": True})
    return rows


def auroc(pos: np.ndarray, neg: np.ndarray, neg_sorted: bool = False) -> float:
    """Exact area under the ROC curve: P(pos > neg) + 0.5 * P(pos == neg) over all pairs."""
    neg_s = _sorted(neg, neg_sorted)
    pos = np.asarray(pos)
    if len(pos) == 0 or len(neg_s) == 0:
        raise ValueError(f"AUROC needs positives and negatives (got {len(pos)} and {len(neg_s)})")
    below = np.searchsorted(neg_s, pos, side="left").astype(np.int64)
    upto = np.searchsorted(neg_s, pos, side="right").astype(np.int64)
    # integer sums: exact up to ~9e18 pairs; 2*wins + ties keeps the half-counts integral
    twice = 2 * int(below.sum()) + int((upto - below).sum())
    return twice / (2.0 * len(pos) * len(neg_s))


def roc_points(pos: np.ndarray, neg: np.ndarray, n_points: int = 200,
               neg_sorted: bool = False) -> dict[str, list[float]]:
    """Exact ROC points at log-spaced FPRs from 1/n_neg to 1 (for plotting; thresholds included)."""
    neg_s = _sorted(neg, neg_sorted)
    pos_s = np.sort(np.asarray(pos), kind="stable")
    n = len(neg_s)
    if n == 0 or len(pos_s) == 0:
        return {"fpr": [], "tpr": [], "threshold": []}
    ks = np.unique(np.round(np.logspace(0, math.log10(n), n_points)).astype(np.int64))
    ks = np.concatenate([[0], ks[ks <= n]])
    fprs, tprs, ths = [], [], []
    for k in ks:
        t = float("-inf") if k >= n else float(np.nextafter(neg_s[n - 1 - k], np.float32(np.inf)))
        fprs.append(rate_at_or_above(neg_s, t))
        tprs.append(rate_at_or_above(pos_s, t))
        ths.append(t)
    return {"fpr": fprs, "tpr": tprs, "threshold": ths}


def top1_accuracy(sets: ScoreSets) -> float:
    """Closed set: fraction of registered-type queries whose best-scoring type is their own."""
    if len(sets.known_correct) == 0:
        return float("nan")
    return float(np.mean(sets.known_correct))


def open_set(unknown_best: np.ndarray, thresholds: Sequence[float | None]) -> list[dict[str, Any]]:
    """Fraction of unregistered-type queries falsely accepted (best score >= t) at each threshold."""
    ub = np.sort(np.asarray(unknown_best), kind="stable")
    out = []
    for t in thresholds:
        if t is None:
            out.append({"threshold": None, "false_accept_rate": None, "false_accepts": None})
            continue
        k = int(len(ub) - np.searchsorted(ub, t, side="left"))
        out.append({"threshold": float(t), "false_accept_rate": (k / len(ub)) if len(ub) else None,
                    "false_accepts": k})
    return out


def identification(sets: ScoreSets, thresholds: Sequence[float | None],
                   fprs: Sequence[float] | None = None) -> dict[str, Any]:
    """What a user meets: top-1 over the whole register, accepted iff its score >= t.

    Per threshold: ``correct_accept_rate`` (known query, top-1 right and accepted),
    ``wrong_accept_rate`` (known query, top-1 wrong but accepted), ``unknown_false_accept_rate``
    (unregistered type accepted as something).  Depends on the register size, which is reported.
    """
    n_k, n_u = len(sets.known_best), len(sets.unknown_best)
    rows = []
    for j, t in enumerate(thresholds):
        row: dict[str, Any] = {"fpr": float(fprs[j]) if fprs is not None else None,
                               "threshold": None if t is None else float(t)}
        if t is None:
            row.update(correct_accept_rate=None, wrong_accept_rate=None, unknown_false_accept_rate=None)
        else:
            acc_k = sets.known_best >= t
            row["correct_accept_rate"] = float(np.mean(acc_k & sets.known_correct)) if n_k else None
            row["wrong_accept_rate"] = float(np.mean(acc_k & ~sets.known_correct)) if n_k else None
            row["unknown_false_accept_rate"] = float(np.mean(sets.unknown_best >= t)) if n_u else None
        rows.append(row)
    return {"register_size": sets.register_size, "n_known_queries": n_k, "n_unknown_queries": n_u,
            "top1_accuracy": top1_accuracy(sets), "rows": rows}


def score_summary(a: np.ndarray) -> dict[str, float | int | None]:
    a = np.asarray(a, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0, "mean": None, "min": None, "p1": None, "p50": None, "p99": None, "max": None}
    p1, p50, p99 = np.percentile(a, [1, 50, 99])
    return {"n": int(len(a)), "mean": float(a.mean()), "min": float(a.min()), "p1": float(p1),
            "p50": float(p50), "p99": float(p99), "max": float(a.max())}


def summarise(sets: ScoreSets, fprs: Sequence[float] = DEFAULT_FPRS) -> dict[str, Any]:
    """All metrics of one score set as a JSON-serialisable dict."""
    table = threshold_table(sets.pos, sets.neg, fprs, neg_sorted=True)
    thresholds = [r["threshold"] for r in table]
    return {
        "register_size": sets.register_size,
        "n_known_queries": int(len(sets.pos)),
        "n_unknown_queries": int(len(sets.unknown_best)),
        "n_pos": int(len(sets.pos)),
        "n_neg": int(len(sets.neg)),
        "unknown_as_negatives": sets.unknown_as_negatives,
        "table": table,
        "auroc": auroc(sets.pos, sets.neg, neg_sorted=True) if len(sets.neg) else None,
        "top1_accuracy": top1_accuracy(sets),
        "open_set": [{"fpr": r["fpr"], **o} for r, o in zip(table, open_set(sets.unknown_best, thresholds))],
        "identification": identification(sets, thresholds, fprs),
        "scores": {"pos": score_summary(sets.pos), "neg": score_summary(sets.neg),
                   "unknown_best": score_summary(sets.unknown_best)},
    }


def evaluate_features(query_feats: np.ndarray, query_labels: Sequence[str], reg_feats: np.ndarray,
                      reg_labels: Sequence[str], unknown_feats: np.ndarray | None = None,
                      fprs: Sequence[float] = DEFAULT_FPRS, unknown_as_negatives: bool = False,
                      max_block: int = DEFAULT_MAX_BLOCK) -> dict[str, Any]:
    """Everything at once: :func:`pair_scores` then :func:`summarise`."""
    sets = pair_scores(query_feats, query_labels, reg_feats, reg_labels, unknown_feats,
                       unknown_as_negatives=unknown_as_negatives, max_block=max_block)
    return summarise(sets, fprs)


# --------------------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------------------
def _fmt_fpr(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The threshold table as markdown, FPR targets as columns (layout of the reference project).

    Rows: TPR, threshold (cosine, accept iff score >= it), the same threshold as (cos+1)/2 (the
    reference project's score scale), and the FPR actually measured at that threshold.  Columns
    with too few negatives read "n/a" and the footer says how many negatives they need.
    """
    table = result["table"]
    head = "| FPR | " + " | ".join(_fmt_fpr(r["fpr"]) for r in table) + " |"
    sep = "|---|" + "---|" * len(table)
    tpr = "| TPR | " + " | ".join(_fmt(r["tpr"]) for r in table) + " |"
    th = "| threshold (cosine) | " + " | ".join(_fmt(r["threshold"]) for r in table) + " |"
    th01 = "| threshold ((cos+1)/2) | " + " | ".join(
        _fmt(None if r["threshold"] is None else to_unit_interval(r["threshold"])) for r in table) + " |"
    meas = "| measured FPR | " + " | ".join(
        "n/a" if r["measured_fpr"] is None else f"{r['measured_fpr']:.2e}" for r in table) + " |"
    lines = [head, sep, tpr, th, th01, meas]
    n_neg = result.get("n_neg")
    missing = [r for r in table if not r["measurable"]]
    if missing and n_neg is not None:
        lines.append("")
        lines.append("n/a: not measurable with " + f"{n_neg:,} negative pairs; " + ", ".join(
            f"FPR {_fmt_fpr(r['fpr'])} needs >= {negatives_needed(r['fpr']):,}" for r in missing) + ".")
    return "\n".join(lines)


def markdown_identification(result: dict[str, Any]) -> str:
    """The identification view (top-1 over the whole register) at the table's thresholds."""
    ident = result["identification"]
    rs = ident["register_size"]
    lines = [f"Identification, register of {rs['types']} types ({rs['exemplars']} exemplars), "
             f"{ident['n_known_queries']} known + {ident['n_unknown_queries']} unknown queries, "
             f"top-1 accuracy {_fmt(ident['top1_accuracy'])}:", "",
             "| FPR row | threshold | known: correct accept | known: wrong accept | unknown: false accept |",
             "|---|---|---|---|---|"]
    for r in ident["rows"]:
        lines.append(f"| {_fmt_fpr(r['fpr']) if r['fpr'] is not None else '-'} | {_fmt(r['threshold'])} | "
                     f"{_fmt(r['correct_accept_rate'])} | {_fmt(r['wrong_accept_rate'])} | "
                     f"{_fmt(r['unknown_false_accept_rate'])} |")
    return "\n".join(lines)
