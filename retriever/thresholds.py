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

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from encoders.contract import ModelContract, ThresholdRow

__all__ = [
    "NoThresholdTableError", "ThresholdError", "ThresholdTable", "from_reference_score", "to_reference_score",
]


class ThresholdError(ValueError):
    """A threshold could not be chosen as asked (target outside the measured range, bad table)."""


class NoThresholdTableError(ThresholdError):
    """Neither the model nor the gallery carries a measured threshold table."""


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
    if not (-1.0 - 1e-6 <= thr <= 1.0 + 1e-6 or thr == float("-inf")):
        raise ThresholdError(f"{where}: threshold {thr!r} is not a cosine in [-1, 1] "
                             "(a (cos+1)/2 reference score? convert with from_reference_score)")
    return ThresholdRow(fpr=fpr, tpr=tpr, threshold=thr)


@dataclass(frozen=True)
class ThresholdTable:
    """Measured (FPR, TPR, cosine threshold) rows, sorted by FPR, and where they come from."""

    rows: tuple[ThresholdRow, ...]
    source: str = ""

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
    def from_contract(cls, contract: ModelContract) -> "ThresholdTable":
        """The model's generic table (measured at export on the training project's eval data)."""
        where = f"model {contract.name!r} v{contract.version}"
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
                gallery: str = "gallery") -> "ThresholdTable":
        """The table in force: the gallery's calibration if it has rows, else the model's table."""
        if calibration:
            table = cls.from_calibration(calibration, gallery)
            if table.rows:
                return table
        if contract is None:
            return cls((), "no model")
        return cls.from_contract(contract)

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
        return (f"no measured threshold table for {self.source or 'this model'}; pass an explicit "
                "cosine threshold (threshold=... in Python, --threshold on the command line), or measure "
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
        lines = [
            f"Threshold table: {self.source or 'unnamed'}",
            "",
            "| FPR | TPR | threshold (cosine) | reference score (cos+1)/2 |",
            "|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            tpr = "-" if math.isnan(r.tpr) else f"{r.tpr:.4f}"
            mark = " (in use)" if chosen is r else ""
            lines.append(f"| {r.fpr:g}{mark} | {tpr} | {r.threshold:.4f} | {to_reference_score(r.threshold):.4f} |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source,
                "rows": [{"fpr": r.fpr, "tpr": None if math.isnan(r.tpr) else r.tpr, "threshold": r.threshold}
                         for r in self.rows]}
