"""The ``retriever`` command line through click's CliRunner, on a real on-disk gallery."""
from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import cv2
import pytest

import encoders
from encoders.contract import ThresholdRow, write_contract
from retriever.cli import EXIT_INPUT_ERRORS, main
from test_retriever import LABELS, doc_image, noise_image, perturb



@pytest.fixture
def gallery_dir(tmp_path, tiny_model_path) -> Path:
    from indexer.gallery import Gallery

    reg = tmp_path / "register"
    for i, lab in enumerate(LABELS):
        (reg / lab).mkdir(parents=True)
        cv2.imwrite(str(reg / lab / "front.png"), doc_image(i))
    out = tmp_path / "gallery"
    Gallery.build(reg, out, encoders.load(tiny_model_path), label_mode="folder")
    return out


@pytest.fixture
def queries(tmp_path) -> Path:
    """queries/: near-copies of invoice and passport, an unrelated noise image, and a nested receipt."""
    q = tmp_path / "queries"
    (q / "sub").mkdir(parents=True)
    cv2.imwrite(str(q / "a_invoice.png"), perturb(doc_image(0), seed=11))
    cv2.imwrite(str(q / "b_passport.jpg"), perturb(doc_image(1), seed=12))
    cv2.imwrite(str(q / "c_noise.png"), noise_image())
    cv2.imwrite(str(q / "sub" / "d_receipt.png"), perturb(doc_image(2), seed=13))
    (q / "readme.txt").write_text("not an image, skipped when scanning the directory")
    return q


def test_classify_table_output(runner, gallery_dir, queries, tiny_model_path):
    res = runner.invoke(main, ["classify", str(queries), "--gallery", str(gallery_dir), "--threshold", "0.99",
                               "--model", str(tiny_model_path)])
    assert res.exit_code == 0, res.output + res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["path", "label", "score", "margin", "decision"]
    rows = {Path(ln.split()[0]).name: ln.split() for ln in lines[1:]}
    assert set(rows) == {"a_invoice.png", "b_passport.jpg", "c_noise.png", "d_receipt.png"}
    assert rows["a_invoice.png"][1:2] == ["invoice"] and "ACCEPT" in rows["a_invoice.png"]
    assert rows["d_receipt.png"][1] == "receipt" and "ACCEPT" in rows["d_receipt.png"]
    assert "REJECT" in rows["c_noise.png"]
    assert "accept iff cosine >= 0.9900" in res.stderr


def test_classify_json_lines(runner, gallery_dir, queries, tiny_model_path):
    res = runner.invoke(main, ["classify", str(queries / "a_invoice.png"), str(queries / "b_passport.jpg"),
                               "-g", str(gallery_dir), "--threshold", "0.5", "--top-k", "2", "--json",
                               "--model", str(tiny_model_path)])
    assert res.exit_code == 0, res.output + res.stderr
    objs = [json.loads(ln) for ln in res.stdout.strip().splitlines()]
    assert [o["label"] for o in objs] == ["invoice", "passport"]
    assert all(o["accepted"] and len(o["top_k"]) == 2 and o["threshold"] == 0.5 for o in objs)
    assert objs[0]["path"] == str(queries / "a_invoice.png")
    assert objs[0]["margin"] == pytest.approx(objs[0]["top_k"][0]["score"] - objs[0]["top_k"][1]["score"], abs=1e-5)


