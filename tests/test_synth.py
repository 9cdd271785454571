"""Synthetic generator: determinism, template-vs-fill semantics, shapes, split, fonts."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.fonts  # the generator draws with system fonts

pytest.importorskip("PIL")
pytest.importorskip("qrcode")

from encoders.training.synth import FAMILIES, HELDOUT_FAMILIES, TRAIN_FAMILIES, list_fonts, render_document  # noqa: E402

REQUIRED = ["id_card_front", "id_card_back", "driver_licence", "passport_page", "residence_permit",
            "health_insurance_card", "bank_statement", "invoice", "receipt", "utility_bill", "application_form"]


def _small(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    g = cv2.resize(g, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    return (g - g.mean()) / (g.std() + 1e-6)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(_small(a) * _small(b)))


def test_required_families_present() -> None:
    assert set(REQUIRED) <= set(FAMILIES)
    assert len(FAMILIES) >= 20


def test_split_disjoint_and_covering() -> None:
    tr, ho = set(TRAIN_FAMILIES), set(HELDOUT_FAMILIES)
    assert not tr & ho
    assert tr | ho == set(FAMILIES)
    assert 0.2 <= len(ho) / len(FAMILIES) <= 0.4
    for kinds in ({FAMILIES[n].kind for n in tr}, {FAMILIES[n].kind for n in ho}):
        assert {"card", "page"} <= kinds


def test_determinism() -> None:
    for fam in ("id_card_front", "invoice", "receipt"):
        a = render_document(fam, 7, 3)
        b = render_document(fam, 7, 3)
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    assert render_document("id_card_front", 7, 3).tobytes() != render_document("id_card_front", 7, 4).tobytes()


def test_all_families_render_with_expected_aspect() -> None:
    for name, fam in FAMILIES.items():
        img = render_document(name, 1, 0, scale=0.35)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
        ar = img.shape[1] / img.shape[0]
        lo, hi = fam.aspect_range
        assert lo * 0.97 <= ar <= hi * 1.03, (name, ar, fam.aspect_range)
        assert img.std() > 5, f"{name} renders an almost blank image"


def test_scale_changes_size() -> None:
    a = render_document("id_card_front", 2, 0, scale=1.0)
    b = render_document("id_card_front", 2, 0, scale=0.5)
    assert a.shape[:2] == (540, 860)
    assert abs(b.shape[0] - 270) <= 1 and abs(b.shape[1] - 430) <= 1


def test_fills_closer_than_templates() -> None:
    fams = ["id_card_front", "driver_licence", "passport_page", "health_insurance_card", "invoice", "bank_statement",
            "application_form", "id_card_back"]
    same, diff = [], []
    for fam in fams:
        for ts in (0, 1):
            a = render_document(fam, ts, 0, scale=0.3)
            b = render_document(fam, ts, 1, scale=0.3)
            same.append(_corr(a, b))
        c = render_document(fam, 0, 0, scale=0.3)
        d = render_document(fam, 1, 0, scale=0.3)
        if c.shape == d.shape:
            diff.append(_corr(c, d))
    assert np.mean(same) > np.mean(diff) + 0.2, (np.mean(same), np.mean(diff))
    assert np.mean(same) > 0.8


def test_cjk_fonts_found_and_render() -> None:
    cjk = list_fonts("cjk")
    assert cjk, "no CJK font found under /usr/share/fonts"
    assert list_fonts("latin") and list_fonts("mono")
    from PIL import Image, ImageDraw

    from encoders.training.synth import get_font
    im = Image.new("L", (200, 60), 0)
    ImageDraw.Draw(im).text((5, 5), "身分證 주민", font=get_font(cjk[0], 40), fill=255)
    assert np.asarray(im).max() > 0


def test_unknown_family_named_in_error() -> None:
    with pytest.raises(KeyError, match="no_such_family"):
        render_document("no_such_family", 0)
