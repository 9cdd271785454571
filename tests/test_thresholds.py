"""Threshold selection from measured tables (model contract and gallery calibration)."""
from __future__ import annotations

import dataclasses

import pytest

from encoders.contract import ModelContract, ThresholdRow
from retriever.thresholds import (NoThresholdTableError, ThresholdError, ThresholdTable, from_reference_score,
                                  to_reference_score)

ROWS = (
    ThresholdRow(fpr=1e-1, tpr=0.99, threshold=0.30),
    ThresholdRow(fpr=1e-4, tpr=0.80, threshold=0.70),
    ThresholdRow(fpr=1e-3, tpr=0.90, threshold=0.60),
    ThresholdRow(fpr=1e-2, tpr=0.95, threshold=0.45),
)


def contract(rows=ROWS) -> ModelContract:
    return ModelContract(name="m", threshold_table=tuple(rows), threshold_source="synthetic eval")


def test_exact_row_is_used():
    t = ThresholdTable.from_contract(contract())
    assert t.threshold_for(1e-3) == 0.60
    assert t.threshold_for(0.01) == 0.45
    assert [r.fpr for r in t.rows] == sorted(r.fpr for r in ROWS)


def test_between_rows_takes_the_conservative_row():
    t = ThresholdTable.from_contract(contract())
    # 5e-3 lies between the 1e-3 and 1e-2 rows: the 1e-3 row (stricter threshold) honours it.
    assert t.threshold_for(5e-3) == 0.60
    assert t.row_for(5e-3).fpr == 1e-3
    # Above the largest row: the largest row, which still honours the target.
    assert t.threshold_for(0.5) == 0.30


def test_below_measured_range_is_an_error_naming_the_range():
    t = ThresholdTable.from_contract(contract())
    with pytest.raises(ThresholdError) as exc:
        t.threshold_for(1e-6)
    msg = str(exc.value)
    assert "0.0001" in msg and "0.1" in msg and "1e-06" in msg


def test_bad_target_fpr_is_an_error():
    t = ThresholdTable.from_contract(contract())
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ThresholdError):
            t.threshold_for(bad)


def test_no_table_is_an_error_suggesting_threshold_or_calibrate():
    t = ThresholdTable.from_contract(contract(rows=()))
    assert not t
    with pytest.raises(NoThresholdTableError) as exc:
        t.threshold_for(1e-2)
    assert "threshold" in str(exc.value) and "retriever calibrate" in str(exc.value)
    assert "retriever calibrate" in t.to_markdown()


def test_gallery_calibration_overrides_model_table():
    calib = {"threshold_table": [{"fpr": 1e-2, "tpr": 0.9, "threshold": 0.8},
                                 {"fpr": 1e-3, "tpr": 0.7, "threshold": 0.9}],
             "source": "my documents"}
    t = ThresholdTable.resolve(contract(), calib, gallery="g1")
    assert t.threshold_for(1e-2) == 0.8
    assert "g1 calibration" in t.source and "my documents" in t.source
    # No calibration: the model's table.
    assert ThresholdTable.resolve(contract(), None).threshold_for(1e-2) == 0.45
    # Calibration rows given as triples are accepted too.
    t2 = ThresholdTable.from_calibration({"rows": [[1e-2, 0.9, 0.5]]})
    assert t2.threshold_for(1e-2) == 0.5


def test_calibration_without_rows_is_an_error():
    with pytest.raises(ThresholdError, match="no threshold table"):
        ThresholdTable.from_calibration({"source": "x"}, gallery="g")


def test_a_threshold_that_is_no_score_is_rejected_and_a_reranked_one_kept():
    with pytest.raises(ThresholdError, match="not a score"):
        ThresholdTable.from_rows([{"fpr": 0.01, "tpr": 0.9, "threshold": 12.0}])
    t = ThresholdTable.from_rows([{"fpr": 0.01, "tpr": 0.9, "threshold": 1.3}])  # re-ranked scores exceed 1
    assert t.row_for(0.01).threshold == 1.3


def test_markdown_has_rows_and_reference_scale():
    t = ThresholdTable.from_contract(contract())
    md = t.to_markdown(selected_fpr=1e-2)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + len(ROWS)
    assert "(cos+1)/2" in lines[0]
    row = next(ln for ln in lines if ln.startswith("| 0.01"))
    assert "(in use)" in row and "0.4500" in row and "0.7250" in row  # (0.45+1)/2


def test_reference_score_mapping_round_trips():
    assert to_reference_score(1.0) == 1.0
    assert to_reference_score(-1.0) == 0.0
    assert to_reference_score(0.254) == pytest.approx(0.627)
    assert from_reference_score(to_reference_score(0.37)) == pytest.approx(0.37)


def test_table_is_immutable_and_sorted():
    t = ThresholdTable.from_rows(list(reversed(ROWS)))
    assert [r.fpr for r in t.rows] == [1e-4, 1e-3, 1e-2, 1e-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.source = "x"  # type: ignore[misc]


def test_unmeasurable_calibration_rows_are_skipped():
    # retriever.metrics.threshold_table marks targets with too few negatives as unmeasurable.
    calib = {"threshold_table": [
        {"fpr": 1e-5, "tpr": None, "threshold": None, "measured_fpr": None, "measurable": False},
        {"fpr": 1e-2, "tpr": 0.9, "threshold": 0.5, "measured_fpr": 0.008, "measurable": True}]}
    t = ThresholdTable.from_calibration(calib)
    assert [r.fpr for r in t.rows] == [1e-2]
    with pytest.raises(ThresholdError, match="below the measured range"):
        t.threshold_for(1e-5)
