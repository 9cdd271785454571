"""Family registry, train/held-out split and the `render_document` entry point.

Why: a *family* is a kind of document (ID card, invoice...); a *template*
(family, template_seed) is one document type — the unit the retriever
recognises; a *fill* is one specimen of that type. Held-out families are never
used in training so the benchmark measures zero-shot enrolment of new types.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from . import cards, others, pages

Rng = np.random.Generator
Renderer = Callable[[str, Rng, Rng, float], np.ndarray]


@dataclass(frozen=True)
class Family:
    """A document family: name, coarse kind, nominal size (w, h px at scale 1) and renderer.

    `aspect_range` bounds w/h of the rendered image (some families vary per template).
    """
    name: str
    kind: str  # "card" | "passport" | "page" | "receipt" | "ticket" | "label" | "cheque"
    size: tuple[int, int]
    aspect_range: tuple[float, float]
    renderer: Renderer


def _fam(name: str, kind: str, size: tuple[int, int], renderer: Renderer, ar: tuple[float, float] | None = None) -> Family:
    a = size[0] / size[1]
    return Family(name, kind, size, ar or (a * 0.98, a * 1.02), renderer)


def _card(size: tuple[int, int] = (860, 540)) -> Renderer:
    return lambda fam, t, f, s: cards.render_card(fam, t, f, s, size)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    _fam("id_card_front", "card", (860, 540), _card()),
    _fam("id_card_back", "card", (860, 540), cards.render_card_back),
    _fam("driver_licence", "card", (860, 540), _card()),
    _fam("passport_page", "passport", (1250, 880), cards.render_passport),
    _fam("residence_permit", "card", (860, 540), _card()),
    _fam("health_insurance_card", "card", (860, 540), _card()),
    _fam("membership_card", "card", (860, 540), _card()),
    _fam("student_card", "card", (860, 540), _card()),
    _fam("vehicle_registration", "card", (860, 540), _card()),
    _fam("employee_badge", "card", (540, 860), _card((540, 860))),
    _fam("bank_card", "card", (860, 540), cards.render_bank_card),
    _fam("business_card", "card", (900, 520), cards.render_business_card),
    _fam("gift_voucher", "card", (1000, 460), others.render_voucher),
    _fam("bank_statement", "page", pages.PAGE, pages.render_page),
    _fam("invoice", "page", pages.PAGE, pages.render_page),
    _fam("utility_bill", "page", pages.PAGE, pages.render_page),
    _fam("application_form", "page", pages.PAGE, pages.render_page),
    _fam("letter", "page", pages.PAGE, pages.render_page),
    _fam("payslip", "page", pages.PAGE, pages.render_page),
    _fam("tax_form", "page", pages.PAGE, pages.render_page),
    _fam("medical_report", "page", pages.PAGE, pages.render_page),
    _fam("delivery_note", "page", pages.PAGE, pages.render_page),
    _fam("contract_page", "page", pages.PAGE, pages.render_page),
    _fam("table_report", "page", pages.PAGE, pages.render_page),
    _fam("certificate", "page", (1754, 1240), pages.render_certificate),
    _fam("receipt", "receipt", (580, 1600), others.render_receipt, (0.2, 0.8)),
    _fam("boarding_pass", "ticket", (1500, 600), others.render_pass),
    _fam("ticket", "ticket", (1350, 550), others.render_pass, (1200 / 620 * 0.98, 1500 / 480 * 1.02)),
    _fam("shipping_label", "label", (800, 1200), others.render_shipping_label),
    _fam("cheque", "cheque", (1400, 620), others.render_cheque),
]}

# ~30% held out, covering cards, a passport-free ID-like card, pages and odd shapes.
HELDOUT_FAMILIES: list[str] = [
    "residence_permit", "student_card", "vehicle_registration", "gift_voucher",
    "utility_bill", "payslip", "medical_report", "boarding_pass", "shipping_label",
]
TRAIN_FAMILIES: list[str] = [n for n in FAMILIES if n not in HELDOUT_FAMILIES]


def _seed(*parts: object) -> int:
    h = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def rngs(family: str, template_seed: int, fill_seed: int) -> tuple[Rng, Rng]:
    """(template rng, fill rng): stable across processes (blake2b, not hash())."""
    return (np.random.default_rng(_seed("T", family, template_seed)),
            np.random.default_rng(_seed("F", family, template_seed, fill_seed)))


def render_document(family: str, template_seed: int, fill_seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Clean specimen of document type (family, template_seed), specimen `fill_seed`, as BGR uint8.

    template_seed fixes layout/colours/fonts/static text; fill_seed only the variable content.
    """
    fam = FAMILIES.get(family)
    if fam is None:
        raise KeyError(f"render_document: unknown family {family!r}; known: {sorted(FAMILIES)}")
    if not scale > 0:
        raise ValueError(f"render_document: scale must be > 0, got {scale}")
    t, f = rngs(family, int(template_seed), int(fill_seed))
    cv2.setNumThreads(1)
    out = fam.renderer(family, t, f, float(scale))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    return out
