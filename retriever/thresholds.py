"""Operating points: which cosine threshold gives which false-positive rate.

A threshold only means something next to the data it was measured on.  Each model carries a
generic table measured at export (``ModelContract.threshold_table``); a gallery can carry its own
table measured on the user's documents (``retriever calibrate``), which is closer to reality and
therefore wins.  Callers ask for a target FPR and get the threshold of a *measured* row: between
rows we take the nearest row whose measured FPR does not exceed the target, never a looser one,
and we refuse to extrapolate below the smallest measured FPR.

Scores are cosine similarities in [-1, 1].  The reference project (DocClassifier) reported
``(cos + 1) / 2`` in [0, 1]; :func:`to_reference_score` / :func:`from_reference_score` convert.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from encoders.contract import ModelContract, ThresholdRow

from .defaults import DEFAULT_FPIR
from .errors import NoThresholdTableError, ThresholdError

# A re-ranked score is a cosine moved by weight x (a cell-cosine difference in [-2, 2]): with the
# shipped weight 2.4 it stays within +-5.8.  Thresholds outside +-SCORE_LIMIT are not scores at all.
SCORE_LIMIT = 10.0

__all__ = [
    "DEFAULT_FPIR", "NoThresholdTableError", "OpenSetRow", "OpenSetTable", "OperatingPoint", "ThresholdError",
    "ThresholdTable", "choose_operating_point", "from_reference_score", "to_reference_score",
]

# The operating point when the caller names none: 1 % of documents of unregistered types accepted,
# read from the gallery's own open-set table.


def to_reference_score(cos: float) -> float:
    """Cosine in [-1, 1] -> the reference project's ``(cos + 1) / 2`` score in [0, 1]."""
    return (float(cos) + 1.0) / 2.0


def from_reference_score(score: float) -> float:
    """The reference project's ``(cos + 1) / 2`` score in [0, 1] -> cosine in [-1, 1]."""
    return 2.0 * float(score) - 1.0


def _row(obj: Any, where: str) -> ThresholdRow:
    """Accept a ThresholdRow, a {"fpr","tpr","threshold"} mapping or an (fpr, tpr, threshold) triple."""
    if isinstance(obj, ThresholdRow):
        fpr, tpr, thr = obj.fpr, obj.tpr, obj.threshold
    elif isinstance(obj, Mapping):
        missing = [k for k in ("fpr", "threshold") if k not in obj]
        if missing:
            raise ThresholdError(f"{where}: threshold row {dict(obj)!r} lacks {', '.join(missing)}")
        fpr, tpr, thr = obj["fpr"], obj.get("tpr"), obj["threshold"]
    elif isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) == 3:
        fpr, tpr, thr = obj
    else:
        raise ThresholdError(f"{where}: cannot read a threshold row from {obj!r}")
    try:
        fpr = float(fpr)
        thr = float(thr)
        tpr = float("nan") if tpr is None else float(tpr)
    except (TypeError, ValueError):
        raise ThresholdError(f"{where}: threshold row {obj!r} has non-numeric values") from None
    if not 0.0 < fpr <= 1.0:
        raise ThresholdError(f"{where}: FPR must be in (0, 1], got {fpr!r}")
    if not (-SCORE_LIMIT <= thr <= SCORE_LIMIT or thr == float("-inf")):
        raise ThresholdError(f"{where}: threshold {thr!r} is not a score (a cosine in [-1, 1], or a re-ranked "
                             f"score, which stays within +-{SCORE_LIMIT:g})")
    return ThresholdRow(fpr=fpr, tpr=tpr, threshold=thr)