def test_corrupt_file_gives_error_line_and_exit_3(runner, gallery_dir, queries, tiny_model_path):
    bad = queries / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    args = ["classify", str(queries), str(queries / "nope.png"), "-g", str(gallery_dir), "--threshold", "0.5",
            "--model", str(tiny_model_path)]
    res = runner.invoke(main, args + ["--json"])
    assert res.exit_code == EXIT_INPUT_ERRORS == 3
    objs = [json.loads(ln) for ln in res.stdout.strip().splitlines()]
    errors = {Path(o["path"]).name: o["error"] for o in objs if o.get("error")}
    assert set(errors) == {"broken.jpg", "nope.png"}
    assert "JPEG" in errors["broken.jpg"] and "not found" in errors["nope.png"]
    classified = {Path(o["path"]).name: o["label"] for o in objs if "label" in o}
    assert len(classified) == 4 and classified["a_invoice.png"] == "invoice" and classified["d_receipt.png"] == "receipt"
    assert "2 of 6 inputs" in res.stderr
    # The table form too: an ERROR line for the bad file, the others classified.
    res = runner.invoke(main, args)
    assert res.exit_code == 3
    assert any("broken.jpg" in ln and "ERROR" in ln for ln in res.stdout.splitlines())
    assert sum("ACCEPT" in ln or "REJECT" in ln for ln in res.stdout.splitlines()) == 4


def test_fpr_and_threshold_are_exclusive(runner, gallery_dir, queries, tiny_model_path):
    res = runner.invoke(main, ["classify", str(queries), "-g", str(gallery_dir), "--fpr", "0.01",
                               "--threshold", "0.5", "--model", str(tiny_model_path)])
    assert res.exit_code == 2 and "not both" in res.stderr


def test_no_table_is_a_setup_error_with_hint(runner, gallery_dir, queries, tiny_model_path):
    res = runner.invoke(main, ["classify", str(queries), "-g", str(gallery_dir), "--model", str(tiny_model_path)])
    assert res.exit_code == 1
    assert "--threshold" in res.stderr and "retriever calibrate" in res.stderr


def test_wrong_model_for_gallery_is_refused(runner, gallery_dir, queries, other_tiny_model_path):
    res = runner.invoke(main, ["classify", str(queries), "-g", str(gallery_dir), "--threshold", "0.5",
                               "--model", str(other_tiny_model_path)])
    assert res.exit_code == 1
    assert "tiny-other" in res.stderr and "tiny-test-model" in res.stderr


def test_thresholds_command_prints_model_table(runner, tiny_model_path, tmp_path):
    model = tmp_path / "tabled.onnx"
    shutil.copy(tiny_model_path, model)
    rows = [ThresholdRow(1e-3, 0.8, 0.9), ThresholdRow(1e-2, 0.9, 0.8)]
    write_contract(str(model), encoders.load(model).contract.with_thresholds(rows, "unit test"))
    res = runner.invoke(main, ["thresholds", "--model", str(model), "--fpr", "0.005"])
    assert res.exit_code == 0, res.stderr
    table = [ln for ln in res.stdout.splitlines() if ln.startswith("|")]
    assert len(table) == 4 and "(cos+1)/2" in table[0]
    assert "(in use)" in next(ln for ln in table if ln.startswith("| 0.001"))
    assert "unit test" in res.stdout


def test_thresholds_command_without_table_says_what_to_do(runner, gallery_dir, tiny_model_path):
    res = runner.invoke(main, ["thresholds", "--gallery", str(gallery_dir), "--model", str(tiny_model_path)])
    assert res.exit_code == 0
    assert "retriever calibrate" in res.stdout


def test_calibrate_calls_calibrate_gallery_and_prints_markdown(runner, gallery_dir, queries, tiny_model_path,
                                                               monkeypatch):
    calls = []

    def fake_calibrate_gallery(gallery_path, labelled_dir, encoder, fprs=None):
        calls.append((gallery_path, labelled_dir, encoder.name, fprs))
        return {"table_markdown": "| FPR | TPR |\n| 0.01 | 0.9 |"}

    monkeypatch.setitem(sys.modules, "retriever.calibrate",
                        types.SimpleNamespace(calibrate_gallery=fake_calibrate_gallery))
    res = runner.invoke(main, ["calibrate", str(queries), "-g", str(gallery_dir), "--fpr", "0.01", "--fpr", "0.1",
                               "--model", str(tiny_model_path)])
    assert res.exit_code == 0, res.stderr
    assert calls == [(str(gallery_dir), str(queries), "tiny-test-model", [0.01, 0.1])]
    assert "| 0.01 | 0.9 |" in res.stdout


