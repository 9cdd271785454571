"""Exact metrics on hand-checkable score sets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from retriever import metrics as M


def _unit(angles_deg):
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# --- thresholds ------------------------------------------------------------------------------------
def test_known_roc_points_on_a_ladder():
    neg = np.arange(100, dtype=np.float32) / 100  # 0.00 .. 0.99
    pos = np.array([0.995, 0.985, 0.95, 0.5], dtype=np.float32)
    rows = M.threshold_table(pos, neg, fprs=(1e-3, 1e-2, 1e-1))
    assert rows[0] == {"fpr": 1e-3, "tpr": None, "threshold": None, "measured_fpr": None, "measurable": False}
    # 1e-2: one negative (0.99) may pass -> threshold just above 0.98
    r = rows[1]
    assert r["measurable"] and r["measured_fpr"] == pytest.approx(0.01)
    assert np.float32(0.98) < r["threshold"] <= np.nextafter(np.float32(0.98), np.float32(1))
    assert r["tpr"] == pytest.approx(2 / 4)  # 0.995 and 0.985
    # 1e-1: ten negatives (0.90..0.99) pass -> threshold just above 0.89; 0.95, 0.985, 0.995 pass
    r = rows[2]
    assert r["measured_fpr"] == pytest.approx(0.1)
    assert r["threshold"] == pytest.approx(0.89, abs=1e-6) and r["threshold"] > np.float32(0.89)
    assert r["tpr"] == pytest.approx(3 / 4)


def test_ties_never_push_measured_fpr_over_target():
    # 15 negatives tied at 0.9: allowing 10 of 100 would cut the tie, so none of them may pass
    neg = np.array([0.1] * 85 + [0.9] * 15, dtype=np.float32)
    pos = np.array([0.9, 0.95], dtype=np.float32)
    (row,) = M.threshold_table(pos, neg, fprs=(0.1,))
    assert row["measured_fpr"] == 0.0
    assert row["threshold"] > np.float32(0.9)
    assert row["tpr"] == 0.5  # the positive tied with the negatives is rejected too
    # exactly 10 tied at the top: they may all pass, threshold drops to just above 0.1
    neg = np.array([0.1] * 90 + [0.9] * 10, dtype=np.float32)
    (row,) = M.threshold_table(pos, neg, fprs=(0.1,))
    assert row["measured_fpr"] == pytest.approx(0.1)
    assert np.float32(0.1) < row["threshold"] < np.float32(0.9)
    assert row["tpr"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_threshold_is_smallest_value_keeping_fpr_within_target(seed):
    rng = np.random.default_rng(seed)
    neg = np.round(rng.normal(0.2, 0.2, 5000), 2).astype(np.float32)  # heavy ties
    pos = np.round(rng.normal(0.7, 0.2, 300), 2).astype(np.float32)
    for row in M.threshold_table(pos, neg, fprs=(1e-3, 1e-2, 1e-1)):
        t = np.float32(row["threshold"])
        assert row["measured_fpr"] == np.mean(neg >= t) <= row["fpr"]
        assert row["tpr"] == np.mean(pos >= t)
        below = np.nextafter(t, np.float32(-np.inf))
        assert np.mean(neg >= below) > row["fpr"]  # one ulp lower would break the target


def test_measurability_boundary():
    assert M.negatives_needed(1e-4) == 10_000 and M.negatives_needed(1e-1) == 10
    neg = np.linspace(-1, 1, 9_999).astype(np.float32)
    assert not M.threshold_table([1.0], neg, fprs=(1e-4,))[0]["measurable"]
    neg = np.linspace(-1, 1, 10_000).astype(np.float32)
    row = M.threshold_table([1.0], neg, fprs=(1e-4,))[0]
    assert row["measurable"] and row["measured_fpr"] == pytest.approx(1e-4)


def test_no_positives_is_an_error():
    with pytest.raises(ValueError, match="no positive"):
        M.threshold_table([], [0.1] * 10)


# --- AUROC -----------------------------------------------------------------------------------------
def test_auroc_separable_identical_and_ties():
    assert M.auroc([0.9, 0.8], [0.1, 0.2, 0.3]) == 1.0
    assert M.auroc([0.1, 0.2], [0.8, 0.9]) == 0.0
    same = np.random.default_rng(0).normal(size=500)
    assert M.auroc(same, same) == pytest.approx(0.5)
    assert M.auroc([0.5] * 3, [0.5] * 7) == 0.5
    assert M.auroc([0.5], [0.5, 0.4]) == 0.75  # one win, one tie


def test_auroc_matches_brute_force():
    rng = np.random.default_rng(1)
    pos = np.round(rng.normal(0.5, 0.3, 200), 1)
    neg = np.round(rng.normal(0.0, 0.3, 300), 1)
    diff = pos[:, None] - neg[None, :]
    brute = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert M.auroc(pos, neg) == pytest.approx(brute, abs=1e-15)


# --- scoring a register ----------------------------------------------------------------------------
def test_pair_scores_uses_best_exemplar_and_blocks_do_not_change_results():
    reg = _unit([0, 10, 90, 180])
    reg_labels = ["a", "a", "b", "c"]  # 'a' has two exemplars
    q = _unit([8, 85, 175, 45])
    ql = ["a", "b", "c", "a"]
    s = M.pair_scores(q, ql, reg, reg_labels)
    assert list(s.types) == ["a", "b", "c"] and s.n_exemplars == 4
    assert s.pos[0] == pytest.approx(math.cos(math.radians(2)), abs=1e-6)  # nearer 'a' exemplar (10 deg)
    assert s.pos[3] == pytest.approx(math.cos(math.radians(35)), abs=1e-6)
    assert len(s.neg) == 4 * 2 and np.all(np.diff(s.neg) >= 0)
    small = M.pair_scores(q, ql, reg, reg_labels, max_block=1)
    np.testing.assert_array_equal(small.neg, s.neg)
    np.testing.assert_array_equal(small.pos, s.pos)
    assert s.known_correct.tolist() == [True, True, True, True]


def test_pair_scores_rejects_unregistered_query_labels():
    with pytest.raises(ValueError, match=r"not in the register: \['z'\]"):
        M.pair_scores(_unit([0]), ["z"], _unit([0, 90]), ["a", "b"])


def test_identification_on_toy_register():
    reg = _unit([0, 90, 180])
    labels = ["a", "b", "c"]
    # known: 'a' at 10 deg (correct, cos 10 = 0.985); 'b' at 140 deg: top-1 is c at cos 40 = 0.766
    # (wrong); 'c' exact.  unknown: 45 deg (best cos 45 = 0.707) and 270 deg (best cos 90 = 0)
    q = _unit([10, 140, 180])
    unknown = _unit([45, 270])
    s = M.pair_scores(q, ["a", "b", "c"], reg, labels, unknown_feats=unknown)
    assert M.top1_accuracy(s) == pytest.approx(2 / 3)
    ident = M.identification(s, [0.99, 0.75, 0.7, -0.5, None])
    assert ident["register_size"] == {"types": 3, "exemplars": 3}
    hi, mid, low, lowest, none = ident["rows"]
    assert hi["correct_accept_rate"] == pytest.approx(1 / 3)   # only the exact 'c'
    assert hi["wrong_accept_rate"] == 0.0 and hi["unknown_false_accept_rate"] == 0.0
    assert mid["correct_accept_rate"] == pytest.approx(2 / 3)  # cos 10 passes too
    assert mid["wrong_accept_rate"] == pytest.approx(1 / 3)    # 0.766 >= 0.75: 'b' accepted as 'c'
    assert mid["unknown_false_accept_rate"] == 0.0             # 0.707 < 0.75
    assert low["unknown_false_accept_rate"] == 0.5             # 0.707 >= 0.7
    assert lowest["unknown_false_accept_rate"] == 1.0
    assert none["correct_accept_rate"] is None
    os_rows = M.open_set(s.unknown_best, [0.7, None])
    assert os_rows[0]["false_accepts"] == 1 and os_rows[0]["false_accept_rate"] == 0.5
    assert os_rows[1]["false_accept_rate"] is None


def test_unknown_as_negatives_adds_pairs():
    reg, q, unk = _unit([0, 90]), _unit([5]), _unit([45, 200, 300])
    assert len(M.pair_scores(q, ["a"], reg, ["a", "b"], unk).neg) == 1
    assert len(M.pair_scores(q, ["a"], reg, ["a", "b"], unk, unknown_as_negatives=True).neg) == 1 + 3 * 2


def test_evaluate_features_and_markdown():
    rng = np.random.default_rng(0)
    n_types = 30
    reg = rng.normal(size=(n_types, 8)).astype(np.float32)
    reg /= np.linalg.norm(reg, axis=1, keepdims=True)
    labels = [f"t{i:02d}" for i in range(n_types)]
    q = np.repeat(reg, 4, axis=0) + 0.15 * rng.normal(size=(n_types * 4, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    res = M.evaluate_features(q, np.repeat(labels, 4), reg, labels, unknown_feats=q[:5] * -1)
    assert res["n_pos"] == 120 and res["n_neg"] == 120 * 29
    assert [r["measurable"] for r in res["table"]] == [False, False, True, True, True]
    assert 0.9 < res["auroc"] <= 1.0 and res["top1_accuracy"] > 0.9
    assert len(res["open_set"]) == 5 and res["identification"]["n_unknown_queries"] == 5
    md = M.markdown_table(res)
    assert md.splitlines()[0] == "| FPR | 1e-5 | 1e-4 | 1e-3 | 1e-2 | 1e-1 |"
    assert "threshold ((cos+1)/2)" in md and "FPR 1e-5 needs >= 100,000" in md
    r = res["table"][-1]
    assert f"{(r['threshold'] + 1) / 2:.4f}" in md
    assert "register of 30 types" in M.markdown_identification(res)


def test_roc_points_are_exact_and_monotone():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 400), rng.normal(0, 1, 1000)
    roc = M.roc_points(pos, neg, n_points=50)
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    for f, t, th in zip(roc["fpr"], roc["tpr"], roc["threshold"]):
        assert f == np.mean(neg >= th) and t == np.mean(pos >= th)


def test_negatives_at_or_above_names_the_confused_types():
    """Two sibling types (a-0, a-1) share a direction; b-0 is apart.  The only negatives at a high
    threshold are the siblings confused with each other, highest first, never a query's own type."""
    e = np.eye(3, dtype=np.float32)
    sib = np.array([0.9, 0.436, 0], np.float32)
    sib /= np.linalg.norm(sib)
    reg = np.stack([e[0], sib, e[2]])
    q = np.stack([e[0], sib, e[2]])
    labels = ["a-0", "a-1", "b-0"]
    out = M.negatives_at_or_above(q, labels, reg, labels, threshold=0.5)
    assert [(i, t) for i, t, _ in out] == [(0, "a-1"), (1, "a-0")]
    assert all(s >= 0.5 for *_, s in out) and out[0][2] >= out[1][2]
    assert M.negatives_at_or_above(q, labels, reg, labels, threshold=0.99) == []
    # blocking does not change the answer
    assert M.negatives_at_or_above(q, labels, reg, labels, threshold=0.5, max_block=1) == out