@dataclass(frozen=True)
class ThresholdTable:
    """Measured (FPR, TPR, cosine threshold) rows, sorted by FPR, and where they come from."""

    rows: tuple[ThresholdRow, ...]
    source: str = ""
    scoring: str = "cosine"  # "reranked": thresholds on the re-ranked score (no (cos+1)/2 form)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(sorted(self.rows, key=lambda r: r.fpr)))

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[Any], source: str = "") -> "ThresholdTable":
        """Rows as ThresholdRow, mappings or triples; unmeasurable rows (threshold None, or
        ``measurable: False`` as :func:`retriever.metrics.threshold_table` marks them) are skipped."""
        kept = []
        for r in rows:
            if isinstance(r, Mapping) and (r.get("threshold") is None or r.get("measurable") is False):
                continue
            kept.append(_row(r, source or "threshold table"))
        return cls(tuple(kept), source)

    @classmethod
    def from_contract(cls, contract: ModelContract, scoring: str = "cosine") -> "ThresholdTable":
        """The model's generic table (measured at export on the training project's eval data): of the
        cosine, or with ``scoring="reranked"`` of the local-map re-ranked score (``contract.local``)."""
        where = f"model {contract.name!r} v{contract.version}"
        if scoring == "verified":  # measured per gallery only: its self-calibration, or a user calibration
            return cls((), where + ": none for verified scores (a gallery that verifies takes its thresholds "
                       "from its self-calibration or a user calibration)", scoring="verified")
        if scoring == "reranked":
            if contract.local is None:
                raise ThresholdError(f"{where} has no local map, so no re-ranked table")
            src = contract.local.threshold_source
            t = cls.from_rows(contract.local.threshold_table, where + f" re-ranked ({src})" if src else where + " re-ranked")
            return dataclasses.replace(t, scoring="reranked")
        if contract.threshold_source:
            where += f" ({contract.threshold_source})"
        return cls.from_rows(contract.threshold_table, where)

    @classmethod
    def from_calibration(cls, calibration: Mapping[str, Any], gallery: str = "gallery") -> "ThresholdTable":
        """A gallery's own table, as ``retriever calibrate`` stores it in the manifest.

        Accepts the rows under ``threshold_table`` (preferred), ``rows`` or ``table``, each row a
        mapping with fpr/tpr/threshold or an (fpr, tpr, threshold) triple.
        """
        for key in ("threshold_table", "rows", "table"):
            if key in calibration and calibration[key] is not None:
                rows = calibration[key]
                break
        else:
            raise ThresholdError(f"{gallery}: calibration has no threshold table "
                                 f"(keys: {', '.join(sorted(calibration)) or 'none'})")
        where = f"{gallery} calibration"
        src = calibration.get("source")
        if src:
            where += f" ({src})"
        return cls.from_rows(rows, where)

    @classmethod
    def resolve(cls, contract: ModelContract | None, calibration: Mapping[str, Any] | None = None,
                gallery: str = "gallery", scoring: str = "cosine") -> "ThresholdTable":
        """The table in force: the gallery's calibration if it has rows (and was measured on the same
        ``scoring``), else the model's table of that scoring."""
        if calibration and scoring_of(calibration) == scoring:
            table = cls.from_calibration(calibration, gallery)
            if table.rows:
                return dataclasses.replace(table, scoring=scoring)
        if contract is None:
            return cls((), "no model")
        return cls.from_contract(contract, scoring)

    # --- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def fpr_range(self) -> tuple[float, float]:
        if not self.rows:
            raise NoThresholdTableError(self._no_table_message())
        return self.rows[0].fpr, self.rows[-1].fpr

    def _no_table_message(self) -> str:
        what = "cosine" if self.scoring == "cosine" else "re-ranked" if self.scoring == "reranked" else "verified"
        return (f"no measured threshold table for {self.source or 'this model'}; pass an explicit "
                f"threshold on the {what} score (threshold=... in Python, --threshold on the command line), or measure "
                "one on your own documents with `retriever calibrate --gallery GALLERY LABELLED_DIR`")

    def row_for(self, fpr: float) -> ThresholdRow:
        """The row that honours a target FPR: exact if measured, else the nearest row below it.

        Between two measured rows the row with the largest measured FPR that is still <= the
        target is chosen (its threshold is stricter than any interpolation), so the promised
        FPR is never exceeded on the measurement data.  Targets below the smallest measured FPR
        are refused: the table cannot vouch for them.
        """
        fpr = float(fpr)
        if not (0.0 < fpr <= 1.0) or math.isnan(fpr):
            raise ThresholdError(f"target FPR must be in (0, 1], got {fpr!r}")
        if not self.rows:
            raise NoThresholdTableError(self._no_table_message())
        for row in self.rows:
            if math.isclose(row.fpr, fpr, rel_tol=1e-6, abs_tol=0.0):
                return row
        below = [r for r in self.rows if r.fpr <= fpr]
        if not below:
            lo, hi = self.fpr_range
            raise ThresholdError(
                f"target FPR {fpr:g} is below the measured range of {self.source or 'the table'} "
                f"(FPR {lo:g} .. {hi:g}); ask for FPR >= {lo:g}, pass an explicit threshold, or "
                "calibrate on more negatives")
        return below[-1]

    def threshold_for(self, fpr: float) -> float:
        """Cosine threshold for a target FPR (see :meth:`row_for` for the selection rule)."""
        return self.row_for(fpr).threshold

    # --- rendering -----------------------------------------------------------------------------
    def to_markdown(self, selected_fpr: float | None = None) -> str:
        """A Markdown table: FPR, TPR, cosine threshold and the reference project's (cos+1)/2.

        ``selected_fpr`` marks the row that :meth:`row_for` would pick for that target.
        """
        if not self.rows:
            return self._no_table_message() + "\n"
        chosen = None
        if selected_fpr is not None:
            try:
                chosen = self.row_for(selected_fpr)
            except ThresholdError:
                chosen = None
        cosine = self.scoring == "cosine"
        lines = [
            f"Threshold table: {self.source or 'unnamed'}",
            "",
            "| FPR | TPR | threshold (cosine) | reference score (cos+1)/2 |" if cosine else
            "| FPR | TPR | threshold (re-ranked score) |",
            "|---:|---:|---:|---:|" if cosine else "|---:|---:|---:|",
        ]
        for r in self.rows:
            tpr = "-" if math.isnan(r.tpr) else f"{r.tpr:.4f}"
            mark = " (in use)" if chosen is r else ""
            ref = f" {to_reference_score(r.threshold):.4f} |" if cosine else ""
            lines.append(f"| {r.fpr:g}{mark} | {tpr} | {r.threshold:.4f} |{ref}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "scoring": self.scoring,
                "rows": [{"fpr": r.fpr, "tpr": None if math.isnan(r.tpr) else r.tpr, "threshold": r.threshold}
                         for r in self.rows]}


