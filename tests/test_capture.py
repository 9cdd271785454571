"""Capture simulator (train/eval presets), view augmentation, and the benchmark builder."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from encoders.decode import read_image, jpeg_size
from encoders.training.capture import EVAL, TRAIN, TRAIN_WIDE, augment_view, simulate_capture, simulate_capture_array

REPO = Path(__file__).resolve().parent.parent


def _doc(h: int = 270, w: int = 430) -> np.ndarray:
    """A card-like test document: pale paper, dark text bars, a coloured photo box."""
    d = np.full((h, w, 3), 232, np.uint8)
    for y in range(20, h - 20, 18):
        cv2.rectangle(d, (20, y), (int(w * 0.6), y + 7), (40, 40, 40), -1)
    cv2.rectangle(d, (int(w * 0.7), 30), (w - 20, h - 60), (150, 100, 60), -1)
    return d


DOC = _doc()


def test_deterministic_for_fixed_rng() -> None:
    for strength in ("train", "train_wide", "eval"):
        for seed in range(6):
            a = simulate_capture(DOC, np.random.default_rng(seed), strength)
            b = simulate_capture(DOC, np.random.default_rng(seed), strength)
            assert a == b
    assert simulate_capture(DOC, np.random.default_rng(1)) != simulate_capture(DOC, np.random.default_rng(2))


def test_output_is_jpeg_that_decodes() -> None:
    rng = np.random.default_rng(0)
    for strength in ("train", "train_wide", "eval"):
        for _ in range(5):
            data = simulate_capture(DOC, rng, strength, background=_doc(100, 100))
            assert data[:3] == b"\xff\xd8\xff"
            img = read_image(data, target_hw=(128, 128))
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_width_range_respected_and_aspect_kept() -> None:
    rng = np.random.default_rng(3)
    for p in (TRAIN, EVAL):
        for _ in range(12):
            h, w = jpeg_size(simulate_capture(DOC, rng, p))
            # double JPEG may shrink by up to 20% between the two saves
            assert int(p.width[0] * 0.8) - 1 <= w <= p.width[1]
            assert 0.75 * DOC.shape[0] / DOC.shape[1] < h / w < 1.25 * DOC.shape[0] / DOC.shape[1]


def test_eval_is_wider_and_harder_than_train() -> None:
    assert EVAL.width[0] < TRAIN.width[0] and EVAL.width[1] > TRAIN.width[1]
    assert EVAL.corner_max > TRAIN.corner_max and EVAL.rotate_deg > TRAIN.rotate_deg
    assert EVAL.jpeg_quality[0] < TRAIN.jpeg_quality[0]
    for name in ("p_curl", "p_finger", "p_screen", "p_double_jpeg", "p_vignette", "p_keystone"):
        assert getattr(TRAIN, name) == 0 and getattr(EVAL, name) > 0, name
    # measured: error against the clean document (resized to the capture) is larger and more spread
    errs: dict[str, list[float]] = {"train": [], "eval": []}
    widths: dict[str, list[int]] = {"train": [], "eval": []}
    for name, p in (("train", TRAIN), ("eval", EVAL)):
        rng = np.random.default_rng(11)
        for _ in range(40):
            img, _, _ = simulate_capture_array(DOC, rng, replace(p, p_double_jpeg=0.0))
            ref = cv2.resize(DOC, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
            errs[name].append(float(np.abs(img.astype(np.float32) - ref).mean()))
            widths[name].append(img.shape[1])
    assert np.mean(errs["eval"]) > np.mean(errs["train"])
    assert np.std(widths["eval"]) > np.std(widths["train"]) * 0.9
    assert min(widths["eval"]) < TRAIN.width[0] or max(widths["eval"]) > TRAIN.width[1]


def test_train_wide_covers_every_effect_kind_but_stays_milder_than_eval() -> None:
    """Training sees every kind of effect the evaluation does (a model should not meet curl or a
    thumb for the first time in evaluation), while "eval" stays the harder preset throughout."""
    probs = [f for f in TRAIN_WIDE.__dataclass_fields__ if f.startswith("p_")]
    for name in probs:
        assert 0 < getattr(TRAIN_WIDE, name) <= getattr(EVAL, name), name
    for name in ("corner_max", "rotate_deg", "aspect_jitter", "wb"):
        assert getattr(TRAIN_WIDE, name) <= getattr(EVAL, name), name
    for name in ("keystone", "gradient", "shadow", "glare", "motion_px", "defocus_px", "noise_std", "curl"):
        assert getattr(TRAIN_WIDE, name)[1] <= getattr(EVAL, name)[1], name
    assert TRAIN_WIDE.jpeg_quality[0] >= EVAL.jpeg_quality[0] and TRAIN_WIDE.lowres[0] >= EVAL.lowres[0]
    assert TRAIN_WIDE.width[0] >= EVAL.width[0]


def test_rejects_bad_input_and_unknown_strength() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        simulate_capture(DOC[:, :, 0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown capture strength"):
        simulate_capture(DOC, np.random.default_rng(0), "extreme")


def test_large_page_is_downscaled_to_capture_width() -> None:
    page = cv2.resize(_doc(), (1240, 1754))
    h, w = jpeg_size(simulate_capture(page, np.random.default_rng(5), replace(TRAIN, width=(400, 400))))
    assert w == 400 and abs(h - 400 * 1754 / 1240) < 0.06 * h


def test_augment_view_keeps_shape_dtype_and_is_deterministic() -> None:
    img = cv2.resize(DOC, (128, 128))
    changed = 0
    for seed in range(12):
        out = augment_view(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
        assert np.array_equal(out, augment_view(img, np.random.default_rng(seed)))
        changed += int(not np.array_equal(out, img))
    # each of 4 groups fires with p=0.5: nearly all views change, but not always all groups
    assert changed >= 8


# ------------------------------------------------------------------------------------------------
# benchmark builder (--small)
# ------------------------------------------------------------------------------------------------

def _synth_available() -> bool:
    try:
        from encoders.training.synth import HELDOUT_FAMILIES, render_document  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.fonts
@pytest.mark.skipif(not _synth_available(), reason="synthetic document generator not importable yet")
def test_build_benchmark_small(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_benchmark as bb
    finally:
        sys.path.pop(0)
    out = tmp_path / "bench"
    rc = bb.main(["--small", "--out", str(out), "--unknown-captures", "1"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    from encoders.training.synth import HELDOUT_FAMILIES

    assert man["format"] == "docretriever-benchmark" and man["capture_preset"] == "eval"
    assert man["generator"]["families"] == list(HELDOUT_FAMILIES)
    reg_by_split = {}
    for split in ("val", "test"):
        s = man["splits"][split]
        reg = sorted(p.name for p in (out / split / "register").iterdir())
        unk = sorted(p.name for p in (out / split / "unknown").iterdir())
        assert len(reg) == s["register_types"] == 12
        assert len(unk) == s["unknown_types"] == 4
        assert not set(reg) & set(unk)
        for t in reg:
            assert (out / split / "register" / t / "specimen.png").is_file()
            qs = sorted((out / split / "queries" / t).glob("*.jpg"))
            assert [q.name for q in qs] == ["1.jpg", "2.jpg", "3.jpg"]
            read_image(qs[0], target_hw=(128, 128))
        assert sorted(p.name for p in (out / split / "queries").iterdir()) == reg
        assert s["queries"] == 36 and s["unknown_captures"] == 4
        for e in s["register"] + s["unknown"]:
            assert e["source"] in ("synthetic", "wallpaper")
            if e["source"] == "synthetic":
                assert e["family"] in HELDOUT_FAMILIES
                assert e["capture_fill_seeds"] and 0 not in e["capture_fill_seeds"]
            else:
                assert e["file"].startswith("/usr/share/wallpapers/")
        reg_by_split[split] = {(e.get("family"), e.get("template_seed"), e.get("file"), tuple(e.get("crop_xywh", ())))
                               for e in s["register"] + s["unknown"]}
    # val and test share no template (and no wallpaper)
    assert not reg_by_split["val"] & reg_by_split["test"]
    files = {sp: {e["file"] for e in man["splits"][sp]["register"] + man["splits"][sp]["unknown"] if "file" in e}
             for sp in ("val", "test")}
    assert not files["val"] & files["test"]
    # look-alike splits: sibling sets of one held-out template each, the last member unregistered
    sets_by_split = {}
    for split in ("val-lookalike", "test-lookalike"):
        s = man["splits"][split]
        reg = sorted(p.name for p in (out / split / "register").iterdir())
        unk = sorted(p.name for p in (out / split / "unknown").iterdir())
        assert len(reg) == s["register_types"] == 2 * 3 and len(unk) == s["unknown_types"] == 2
        assert {t.rsplit("-", 1)[1] for t in reg} == {"m0", "m1", "m2"} and {t.rsplit("-", 1)[1] for t in unk} == {"m3"}
        entries = s["register"] + s["unknown"]
        assert all(e["family"] in HELDOUT_FAMILIES and e["sibling"]["member"] == int(e["type"][-1]) for e in entries)
        assert all((e["sibling"]["edit"] is None) == (e["sibling"]["member"] == 0) for e in entries)
        sets_by_split[split] = {(e["family"], e["template_seed"]) for e in entries}
        assert len(sets_by_split[split]) == 2
        specimens = [cv2.imread(str(out / split / "register" / t / "specimen.png")) for t in reg[:3]]
        assert all(a.shape == specimens[0].shape and not np.array_equal(a, specimens[0]) for a in specimens[1:])
    assert not sets_by_split["val-lookalike"] & sets_by_split["test-lookalike"]
    assert not sets_by_split["val-lookalike"] & {x[:2] for x in reg_by_split["val"]}
    # same configuration again: reused, not rebuilt; a different one without --force is refused
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert bb.main(["--small", "--out", str(out), "--unknown-captures", "1"]) == 0
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    assert bb.main(["--small", "--out", str(out)]) == 2