def test_calibrate_without_module_fails_clearly(runner, gallery_dir, queries, monkeypatch):
    monkeypatch.setitem(sys.modules, "retriever.calibrate", None)
    res = runner.invoke(main, ["calibrate", str(queries), "-g", str(gallery_dir)])
    assert res.exit_code == 1
    assert "retriever.calibrate" in res.stderr


def test_help_documents_exit_codes(runner):
    res = runner.invoke(main, ["classify", "--help"])
    assert res.exit_code == 0
    assert "3 some inputs" in " ".join(res.stdout.split())


def test_calibrate_then_thresholds_and_classify_use_the_gallery_table(runner, gallery_dir, tmp_path,
                                                                      tiny_model_path):
    """End to end with the real retriever.calibrate: the stored table overrides the model's."""
    labelled = tmp_path / "labelled"
    for i, lab in enumerate(LABELS):
        (labelled / lab).mkdir(parents=True)
        for s in range(3):
            cv2.imwrite(str(labelled / lab / f"{s}.png"), perturb(doc_image(i), seed=50 + 10 * i + s))
    (labelled / "unknown").mkdir()
    for s in range(3):
        cv2.imwrite(str(labelled / "unknown" / f"{s}.png"), noise_image(seed=300 + s))
    model = ["--model", str(tiny_model_path)]
    res = runner.invoke(main, ["calibrate", str(labelled), "-g", str(gallery_dir), "--fpr", "0.1"] + model)
    assert res.exit_code == 0, res.stderr
    assert "threshold (cosine)" in res.stdout
    res = runner.invoke(main, ["thresholds", "-g", str(gallery_dir), "--fpr", "0.1"] + model)
    assert res.exit_code == 0, res.stderr
    assert "calibration" in res.stdout and "(in use)" in res.stdout
    res = runner.invoke(main, ["classify", str(labelled / "invoice"), "-g", str(gallery_dir), "--fpr", "0.1",
                               "--json"] + model)
    assert res.exit_code == 0, res.stderr
    assert "calibration" in res.stderr  # the threshold origin names the gallery's own table
    assert {json.loads(ln)["label"] for ln in res.stdout.splitlines()} == {"invoice"}
    # Below the measured range: a setup error naming the range.
    res = runner.invoke(main, ["classify", str(labelled / "invoice"), "-g", str(gallery_dir), "--fpr", "0.001"]
                        + model)
    assert res.exit_code == 1 and "below the measured range" in res.stderr


def test_a_gallery_opens_with_its_own_model_without_model_flag(runner, tmp_path):
    """Built with the shipped int8 copy: every retriever command finds that model by the gallery's
    fingerprint instead of failing until --model is repeated; --model still overrides (and a mismatch is
    refused with both fingerprints)."""
    import encoders
    from encoders.runtime import DEFAULT_MODEL
    from indexer.gallery import Gallery

    int8 = DEFAULT_MODEL.parent / "docretriever-default-int8.onnx"
    if not int8.is_file():
        pytest.skip("no shipped int8 model")
    reg = tmp_path / "reg"
    for i, lab in enumerate(LABELS[:3]):
        (reg / lab).mkdir(parents=True)
        cv2.imwrite(str(reg / lab / "x.png"), doc_image(i))
    enc = encoders.load(int8)
    Gallery.build(reg, tmp_path / "g", enc, self_calibrate=False)
    q = tmp_path / "q.png"
    cv2.imwrite(str(q), perturb(doc_image(1), seed=3))
    res = runner.invoke(main, ["classify", str(q), "-g", str(tmp_path / "g"), "--fpr", "0.01", "--json"])
    assert res.exit_code == 0, res.output + res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["label"] == LABELS[1]
    res = runner.invoke(main, ["classify", str(q), "-g", str(tmp_path / "g"), "--model", str(DEFAULT_MODEL)])
    assert res.exit_code == 1 and enc.fingerprint in res.stderr