# ==================================================================================================
# Open-set tables: FPIR -> decision threshold -> DIR, measured for one gallery
# ==================================================================================================
@dataclass(frozen=True)
class OpenSetRow:
    """Accepting decision scores >= ``threshold`` (under ``rule``) let through a measured share
    ``measured_fpir`` (<= ``fpir``) of non-mated captures and gave DIR ``dir`` on mated ones."""

    fpir: float
    threshold: float
    dir: float
    measured_fpir: float
    rule: Any  # retriever.openset.DecisionRule
    source: str
    origin: str = ""  # "user calibration" | "self-calibration"


SCORINGS = ("cosine", "reranked", "verified")


def check_explicit_threshold(t: float, scoring: str = "cosine") -> None:
    """Refuse an explicit threshold the gallery's scores cannot meet sensibly: a cosine in [-1, 1], or
    for a gallery that re-ranks any finite value within +-SCORE_LIMIT (its scores may exceed 1)."""
    lo, hi = (-1.0, 1.0) if scoring == "cosine" else (-SCORE_LIMIT, SCORE_LIMIT)
    if math.isnan(t) or not lo <= t <= hi:
        what = ("a cosine in [-1, 1] (a reference-project (cos+1)/2 score t is cosine 2*t - 1)" if scoring == "cosine"
                else f"a {'re-ranked' if scoring == 'reranked' else 'verified'} score within +-{SCORE_LIMIT:g}")
        raise ThresholdError(f"threshold {t!r} is not {what}")


def scoring_of(record: Mapping[str, Any] | None) -> str:
    """What score a stored table was measured on: "verified" (a gallery that verifies by registration),
    "reranked" (one that re-ranks by local maps) or "cosine" (every record written before re-ranking)."""
    return str((record or {}).get("scoring") or "cosine")


def scoring_for(encoder: Any, gallery: Any = None) -> str:
    """The score a search answers with: "reranked" when the model has a local map and the gallery
    (None: one this model would build) holds its exemplars' maps, else "cosine"."""
    if not getattr(encoder, "has_local", False):
        return "cosine"
    if gallery is not None and getattr(gallery, "verifies", False):
        return "verified"
    return "reranked" if gallery is None or getattr(gallery, "reranks", False) else "cosine"


