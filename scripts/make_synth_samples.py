#!/usr/bin/env python
"""Render contact sheets of synthetic documents so a person can eyeball them.

Each row pair shows (family, template) with two fills side by side: the two
images of a pair must look like the same document type, neighbouring pairs
like different types.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.training.synth import FAMILIES, render_document  # noqa: E402


def _thumb(img: np.ndarray, cell: int) -> np.ndarray:
    h, w = img.shape[:2]
    k = cell / max(h, w)
    t = cv2.resize(img, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)
    out = np.full((cell, cell, 3), 90, np.uint8)
    y, x = (cell - t.shape[0]) // 2, (cell - t.shape[1]) // 2
    out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


def sheet(families: list[str], n: int, cell: int, seed0: int) -> np.ndarray:
    tiles = []
    for fam in families:
        for ts in range(seed0, seed0 + n):
            pair = [_thumb(render_document(fam, ts, fs), cell) for fs in (0, 1)]
            tile = np.concatenate([pair[0], np.full((cell, 4, 3), 255, np.uint8), pair[1]], 1)
            cap = np.full((22, tile.shape[1], 3), 255, np.uint8)
            cv2.putText(cap, f"{fam} t={ts}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(np.concatenate([cap, tile], 0))
    cols = 3
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate([np.pad(x, ((6, 6), (6, 6), (0, 0)), constant_values=255) for x in tiles[i:i + cols]], 1)
            for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output directory (outside the repo, e.g. /tmp/synth)")
    ap.add_argument("--n", type=int, default=2, help="templates per family")
    ap.add_argument("--families", default="", help="comma-separated family names (default: all)")
    ap.add_argument("--cell", type=int, default=300, help="thumbnail size in px")
    ap.add_argument("--seed0", type=int, default=0, help="first template seed")
    ap.add_argument("--per-sheet", type=int, default=6, help="families per sheet")
    a = ap.parse_args()
    fams = [x for x in a.families.split(",") if x] or list(FAMILIES)
    os.makedirs(a.out, exist_ok=True)
    for i in range(0, len(fams), a.per_sheet):
        img = sheet(fams[i:i + a.per_sheet], a.n, a.cell, a.seed0)
        p = os.path.join(a.out, f"synth_sheet_{i // a.per_sheet:02d}.png")
        cv2.imwrite(p, img)
        print(p, img.shape)


if __name__ == "__main__":
    main()
