"""retriever.calibrate: a gallery's own threshold table from the user's labelled captures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import encoders
from retriever import metrics as M
from retriever.calibrate import CalibrationError, calibrate_gallery, scan_labelled_dir
from synth_docs import capture, type_image, write

N_TYPES = 5


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_path):
    return encoders.load(tiny_model_path)


@pytest.fixture()
def gallery(tmp_path, tiny_encoder) -> Path:
    """A real gallery of N_TYPES synthetic types, one specimen each."""
    from indexer.gallery import Gallery

    reg = tmp_path / "register"
    for t in range(N_TYPES):
        write(reg / f"type{t}" / "specimen.png", type_image(t))
    out = tmp_path / "gallery"
    Gallery.build(reg, out, tiny_encoder)
    return out


def _labelled(root: Path, types=range(N_TYPES), per_type: int = 3, unknown: int = 2) -> Path:
    for t in types:
        for k in range(per_type):
            write(root / f"type{t}" / f"c{k}.jpg", capture(type_image(t), 31 * t + k))
    for u in range(unknown):
        write(root / "unknown" / f"u{u}.jpg", capture(type_image(900 + u), u))
    return root


def test_calibrate_stores_measured_table(tmp_path, gallery, tiny_encoder):
    from indexer.gallery import Gallery

    labelled = _labelled(tmp_path / "labelled")  # 15 known x 4 + 2 unknown x 5 = 70 negatives
    rec = calibrate_gallery(str(gallery), str(labelled), tiny_encoder)
    assert rec["n_pos"] == 15 and rec["n_neg"] == 15 * 4 + 2 * 5
    assert rec["register_size"] == {"types": N_TYPES, "exemplars": N_TYPES}
    assert [r["fpr"] for r in rec["table"]] == [0.1]  # only 1e-1 is measurable with 70 negatives
    assert [r["fpr"] for r in rec["not_measurable"]] == [1e-5, 1e-4, 1e-3, 1e-2]
    row = rec["table"][0]
    assert row["measurable"] and row["measured_fpr"] <= 0.1 and 0.0 <= row["tpr"] <= 1.0
    assert rec["source"].startswith(f"user calibration {labelled.resolve()} ")
    assert "| FPR | 1e-5 |" in rec["table_markdown"] and "needs >= 100" in rec["table_markdown"]
    assert "15 positive / 70 negative pairs" in rec["table_markdown"] and "register 5 types" in rec["table_markdown"]
    json.dumps(rec)  # the manifest must be able to hold it
    stored = Gallery.open(gallery, tiny_encoder).calibration
    assert stored["table"] == rec["table"] and stored["n_neg"] == rec["n_neg"]


def test_calibration_matches_direct_feature_metrics(tmp_path, gallery, tiny_encoder):
    """Scores read through the gallery's search equal plain cosines against the specimens."""
    labelled = _labelled(tmp_path / "labelled")
    rec = calibrate_gallery(str(gallery), str(labelled), tiny_encoder)
    known, unknown = scan_labelled_dir(labelled)
    reg = tiny_encoder.encode([type_image(t) for t in range(N_TYPES)])
    direct = M.evaluate_features(tiny_encoder.encode([str(p) for p, _ in known]), [lab for _, lab in known],
                                 reg, [f"type{t}" for t in range(N_TYPES)],
                                 tiny_encoder.encode([str(p) for p in unknown]), fprs=(0.1,),
                                 unknown_as_negatives=True)
    assert rec["table"][0]["threshold"] == pytest.approx(direct["table"][0]["threshold"], abs=1e-5)
    assert rec["auroc"] == pytest.approx(direct["auroc"], abs=1e-6)


def test_refuses_fpr_without_enough_negatives(tmp_path, gallery, tiny_encoder):
    labelled = _labelled(tmp_path / "labelled")
    with pytest.raises(CalibrationError, match=r"gives 70 negative pairs.*FPR 0\.0001 needs at least 10,000"):
        calibrate_gallery(str(gallery), str(labelled), tiny_encoder, fprs=[1e-4, 1e-1])


def test_refuses_when_not_even_the_largest_default_fpr_is_measurable(tmp_path, gallery, tiny_encoder):
    labelled = _labelled(tmp_path / "labelled", types=[0], per_type=2, unknown=0)  # 2 x 4 = 8 negatives
    with pytest.raises(CalibrationError, match=r"8 negative pairs.*needs 10"):
        calibrate_gallery(str(gallery), str(labelled), tiny_encoder)


def test_refuses_folders_that_are_not_gallery_labels(tmp_path, gallery, tiny_encoder):
    labelled = _labelled(tmp_path / "labelled")
    write(labelled / "passport" / "x.jpg", type_image(0))
    with pytest.raises(CalibrationError, match=r"1 folder\(s\) not named after a gallery label: 'passport'; the gallery has 5 labels: type0, type1"):
        calibrate_gallery(str(gallery), str(labelled), tiny_encoder)


def test_refuses_empty_directory_and_loose_images(tmp_path, gallery, tiny_encoder):
    empty = tmp_path / "empty"
    (empty / "type0").mkdir(parents=True)
    with pytest.raises(CalibrationError, match="no images found"):
        calibrate_gallery(str(gallery), str(empty), tiny_encoder)
    write(empty / "loose.png", type_image(0))
    with pytest.raises(CalibrationError, match="have no label.*loose.png"):
        calibrate_gallery(str(gallery), str(empty), tiny_encoder)


def test_only_unknown_captures_is_refused(tmp_path, gallery, tiny_encoder):
    labelled = _labelled(tmp_path / "labelled", types=[], unknown=3)
    with pytest.raises(CalibrationError, match="no captures of registered types"):
        calibrate_gallery(str(gallery), str(labelled), tiny_encoder)


def test_unreadable_capture_is_named(tmp_path, gallery, tiny_encoder):
    labelled = _labelled(tmp_path / "labelled")
    bad = labelled / "type1" / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match="broken.jpg"):
        calibrate_gallery(str(gallery), str(labelled), tiny_encoder)