def check_fingerprint(record: Mapping[str, Any] | None, where: str, gallery: str, fingerprint: str | None) -> None:
    """Refuse a stored table measured with another model than the one in use, naming both."""
    enc = (record or {}).get("encoder") or {}
    if fingerprint and enc.get("fingerprint") and enc["fingerprint"] != fingerprint:
        raise ThresholdError(
            f"{gallery}: its {where} table was measured with model {enc.get('name', '?')!r} (fingerprint "
            f"{enc['fingerprint']}), but the model in use has fingerprint {fingerprint}; thresholds of one model mean "
            "nothing for another: re-measure it (`indexer calibrate` for the self-calibration, `retriever calibrate` "
            "for yours)")


def _open_rows(record: Mapping[str, Any], where: str, gallery: str, fingerprint: str | None) -> list[OpenSetRow]:
    from .openset import DecisionRule

    check_fingerprint(record, where, gallery, fingerprint)
    try:
        rule = DecisionRule.from_value(record.get("rule"))
    except ValueError as exc:
        raise ThresholdError(f"{gallery}: {where} has a bad decision rule ({exc})") from None
    source = f"{gallery} {where}"
    if record.get("source"):
        source += f" ({record['source']})"
    out = []
    for r in record.get("table") or []:
        if not isinstance(r, Mapping):
            raise ThresholdError(f"{gallery}: {where} row {r!r} is not a mapping")
        if r.get("threshold") is None or r.get("measurable") is False:
            continue
        try:
            fpir, thr = float(r["fpir"]), float(r["threshold"])
            d = float("nan") if r.get("dir") is None else float(r["dir"])
            mf = float("nan") if r.get("measured_fpir") is None else float(r["measured_fpir"])
        except (KeyError, TypeError, ValueError):
            raise ThresholdError(f"{gallery}: {where} row {dict(r)!r} lacks numeric fpir/threshold") from None
        if not 0.0 < fpir < 1.0 or not math.isfinite(thr):
            raise ThresholdError(f"{gallery}: {where} row {dict(r)!r}: FPIR must be in (0, 1), threshold finite")
        out.append(OpenSetRow(fpir, thr, d, mf, DecisionRule.from_value(r.get("rule")) if r.get("rule") else rule,
                              str(r.get("source") or source), str(r.get("origin") or where)))
    return out


