"""Open-set decisions: the rates a user meets (DIR at FPIR) and the rule that accepts or rejects.

Why this module: a pair table (TPR at pair FPR) is a verification rate; a user of a register of N
types meets the 1:N *open-set* rates of face-recognition practice (IJB-C's TPIR@FPIR):

* **DIR** (detection and identification rate): of the captures of registered types, the share
  whose best label is their own *and* is accepted;
* **FPIR** (false-positive identification rate): of the captures of *unregistered* types, the
  share accepted as anything.

A non-mated capture gets N chances and only its best score matters, so FPIR depends on the
register (how many types, how alike): it must be measured for the register it serves.

The decision rule (:class:`DecisionRule`) is explainable: with ``s1`` the cosine of the best
label and ``s2`` that of the best *other* label (the runner-up; exemplars of the same label never
make a margin), the decision score is ``z = cosine_weight * s1 + margin_weight * (s1 - s2)`` and a
capture is accepted iff ``z >= t``.  ``cosine`` is ``(1, 0)`` (the raw top-1 cosine), ``margin``
``(0, 1)``; a look-alike of several registered types sits between them, so the margin separates
it where the raw cosine cannot.

Thresholds are exact order statistics of the non-mated decision scores (as in
:mod:`retriever.metrics`): the smallest t whose measured FPIR is at or below the target, and a
row is not measurable (None) when there are fewer than 1/FPIR non-mated captures.

numpy only: the gallery's self-calibration, ``retriever calibrate`` and ``scripts/evaluate.py``
all use it without the training stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import metrics as M

__all__ = ["DEFAULT_FPIRS", "DEFAULT_RULE", "DecisionRule", "OpenSetScores", "RULES", "det_points", "dir_table",
           "markdown_dir_table", "ranked_labels", "rates_at", "scores_from_ranked", "scores_from_sets"]

# FPIR rows a table reports (a row needs >= 1/FPIR non-mated captures to be measured).
DEFAULT_FPIRS: tuple[float, ...] = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1)


@dataclass(frozen=True)
class DecisionRule:
    """Accept iff ``cosine_weight * s1 + margin_weight * (s1 - s2) >= threshold``.

    ``s1``: cosine of the best label; ``s2``: cosine of the best other label.  Both weights are
    plain numbers so the rule reads as a sentence (:meth:`describe`); the threshold lives in the
    table that a gallery or a calibration measured for this rule.
    """

    cosine_weight: float = 1.0
    margin_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cosine_weight", "margin_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"decision rule {name} must be a finite number >= 0, got {v!r}")
        if self.cosine_weight == 0 and self.margin_weight == 0:
            raise ValueError("decision rule needs a non-zero cosine or margin weight")

    @property
    def uses_margin(self) -> bool:
        return self.margin_weight > 0

    @property
    def name(self) -> str:
        if self.margin_weight == 0:
            return "cosine" if self.cosine_weight == 1 else f"{self.cosine_weight:g}*cosine"
        if self.cosine_weight == 0:
            return "margin" if self.margin_weight == 1 else f"{self.margin_weight:g}*margin"
        c = "" if self.cosine_weight == 1 else f"{self.cosine_weight:g}*"
        m = "" if self.margin_weight == 1 else f"{self.margin_weight:g}*"
        return f"{c}cosine+{m}margin"

    def describe(self, threshold: float | None = None) -> str:
        t = "t" if threshold is None else f"{threshold:.4f}"
        terms = []
        if self.cosine_weight:
            terms.append("cosine" if self.cosine_weight == 1 else f"{self.cosine_weight:g} x cosine")
        if self.margin_weight:
            terms.append("margin" if self.margin_weight == 1 else f"{self.margin_weight:g} x margin")
        why = " (margin = best label's cosine - runner-up label's)" if self.margin_weight else ""
        return f"accept iff {' + '.join(terms)} >= {t}{why}"

    def score(self, s1: np.ndarray | float, s2: np.ndarray | float | None) -> np.ndarray | float:
        """Decision score(s).  ``s2`` may be None/NaN only when the margin weight is 0."""
        if not self.uses_margin:
            return self.cosine_weight * np.asarray(s1, dtype=np.float64) if isinstance(s1, np.ndarray) \
                else self.cosine_weight * float(s1)
        if s2 is None:
            raise ValueError(f"rule {self.name!r} needs the runner-up label's score (a gallery of >= 2 labels)")
        if isinstance(s1, np.ndarray) or isinstance(s2, np.ndarray):
            a1 = np.asarray(s1, dtype=np.float64)
            a2 = np.asarray(s2, dtype=np.float64)
            return self.cosine_weight * a1 + self.margin_weight * (a1 - a2)
        return self.cosine_weight * float(s1) + self.margin_weight * (float(s1) - float(s2))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cosine_weight": float(self.cosine_weight), "margin_weight": float(self.margin_weight)}

    @classmethod
    def from_value(cls, value: "DecisionRule | Mapping[str, Any] | str | None") -> "DecisionRule":
        """A rule from itself, its dict, or a name in :data:`RULES` (None: :data:`DEFAULT_RULE`)."""
        if value is None:
            return DEFAULT_RULE
        if isinstance(value, DecisionRule):
            return value
        if isinstance(value, str):
            if value not in RULES:
                raise ValueError(f"unknown decision rule {value!r}; choose one of {', '.join(RULES)}")
            return RULES[value]
        if isinstance(value, Mapping):
            try:
                return cls(float(value["cosine_weight"]), float(value["margin_weight"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"cannot read a decision rule from {dict(value)!r} ({exc})") from None
        raise ValueError(f"cannot read a decision rule from {value!r}")


RULES: dict[str, DecisionRule] = {
    "cosine": DecisionRule(1.0, 0.0),
    "margin": DecisionRule(0.0, 1.0),
    "cosine+margin": DecisionRule(1.0, 1.0),
    "cosine+2*margin": DecisionRule(1.0, 2.0),
    "cosine+0.5*margin": DecisionRule(1.0, 0.5),
}
# Chosen on the benchmark's val split (scripts/evaluate.py, DIR at FPIR on mixed and dense registers);
# see README "Choosing an operating point".
DEFAULT_RULE = RULES["cosine+margin"]


@dataclass
class OpenSetScores:
    """Per capture: best-label cosine ``s1``, runner-up-label cosine ``s2`` (NaN if none) and, for
    mated captures, whether the best label is right.  Non-mated captures carry ``s1``/``s2`` only."""

    known_s1: np.ndarray
    known_s2: np.ndarray
    known_correct: np.ndarray
    unknown_s1: np.ndarray
    unknown_s2: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence["OpenSetScores"]) -> "OpenSetScores":
        def cat(name: str, dtype: Any) -> np.ndarray:
            arrs = [getattr(p, name) for p in parts]
            return np.concatenate(arrs).astype(dtype, copy=False) if arrs else np.zeros(0, dtype)

        return cls(cat("known_s1", np.float64), cat("known_s2", np.float64), cat("known_correct", bool),
                   cat("unknown_s1", np.float64), cat("unknown_s2", np.float64))

    @property
    def n_known(self) -> int:
        return int(len(self.known_s1))

    @property
    def n_unknown(self) -> int:
        return int(len(self.unknown_s1))

    def known_z(self, rule: DecisionRule) -> np.ndarray:
        return _z(rule, self.known_s1, self.known_s2)

    def unknown_z(self, rule: DecisionRule) -> np.ndarray:
        return _z(rule, self.unknown_s1, self.unknown_s2)


def _z(rule: DecisionRule, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    z = rule.score(np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64))
    # no runner-up (a register of one label): the margin is undefined; such captures are decided
    # by their cosine alone, never by an infinite margin
    return np.where(np.isnan(z), rule.cosine_weight * np.asarray(s1, dtype=np.float64), z)


# Exemplars fetched per wanted label before deepening: one label with many exemplars must not
# crowd the others out, so searches go deeper than the labels wanted and keep each label's best.
SEARCH_DEPTH_FACTOR = 4


def ranked_labels(gallery: Any, feats: np.ndarray, want: int, count: int, n_labels: int,
                  params: Mapping[str, Any] | None = None,
                  best_ids: list[dict[str, int]] | None = None,
                  labels: Sequence[str] | None = None,
                  local: np.ndarray | None = None,
                  exclude: Sequence[str] | None = None,
                  pages: Sequence[Any] | None = None) -> list[list[tuple[str, float]]]:
    """Per query row: distinct labels by best-exemplar cosine, best first, at least ``want`` of them
    when the gallery has that many.

    ``gallery`` needs ``search(feats, k[, params])`` and ``labels_of(ids)``.  Searches
    ``SEARCH_DEPTH_FACTOR * want`` exemplars and deepens (x4) only for the rows whose hits cover
    too few labels, up to the whole gallery (``count`` live exemplars, ``n_labels`` labels).
    ``best_ids``: if given (a list), it receives per row ``{label: id of its best exemplar}``.
    ``labels``: search only these labels' exemplars (``gallery.search(..., labels=)``: an ID selector
    inside the index search); ``count`` and ``n_labels`` are then those of the allowed subset.
    ``local``: the queries' local maps, passed to ``gallery.search(..., local=)`` (a gallery that
    re-ranks then scores its top candidates by them; see indexer/rerank.py).  ``exclude``: per row, a
    label that row is ranked without, searched as if the gallery did not hold it (leave one type out;
    ``gallery.search(..., exclude=)``).  ``pages``: the queries' page prints, passed to
    ``gallery.search(..., pages=)`` (a gallery that verifies then verifies its top candidates).
    """
    want = max(1, min(int(want), int(n_labels)))
    depth = max(1, min(int(count), SEARCH_DEPTH_FACTOR * want))
    ranked: list[list[tuple[str, float]]] = [[] for _ in range(len(feats))]
    ids_of: list[dict[str, int]] = [{} for _ in range(len(feats))]
    kw: dict[str, Any] = {}
    if params:
        kw["params"] = dict(params)
    if labels is not None:
        kw["labels"] = labels
    todo = np.arange(len(feats))
    while len(todo):
        if local is not None:
            kw["local"] = local[todo]
        if pages is not None:
            kw["pages"] = [pages[i] for i in todo]
        if exclude is not None:
            kw["exclude"] = [exclude[i] for i in todo]
        scores, ids = gallery.search(feats[todo], depth, **kw)
        scores = np.asarray(scores, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        valid = ids >= 0
        hit_labels = np.empty(ids.shape, dtype=object)
        hit_labels[valid] = np.asarray(gallery.labels_of(ids[valid]))
        again = []
        for row, q in enumerate(todo):
            best: dict[str, float] = {}
            where: dict[str, int] = {}
            for lab, sc, ok, iid in zip(hit_labels[row], scores[row], valid[row], ids[row]):
                if ok and lab not in best:  # hits come best first
                    best[str(lab)] = float(sc)
                    where[str(lab)] = int(iid)
            ranked[q] = sorted(best.items(), key=lambda kv: -kv[1])
            ids_of[q] = where
            if len(best) < want and depth < count:
                again.append(q)
        if not again:
            break
        todo = np.asarray(again)
        depth = min(int(count), depth * SEARCH_DEPTH_FACTOR)
    if best_ids is not None:
        best_ids[:] = ids_of
    return ranked


def scores_from_ranked(ranked: Sequence[Sequence[tuple[str, float]]], own: Sequence[str] | None,
                       leave_own_out: bool = False,
                       left_out: Sequence[Sequence[tuple[str, float]]] | None = None) -> OpenSetScores:
    """Open-set scores from per-capture ranked distinct labels ``[(label, cosine), ...]`` (best first).

    ``own`` gives each capture's true label (None: all captures are non-mated).  With
    ``leave_own_out`` each mated capture *also* yields a non-mated one: its ranking with its own
    label removed, i.e. how it would score against the register without its type (leave one type
    out), which behaves like an unregistered look-alike of that register.  Needs the top 3 labels
    per capture for the margins of both views.  ``left_out``: the captures' rankings from a search
    without their own type (``ranked_labels(..., exclude=own)``), used for the non-mated view instead:
    needed when scores depend on the candidates (a gallery that re-ranks), where the own type's
    exemplar among the candidates moves the others' scores.
    """
    ks1, ks2, kc, us1, us2 = [], [], [], [], []
    for i, labels in enumerate(ranked):
        if not labels:
            raise ValueError(f"capture {i}: no ranked labels")
        if own is None:
            us1.append(labels[0][1])
            us2.append(labels[1][1] if len(labels) > 1 else math.nan)
            continue
        ks1.append(labels[0][1])
        ks2.append(labels[1][1] if len(labels) > 1 else math.nan)
        kc.append(labels[0][0] == own[i])
        if leave_own_out:
            rest = [s for lab, s in (labels if left_out is None else left_out[i]) if lab != own[i]]
            if rest:
                us1.append(rest[0])
                us2.append(rest[1] if len(rest) > 1 else math.nan)
    f = np.float64
    return OpenSetScores(np.asarray(ks1, f), np.asarray(ks2, f), np.asarray(kc, bool), np.asarray(us1, f),
                         np.asarray(us2, f))


def scores_from_sets(sets: M.ScoreSets, unknowns: bool = True, leave_own_out: bool = False) -> OpenSetScores:
    """Open-set scores from a :class:`retriever.metrics.ScoreSets` (every query scored against every
    register type).  Non-mated captures: the unknown queries (``unknowns``) and/or, with
    ``leave_own_out``, every known query scored with its own type left out."""
    if sets.known_second is None:
        raise ValueError("these score sets carry no runner-up scores (made by an older ScoreAccumulator)")
    us1 = [sets.unknown_best.astype(np.float64)] if unknowns else []
    us2 = [sets.unknown_second.astype(np.float64)] if unknowns else []
    if leave_own_out:
        us1.append(sets.known_loo_best.astype(np.float64))
        us2.append(sets.known_loo_second.astype(np.float64))
    u1 = np.concatenate(us1) if us1 else np.zeros(0)
    u2 = np.concatenate(us2) if us2 else np.zeros(0)
    keep = ~np.isnan(u1)  # a single-type register has no leave-one-out view
    return OpenSetScores(sets.known_best.astype(np.float64), sets.known_second.astype(np.float64),
                         sets.known_correct.astype(bool), u1[keep], u2[keep])


def dir_table(scores: OpenSetScores, rule: DecisionRule, fpirs: Sequence[float] = DEFAULT_FPIRS
              ) -> list[dict[str, Any]]:
    """One row per target FPIR: ``{fpir, threshold, dir, measured_fpir, measurable}``.

    ``threshold`` is on the rule's decision score (a cosine for the ``cosine`` rule); accept iff
    score >= threshold; ``measured_fpir <= fpir``.  Rows needing more non-mated captures than
    there are have ``measurable=False`` and None for the numbers.
    """
    uz = np.sort(scores.unknown_z(rule), kind="stable")
    kz = scores.known_z(rule)
    rows = []
    for f in fpirs:
        t = M.threshold_at(uz, float(f))
        if t is None:
            rows.append({"fpir": float(f), "threshold": None, "dir": None, "measured_fpir": None, "measurable": False})
            continue
        d = float(np.mean(scores.known_correct & (kz >= t))) if scores.n_known else None
        rows.append({"fpir": float(f), "threshold": float(t), "dir": d,
                     "measured_fpir": M.rate_at_or_above(uz, t), "measurable": True})
    return rows


def rates_at(scores: OpenSetScores, rule: DecisionRule, threshold: float) -> dict[str, float | None]:
    """DIR and FPIR of these captures at a given decision threshold (how a table transfers)."""
    kz, uz = scores.known_z(rule), scores.unknown_z(rule)
    return {"dir": float(np.mean(scores.known_correct & (kz >= threshold))) if scores.n_known else None,
            "fpir": float(np.mean(uz >= threshold)) if scores.n_unknown else None}


def det_points(scores: OpenSetScores, rule: DecisionRule, n_points: int = 200) -> dict[str, list[float]]:
    """Exact (FPIR, DIR) points at log-spaced FPIRs from 1/n_unknown to 1: the open-set DET curve."""
    uz = np.sort(scores.unknown_z(rule), kind="stable")
    kz = scores.known_z(rule)
    n = len(uz)
    if n == 0 or scores.n_known == 0:
        return {"fpir": [], "dir": [], "threshold": []}
    ks = np.unique(np.round(np.logspace(0, math.log10(n), n_points)).astype(np.int64))
    ks = np.concatenate([[0], ks[ks <= n]])
    out: dict[str, list[float]] = {"fpir": [], "dir": [], "threshold": []}
    for k in ks:
        t = -math.inf if k >= n else float(np.nextafter(uz[n - 1 - k], np.inf))
        out["fpir"].append(M.rate_at_or_above(uz, t))
        out["dir"].append(float(np.mean(scores.known_correct & (kz >= t))))
        out["threshold"].append(t)
    return out


def markdown_dir_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """FPIR targets as columns: DIR, threshold, measured FPIR (n/a when not measurable)."""
    def f(v: Any, d: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    head = "| FPIR | " + " | ".join(f"{r['fpir']:g}" for r in rows) + " |"
    lines = ([title, ""] if title else []) + [
        head, "|---|" + "---|" * len(rows),
        "| DIR | " + " | ".join(f(r.get("dir")) for r in rows) + " |",
        "| threshold | " + " | ".join(f(r.get("threshold")) for r in rows) + " |",
        "| measured FPIR | " + " | ".join("n/a" if r.get("measured_fpir") is None else f"{r['measured_fpir']:.4f}"
                                         for r in rows) + " |"]
    return "\n".join(lines)
