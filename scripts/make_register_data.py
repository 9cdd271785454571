#!/usr/bin/env python
"""Regenerate register_data/: the default register gallery and the quickstart's example captures.

Every image is a fictional specimen drawn by the project's own generator
(encoders.training.synth): no real person's data.  The register holds one clean specimen per
document type (folder = label); the examples are simulated phone/scanner captures of *other
instances* of those types (different personal data), plus captures of two types that are not
registered, which the retriever should reject.

    python scripts/make_register_data.py            # rewrites register_data/
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from encoders.capture import simulate_capture
from encoders.training.synth import render_document

# label -> (generator family, template seed).  Seeds picked by eye for variety (Latin and CJK).
REGISTER = {
    "national_id_front": ("id_card_front", 3),
    "national_id_back": ("id_card_back", 3),
    "driver_licence": ("driver_licence", 1),
    "passport_data_page": ("passport_page", 2),
    "residence_permit": ("residence_permit", 4),
    "health_insurance_card": ("health_insurance_card", 5),
    "bank_statement": ("bank_statement", 1),
    "invoice": ("invoice", 2),
    "receipt": ("receipt", 3),
    "utility_bill": ("utility_bill", 1),
    "application_form": ("application_form", 6),
    "employee_badge": ("employee_badge", 0),
}
# Captured examples: (label it should match, fill seed, capture seed); None = not registered.
EXAMPLES = [
    ("national_id_front", 11, 1), ("driver_licence", 12, 2), ("passport_data_page", 13, 3),
    ("health_insurance_card", 14, 4), ("invoice", 15, 5), ("receipt", 16, 6), ("bank_statement", 17, 7),
    ("employee_badge", 18, 8),
]
UNREGISTERED = [("boarding_pass", 7, 21, 9), ("shipping_label", 3, 22, 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "register_data"))
    args = ap.parse_args()
    out = Path(args.out)
    for sub in ("register", "examples"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    for label, (family, seed) in REGISTER.items():
        img = render_document(family, seed, fill_seed=0, scale=0.8)
        (out / "register" / label).mkdir()
        cv2.imwrite(str(out / "register" / label / "specimen.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    for label, fill, cap in EXAMPLES:
        family, seed = REGISTER[label]
        img = render_document(family, seed, fill_seed=fill, scale=1.0)
        jpeg = simulate_capture(img, np.random.default_rng(cap), strength="eval")
        (out / "examples" / f"{label}_capture.jpg").write_bytes(jpeg)
    for family, seed, fill, cap in UNREGISTERED:
        img = render_document(family, seed, fill_seed=fill, scale=1.0)
        jpeg = simulate_capture(img, np.random.default_rng(cap), strength="eval")
        (out / "examples" / f"unregistered_{family}_capture.jpg").write_bytes(jpeg)
    print(f"wrote {len(REGISTER)} register types and {len(EXAMPLES) + len(UNREGISTERED)} examples to {out}")


if __name__ == "__main__":
    main()