@dataclass(frozen=True)
class OpenSetTable:
    """The open-set rows in force for one gallery, each with its provenance.

    Built by :meth:`resolve` from, in order of precedence, the user's calibration (measured on
    labelled captures by ``retriever calibrate``) and the gallery's self-calibration (simulated
    captures of its own exemplars, leave one type out); a row a source cannot measure comes from
    the next one.  Empty when neither measured anything (the caller falls back to the model's
    pair table and says so).
    """

    rows: tuple[OpenSetRow, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(sorted(self.rows, key=lambda r: r.fpir)))

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def resolve(cls, calibration: Mapping[str, Any] | None, self_calibration: Mapping[str, Any] | None,
                gallery: str = "gallery", fingerprint: str | None = None) -> "OpenSetTable":
        rows: dict[float, OpenSetRow] = {}
        notes = []
        user = (calibration or {}).get("open_set") if isinstance(calibration, Mapping) else None
        for record, where in ((user, "user calibration"), (self_calibration, "self-calibration")):
            if not record:
                continue
            if record.get("status") not in (None, "measured"):
                notes.append(f"{where}: {record.get('reason') or record.get('status')}")
            for r in _open_rows(record, where, gallery, fingerprint):
                rows.setdefault(round(r.fpir, 12), r)
        return cls(tuple(rows.values()), tuple(notes))

    @property
    def fpir_range(self) -> tuple[float, float]:
        return self.rows[0].fpir, self.rows[-1].fpir

    def row_for(self, fpir: float) -> OpenSetRow:
        """The row honouring a target FPIR: exact if measured, else the nearest stricter row below it.
        Targets below the smallest measured FPIR are refused: the table cannot vouch for them."""
        fpir = float(fpir)
        if not 0.0 < fpir < 1.0 or math.isnan(fpir):
            raise ThresholdError(f"target FPIR must be in (0, 1), got {fpir!r}")
        if not self.rows:
            raise NoThresholdTableError("no measured open-set table")
        below = [r for r in self.rows if r.fpir <= fpir * (1 + 1e-9)]
        if not below:
            lo, hi = self.fpir_range
            raise ThresholdError(
                f"target FPIR {fpir:g} is below the measured range of this gallery's open-set table (FPIR {lo:g} .. "
                f"{hi:g}: a row needs at least 1/FPIR non-mated captures); ask for FPIR >= {lo:g}, calibrate with more "
                "captures (`retriever calibrate` with an unknown/ folder), or pass an explicit --threshold")
        return below[-1]

    def to_markdown(self, selected_fpir: float | None = None) -> str:
        chosen = None
        if selected_fpir is not None and self.rows:
            try:
                chosen = self.row_for(selected_fpir)
            except ThresholdError:
                chosen = None
        lines = ["Open-set table (FPIR: share of documents of unregistered types accepted; DIR: share of registered "
                 "ones given their own type and accepted)", "",
                 "| FPIR | DIR | threshold | measured FPIR | rule | from |", "|---:|---:|---:|---:|---|---|"]
        sources: dict[str, str] = {}
        for r in self.rows:
            mark = " (in use)" if chosen is r else ""
            d = "-" if math.isnan(r.dir) else f"{r.dir:.4f}"
            mf = "-" if math.isnan(r.measured_fpir) else f"{r.measured_fpir:.4f}"
            lines.append(f"| {r.fpir:g}{mark} | {d} | {r.threshold:.4f} | {mf} | {r.rule.name} | {r.origin} |")
            sources.setdefault(r.source, r.origin)
        lines += [""] + [f"{o}: {src}" for src, o in sources.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class OperatingPoint:
    """What decides accept/reject: a rule, a threshold on its decision score, and why.

    ``kind``: "fpir" (open-set table of the gallery), "fpr" (pair table), "threshold" (explicit
    cosine), or "fpir-fallback" (FPIR asked but the gallery has no measured row: the model's pair
    table row at FPR = FPIR, which on a register of look-alike types lets more unknowns through).
    """

    kind: str
    target: float | None
    threshold: float
    rule: Any  # retriever.openset.DecisionRule
    origin: str
    expected_dir: float | None = None
    short: str = ""  # where the threshold comes from, in a few words

    def summary(self) -> str:
        """One short line: the target, the rule with its threshold, and the table it comes from."""
        rule = self.rule.describe(self.threshold).split(" (margin")[0]
        if self.kind == "threshold":
            return f"explicit threshold: {rule}"
        what = "pair FPR" if self.kind == "fpr" else "FPIR"
        return f"{what} {self.target:g}: {rule} ({self.short or self.origin})"

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"explicit threshold: {self.rule.describe(self.threshold)}"
        what = {"fpir": f"FPIR {self.target:g}", "fpr": f"pair FPR {self.target:g}",
                "fpir-fallback": f"FPIR {self.target:g} (fallback)"}[self.kind]
        return f"{what}: {self.rule.describe(self.threshold)}; {self.origin}"

    @property
    def label(self) -> str:
        """Short form for result rows: ``fpir=0.01``, ``fpr=0.001``, ``threshold``."""
        if self.kind == "threshold":
            return "threshold"
        return f"{'fpr' if self.kind == 'fpr' else 'fpir'}={self.target:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "threshold": self.threshold, "rule": self.rule.name,
                "rule_weights": self.rule.to_dict(), "origin": self.origin, "expected_dir": self.expected_dir,
                "short": self.short}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OperatingPoint":
        """Inverse of :meth:`to_dict` (a Ray actor gets the driver's operating point this way)."""
        from .openset import DecisionRule

        try:
            return cls(str(d["kind"]), None if d.get("target") is None else float(d["target"]), float(d["threshold"]),
                       DecisionRule.from_value(d["rule_weights"]), str(d.get("origin", "")), d.get("expected_dir"),
                       str(d.get("short", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ThresholdError(f"cannot read an operating point from {dict(d)!r} ({exc})") from None


def choose_operating_point(contract: ModelContract | None, calibration: Mapping[str, Any] | None,
                           self_calibration: Mapping[str, Any] | None, n_labels: int, fpir: float | None = None,
                           fpr: float | None = None, threshold: float | None = None, gallery: str = "gallery",
                           fingerprint: str | None = None, scoring: str = "cosine") -> OperatingPoint:
    """The one place that turns what a caller asked for into a rule and a threshold.

    Precedence: an explicit cosine ``threshold``; else a pair ``fpr`` (user calibration's pair table,
    else the model's); else ``fpir`` (default :data:`DEFAULT_FPIR`) from the gallery's open-set table
    (user calibration rows, then self-calibration rows); with no measured open-set row, the model's
    pair-table row at FPR = FPIR, said so in ``origin``.  ``scoring``: the score the gallery answers
    with ("reranked" when it re-ranks by local maps); tables measured on the other score are set aside
    (they would put the threshold in the wrong place), said so in ``origin`` when that leaves none.
    """
    from .openset import RULES

    if scoring not in SCORINGS:
        raise ThresholdError(f"unknown scoring {scoring!r}; one of {', '.join(SCORINGS)}")
    cosine = RULES["cosine"]
    check_fingerprint(calibration, "user calibration", gallery, fingerprint)
    stale = [where for rec, where in ((calibration, "user calibration"), (self_calibration, "self-calibration"))
             if rec and (rec.get("table") or rec.get("open_set")) and scoring_of(rec) != scoring]
    if calibration and scoring_of(calibration) != scoring:
        calibration = None
    if self_calibration and scoring_of(self_calibration) != scoring:
        self_calibration = None
    given = [n for n, v in (("fpir", fpir), ("fpr", fpr), ("threshold", threshold)) if v is not None]
    if len(given) > 1:
        raise ThresholdError(f"give one of FPIR, FPR or threshold, not {' and '.join(given)}")
    if threshold is not None:
        t = float(threshold)
        check_explicit_threshold(t, scoring)
        return OperatingPoint("threshold", None, t, cosine, "explicit threshold", short="explicit")
    if fpr is not None:
        table = ThresholdTable.resolve(contract, calibration, gallery=gallery, scoring=scoring)
        row = table.row_for(fpr)
        return OperatingPoint("fpr", float(fpr), float(row.threshold), cosine,
                              f"pair-table row FPR {row.fpr:g} of {table.source}",
                              None if math.isnan(row.tpr) else row.tpr,
                              short="gallery's user calibration" if "calibration" in table.source else "model's pair table")
    target = DEFAULT_FPIR if fpir is None else float(fpir)
    ot = OpenSetTable.resolve(calibration, self_calibration, gallery=gallery, fingerprint=fingerprint)
    if ot and n_labels >= 2:
        row = ot.row_for(target)
        rule = row.rule if (n_labels >= 3 or not row.rule.uses_margin) else cosine
        if rule is not row.rule:  # cannot happen for tables this project writes (< 3 labels -> cosine)
            raise ThresholdError(f"{gallery}: its open-set table uses rule {row.rule.name!r}, which needs >= 3 labels; "
                                 f"the gallery has {n_labels}: re-calibrate")
        return OperatingPoint("fpir", target, row.threshold, rule, f"FPIR {row.fpir:g} row of the {row.origin}",
                              None if math.isnan(row.dir) else row.dir, short=f"gallery's {row.origin}")
    notes = list(ot.notes) + [f"its {w} was measured on other scores than the {scoring} scores it now answers with: "
                              "measure it again" for w in stale]
    why = ("the gallery has a single label, so FPIR cannot be measured (no type to leave out)" if n_labels < 2 else
           "the gallery has no measured open-set table" + (f" ({'; '.join(notes)})" if notes else ""))
    table = ThresholdTable.resolve(contract, calibration, gallery=gallery, scoring=scoring)
    row = table.row_for(target)
    return OperatingPoint("fpir-fallback", target, float(row.threshold), cosine,
                          f"{why}; using the pair-table row FPR {row.fpr:g} of {table.source} instead: on a register of "
                          "look-alike types it lets more unknown documents through than the FPIR asked",
                          None if math.isnan(row.tpr) else row.tpr,
                          short=f"FALLBACK to the model's pair-table row FPR {row.fpr:g}: {why}")
