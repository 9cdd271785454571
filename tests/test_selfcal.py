"""Open-set operating points: gallery self-calibration, precedence of tables, --fpir, and the end-to-end
promise that unregistered look-alikes are rejected at the default operating point on a dense register."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.gallery import Gallery
from indexer.selfcal import Settings, captures_per_type
from retriever import Retriever
from retriever import openset as O
from retriever.thresholds import OpenSetTable, ThresholdError, choose_operating_point
from synth_docs import capture, type_image, write



def _register(root: Path, types) -> Path:
    for t in types:
        write(root / f"type{t}" / "specimen.png", type_image(t))
    return root


def _manifest(g: Gallery) -> dict:
    return json.loads((g.path / "manifest.json").read_text())


def _measurable(rec: dict) -> list[float]:
    return [r["fpir"] for r in rec["table"] if r["measurable"]]


# --------------------------------------------------------------------------------------------------
# the decision rule and the DIR / FPIR table
# --------------------------------------------------------------------------------------------------
def test_dir_table_is_exact_and_margin_separates_a_look_alike():
    # two mated captures, their type clearly ahead of the runner-up; four non-mated ones, two of them
    # look-alikes sitting between two registered types (high cosine, tiny margin)
    mated = O.scores_from_ranked([[("a", 0.80), ("b", 0.30)], [("b", 0.75), ("a", 0.50)]], ["a", "b"])
    unk = O.scores_from_ranked([[("a", 0.85), ("b", 0.83)], [("b", 0.84), ("a", 0.80)], [("a", 0.5), ("b", 0.45)],
                                [("a", 0.4), ("b", 0.1)]], None)
    both = O.OpenSetScores.concat([mated, unk])
    cos = O.dir_table(both, O.RULES["cosine"], fpirs=(0.25,))[0]
    mar = O.dir_table(both, O.RULES["cosine+margin"], fpirs=(0.25,))[0]
    # one of four may pass: on the cosine the threshold sits above the second look-alike (0.84), over
    # both mated captures; with the margin the look-alikes score 0.87 / 0.88, the mated ones 1.3 / 1.0
    assert cos["measured_fpir"] == 0.25 and cos["threshold"] > 0.84 and cos["dir"] == 0.0
    assert mar["measured_fpir"] == 0.25 and 0.87 < mar["threshold"] < 1.0 and mar["dir"] == 1.0
    assert O.dir_table(both, O.RULES["cosine"], fpirs=(0.2,))[0]["measurable"] is False  # 4 < 1/0.2


def test_leave_one_out_uses_the_ranking_without_the_own_type():
    s = O.scores_from_ranked([[("a", 0.9), ("b", 0.6), ("c", 0.5)], [("b", 0.7), ("a", 0.65), ("c", 0.1)]],
                             ["a", "a"], leave_own_out=True)
    assert list(s.known_correct) == [True, False]
    np.testing.assert_allclose(s.unknown_s1, [0.6, 0.7])
    np.testing.assert_allclose(s.unknown_s2, [0.5, 0.1])


def test_margins_are_between_distinct_labels(tiny, tmp_path):
    """Several exemplars of one type must not make a zero margin between the type and itself."""
    reg = _register(tmp_path / "reg", range(4))
    write(reg / "type0" / "second.png", capture(type_image(0), 5))
    g = Gallery.build(reg, tmp_path / "g", tiny, self_calibrate=False)
    res = Retriever(g, tiny, threshold=0.0, top_k=3).classify_one(type_image(0))
    assert res.label == "type0" and res.runner_up[0] != "type0" and res.margin > 0.0


# --------------------------------------------------------------------------------------------------
# self-calibration in the gallery
# --------------------------------------------------------------------------------------------------
def test_build_measures_a_table_and_writes_refresh_it(tiny, tmp_path):
    g = Gallery.build(_register(tmp_path / "reg", range(6)), tmp_path / "g", tiny, self_calibrate=True)
    rec = g.self_calibration
    per = captures_per_type(6, Settings())
    assert rec["status"] == "measured" and rec["types"] == 6 and rec["probes"] == 6 * per == len(g.probes())
    assert rec["rule"]["name"] == O.DEFAULT_RULE.name and rec["encoder"]["fingerprint"] == tiny.fingerprint
    assert (g.path / rec["probes_file"]).is_file()
    assert 1e-2 in _measurable(rec) and 1e-3 not in _measurable(rec)  # 240 leave-one-out probes: 1e-3 is n/a
    na = next(r for r in rec["table"] if r["fpir"] == 1e-3)
    assert na["threshold"] is None and na["dir"] is None
    for r in rec["table"]:
        if r["measurable"]:
            assert r["measured_fpir"] <= r["fpir"]

    g.add([_register(tmp_path / "more", [6])], force=True)  # a new type: probed, table re-measured
    rec2 = g.self_calibration
    assert rec2["types"] == rec2["types_probed"] == 7 and "type6" in set(g.probes().labels)
    assert rec2["probes_file"] != rec["probes_file"] and rec2["table"] != rec["table"]

    g.remove(labels=["type2"])  # its probes go, the table is re-measured without it
    rec3 = g.self_calibration
    assert "type2" not in set(g.probes().labels) and rec3["types"] == 6 and rec3["probes"] == rec2["probes"] - per

    from indexer.verify import verify

    assert verify(g, sample=0).ok
    g.compact()
    assert g.self_calibration["probes_file"] == rec3["probes_file"]  # same probes, re-scored
    g.rollback()  # the previous generation's table comes back with its index
    assert g.self_calibration["table"] == rec3["table"]
    (g.path / rec3["probes_file"]).write_bytes(b"not parquet")  # tampered: verify says so
    assert any("probes unreadable" in p for p in verify(g, sample=0).problems)


def test_a_self_calibrated_gallery_can_be_rebuilt_in_place(tiny, tmp_path):
    reg = _register(tmp_path / "reg", range(4))
    Gallery.build(reg, tmp_path / "g", tiny, self_calibrate=True)
    g = Gallery.build(reg, tmp_path / "g", tiny, self_calibrate=True, overwrite=True)  # its probes file is its own
    assert g.generation == 2 and g.self_calibration["status"] == "measured"


def test_a_two_type_register_uses_the_cosine_rule_and_one_type_cannot_be_measured(tiny, tmp_path):
    g2 = Gallery.build(_register(tmp_path / "r2", range(2)), tmp_path / "g2", tiny, self_calibrate=True)
    assert g2.self_calibration["rule"]["name"] == "cosine" and 1e-2 in _measurable(g2.self_calibration)
    g1 = Gallery.build(_register(tmp_path / "r1", [0]), tmp_path / "g1", tiny, self_calibrate=True)
    rec = g1.self_calibration
    assert rec["status"] == "not measurable" and "cannot be measured" in rec["reason"]
    assert all(r["threshold"] is None for r in rec["table"])
    with pytest.raises(ThresholdError):  # the tiny model has no pair table to fall back on
        Retriever(g1, tiny)


def test_single_type_falls_back_to_the_model_table_and_says_so(encoder, tmp_path):
    reg = tmp_path / "reg"
    write(reg / "only" / "specimen.png", type_image(3, size=256))
    g = Gallery.build(reg, tmp_path / "g", encoder, self_calibrate=True)
    r = Retriever(g, encoder)
    op = r.operating_point
    assert op.kind == "fpir-fallback" and op.rule.name == "cosine" and "single label" in op.origin
    table = (encoder.contract.local or encoder.contract).threshold_table  # the score the gallery answers with
    assert r.threshold == pytest.approx(table[3].threshold)  # the FPR 1e-2 row


def test_self_calibration_can_be_turned_on_later_and_off(tiny, tmp_path):
    g = Gallery.build(_register(tmp_path / "reg", range(5)), tmp_path / "g", tiny, self_calibrate=False)
    assert g.self_calibration == {"enabled": False} and len(g.probes()) == 0
    g.add([_register(tmp_path / "more", [5])], force=True)
    assert g.self_calibration == {"enabled": False}  # writes follow the gallery's record
    rec = g.set_self_calibration(True, Settings(min_probes=120))
    assert rec["status"] == "measured" and rec["types_probed"] == 6
    assert rec["settings"]["min_probes"] == 120 and rec["probes"] == 6 * captures_per_type(6, Settings(min_probes=120))
    g.set_self_calibration(False)
    assert not g.self_calibrated and _manifest(g)["self_calibration"] == {"enabled": False}


# --------------------------------------------------------------------------------------------------
# which table decides
# --------------------------------------------------------------------------------------------------
def _open_record(rows, origin_fp="fp-a", rule="cosine+margin", **extra):
    return {"status": "measured", "rule": O.RULES[rule].to_dict(), "encoder": {"name": "m", "fingerprint": origin_fp},
            "table": [{"fpir": f, "threshold": t, "dir": 0.5, "measured_fpir": f / 2, "measurable": True}
                      for f, t in rows], **extra}


def test_precedence_user_calibration_then_self_calibration_then_model(encoder):
    self_cal = _open_record([(1e-2, 0.70), (5e-2, 0.60)], origin_fp=encoder.fingerprint)
    user = {"encoder": {"fingerprint": encoder.fingerprint}, "table": [],
            "open_set": _open_record([(1e-2, 0.75)], origin_fp=encoder.fingerprint)}
    fp = encoder.fingerprint
    op = choose_operating_point(encoder.contract, user, self_cal, 10, fingerprint=fp)
    assert op.kind == "fpir" and op.threshold == 0.75 and "user calibration" in op.origin
    op = choose_operating_point(encoder.contract, user, self_cal, 10, fpir=5e-2, fingerprint=fp)
    assert op.threshold == 0.60 and "self-calibration" in op.origin  # a row the user's data did not measure
    op = choose_operating_point(encoder.contract, None, self_cal, 10, fpir=2e-2, fingerprint=fp)
    assert op.threshold == 0.70  # between rows: the stricter one below the target
    with pytest.raises(ThresholdError, match="below the measured range"):
        choose_operating_point(encoder.contract, None, self_cal, 10, fpir=1e-3, fingerprint=fp)
    op = choose_operating_point(encoder.contract, None, None, 10, fingerprint=fp)
    assert op.kind == "fpir-fallback" and "pair-table row FPR 0.01" in op.origin
    op = choose_operating_point(encoder.contract, user, self_cal, 10, fpr=1e-3, fingerprint=fp)
    assert op.kind == "fpr" and op.rule.name == "cosine"
    table = OpenSetTable.resolve(user, self_cal, fingerprint=fp)
    assert [(r.fpir, r.origin) for r in table.rows] == [(1e-2, "user calibration"), (5e-2, "self-calibration")]


def test_a_table_of_another_model_is_refused_with_both_fingerprints(encoder):
    self_cal = _open_record([(1e-2, 0.70)], origin_fp="0123abcd")
    with pytest.raises(ThresholdError) as exc:
        choose_operating_point(encoder.contract, None, self_cal, 10, fingerprint=encoder.fingerprint)
    assert "0123abcd" in str(exc.value) and encoder.fingerprint in str(exc.value)


def test_user_calibration_measures_open_set_and_merges_with_earlier_rows(tiny, tmp_path):
    from retriever.calibrate import calibrate_gallery

    g = Gallery.build(_register(tmp_path / "reg", range(6)), tmp_path / "g", tiny, self_calibrate=True)
    big = tmp_path / "big"
    for t in range(6):
        for k in range(20):
            write(big / f"type{t}" / f"{k}.jpg", capture(type_image(t), 50 * t + k))
    for u in range(40):
        write(big / "unknown" / f"u{u}.jpg", capture(type_image(700 + u), u))
    rec = calibrate_gallery(str(g.path), str(big), tiny)["open_set"]
    assert rec["n_known"] == 120 and rec["n_unknown"] == 40 and rec["n_leave_one_out"] == 120
    measured = {r["fpir"] for r in rec["table"] if r["measurable"]}
    assert 1e-2 in measured and 5e-3 not in measured  # 160 non-mated captures: 5e-3 needs 200
    small = tmp_path / "small"
    for t in range(6):
        write(small / f"type{t}" / "0.jpg", capture(type_image(t), 999 + t))
    rec2 = calibrate_gallery(str(g.path), str(small), tiny)["open_set"]
    assert 1e-2 in rec2["merged_rows"]  # 12 non-mated captures cannot measure 1e-2: the earlier row is kept
    kept = next(r for r in rec2["table"] if r["fpir"] == 1e-2)
    assert kept["measurable"] and kept["source"] == next(r for r in rec["table"] if r["fpir"] == 1e-2)["source"]
    op = Retriever(g.path, tiny, fpir=1e-2).operating_point
    assert "user calibration" in op.origin


# --------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------
def test_cli_fpir_moves_the_threshold_and_thresholds_shows_provenance(tiny_model_path, tmp_path):
    from click.testing import CliRunner

    from indexer.cli import cli as indexer_cli
    from retriever.cli import main

    reg = _register(tmp_path / "reg", range(6))
    runner = CliRunner()
    r = runner.invoke(indexer_cli, ["build", str(reg), "-o", str(tmp_path / "g"), "--model", str(tiny_model_path),
                                    "--self-calibrate"])
    assert r.exit_code == 0, r.output
    q = write(tmp_path / "q" / "a.png", capture(type_image(1), 3))

    def header(*extra: str) -> str:
        res = runner.invoke(main, ["classify", str(q), "-g", str(tmp_path / "g"), "--model", str(tiny_model_path),
                                   "--json", *extra])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout.strip().splitlines()[-1])

    strict, loose = header("--fpir", "0.01"), header("--fpir", "0.2")
    assert strict["rule"] == loose["rule"] == "cosine+margin"
    assert strict["operating_point"] == "fpir=0.01" and loose["operating_point"] == "fpir=0.2"
    assert loose["threshold"] < strict["threshold"]
    assert header()["threshold"] == strict["threshold"]  # the default is FPIR 0.01
    res = runner.invoke(main, ["thresholds", "-g", str(tmp_path / "g"), "--model", str(tiny_model_path),
                               "--fpir", "0.05"])
    assert res.exit_code == 0, res.output
    assert "| 0.05 (in use) |" in res.stdout and "self-calibration" in res.stdout and "Pair table" in res.stdout
    res = runner.invoke(main, ["classify", str(q), "-g", str(tmp_path / "g"), "--model", str(tiny_model_path),
                               "--fpir", "0.01", "--fpr", "0.01"])
    assert res.exit_code == 2


# --------------------------------------------------------------------------------------------------
# end to end: a dense register of look-alike types, the shipped model
# --------------------------------------------------------------------------------------------------
@pytest.mark.fonts
@pytest.mark.slow
def test_unregistered_look_alikes_are_rejected_at_the_default_operating_point(encoder, tmp_path):
    """Eight templates of one held-out family (every type alike) are registered; captures of six
    other templates of the same family are unregistered look-alikes.  The old default (pair FPR 1e-2
    of the model's table) accepts most of them; the gallery's own FPIR 1e-2 rejects them while still
    accepting captures of the registered types."""
    import cv2

    from encoders.capture import EVAL, simulate_capture
    from encoders.training.synth import render_document

    fam = "payslip"
    for i in range(8):
        write(tmp_path / "reg" / f"{fam}-{i}" / "specimen.png", render_document(fam, 1000 + i, 0))

    def cap(i: int, k: int) -> bytes:
        return simulate_capture(render_document(fam, 1000 + i, k, 0.5), np.random.default_rng(100 * k + i), EVAL)

    unknown = [cap(i, k) for i in range(8, 14) for k in (1, 2)]
    known = [(f"{fam}-{i}", cap(i, k)) for i in range(8) for k in (1, 2)]
    g = Gallery.build(tmp_path / "reg", tmp_path / "g", encoder, self_calibrate=True)
    assert cv2 is not None and g.self_calibration["status"] == "measured"

    def rates(r: Retriever) -> tuple[int, int]:
        ru, rk = r.classify(unknown), r.classify([b for _, b in known])
        return sum(x.accepted for x in ru), sum(x.accepted and x.label == lab for x, (lab, _) in zip(rk, known))

    default = Retriever(g, encoder)
    assert default.operating_point.kind == "fpir" and default.operating_point.target == 1e-2
    unk_acc, known_ok = rates(default)
    old_unk_acc, _ = rates(Retriever(g, encoder, fpr=1e-2))
    assert unk_acc <= 1 < 6 <= old_unk_acc, (unk_acc, old_unk_acc)
    assert known_ok >= 5, known_ok  # not by rejecting everything


def test_self_calibration_never_imports_the_training_stack(tiny_model_path, tmp_path):
    """Inference depends on numpy/opencv/onnxruntime/faiss/pyarrow only: the capture model used by the
    self-calibration lives in encoders/capture.py, not beside the trainer (run in a fresh interpreter)."""
    import subprocess
    import sys

    _register(tmp_path / "reg", range(3))
    code = ("import sys, encoders; from indexer.gallery import Gallery; from retriever import Retriever; "
            f"enc = encoders.load({str(tiny_model_path)!r}); "
            f"g = Gallery.build({str(tmp_path / 'reg')!r}, {str(tmp_path / 'g')!r}, enc, self_calibrate=True); "
            "assert g.self_calibration['status'] == 'measured'; Retriever(g, enc); "
            "print(sorted(m for m in ('torch', 'timm', 'albumentations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_self_calibration_names_the_look_alike_types_that_set_its_threshold(encoder, tmp_path, runner):
    """A register holding a copy of one type under another label: the copy and its original fill the
    top of the leave-one-out scores that the FPIR 0.01 threshold must clear, and the gallery says so
    (its record and `indexer stats`); a register of distinct types names no such pair so strongly."""
    from indexer.cli import cli as indexer_cli

    reg = _register(tmp_path / "reg", range(6))
    near_copy = type_image(0).copy()
    near_copy[:3, :3] = 0  # not byte-identical (identical files are one exemplar), the same page to the model
    write(reg / "copy-of-type0" / "specimen.png", near_copy)
    g = Gallery.build(reg, tmp_path / "g", encoder, self_calibrate=True, force=True)
    found = g.self_calibration["look_alikes"]
    assert {found[0]["type"], found[0]["taken_for"]} == {"type0", "copy-of-type0"}
    assert found[0]["probes"] >= found[0]["among"] // 3 and found[0]["of"] == g.self_calibration["leave_one_out"]
    out = runner.invoke(indexer_cli, ["stats", str(g.path)]).output
    assert "look-alikes" in out and "copy-of-type0" in out and "merge their labels" in out
    distinct = Gallery.build(_register(tmp_path / "reg2", range(6)), tmp_path / "g2", encoder, self_calibrate=True)
    assert all("copy" not in p["taken_for"] for p in distinct.self_calibration["look_alikes"])
