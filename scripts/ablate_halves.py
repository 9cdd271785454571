#!/usr/bin/env python
"""Test-time ablation: does comparing the top and bottom halves too tell look-alike types apart?

    python scripts/ablate_halves.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val-lookalike --split val

The model was trained with top and bottom halves of every source as classes of their own (the x24
expansion), so it embeds a half page at twice the resolution of a whole one.  A sibling that differs
in one small element differs more in the half that holds it.  For each split: the pair table's
TPR@1e-4 / 1e-3 and top-1 for the full-image cosine alone and for the mean of the full, top-half and
bottom-half cosines (query half against the exemplar's same half), encoded with the shipped model.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (str(REPO), str(REPO / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

import evaluate as E  # noqa: E402
from retriever import metrics as M  # noqa: E402


def views(encoder, paths: list[Path]) -> dict[str, np.ndarray]:
    """Full image, top half, bottom half features of each file (decoded once)."""
    from encoders.decode import read_image
    from encoders.preprocess import preprocess

    out: dict[str, list[np.ndarray]] = {"full": [], "top": [], "bottom": []}
    batch: dict[str, list[np.ndarray]] = {k: [] for k in out}

    def flush() -> None:
        for k in out:
            if batch[k]:
                out[k].append(encoder.encode_batch(np.stack(batch[k])))
                batch[k].clear()

    for p in paths:
        img = read_image(str(p))
        h = img.shape[0]
        for k, part in (("full", img), ("top", img[: h // 2]), ("bottom", img[h // 2:])):
            batch[k].append(preprocess(np.ascontiguousarray(part), encoder.contract))
        if len(batch["full"]) >= 32:
            flush()
    flush()
    return {k: np.concatenate(v) for k, v in out.items()}


def rates(sim: np.ndarray, q_lab: list[str], r_lab: list[str]) -> dict[str, float]:
    r_lab_a = np.asarray(r_lab)
    own = np.asarray([np.flatnonzero(r_lab_a == lab)[0] for lab in q_lab])
    pos = sim[np.arange(len(q_lab)), own]
    mask = np.ones_like(sim, bool)
    mask[np.arange(len(q_lab)), own] = False
    neg = np.sort(sim[mask])
    out = {"top1": float(np.mean(np.argmax(sim, axis=1) == own))}
    for fpr in (1e-4, 1e-3):
        t = M.threshold_at(neg, fpr)
        out[f"tpr@{fpr:g}"] = None if t is None else float(np.mean(pos >= t))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    import encoders

    enc = encoders.load(a.model)
    print(f"model {enc.name} ({enc.fingerprint[:12]})\n")
    print("| split | score | TPR@1e-4 | TPR@1e-3 | top-1 |\n|---|---|---:|---:|---:|")
    for name in a.split:
        s = E.load_split(a.benchmark, name)
        reg = views(enc, [p for p, _ in s.register])
        qry = views(enc, [p for p, _ in s.queries])
        r_lab = [lab for _, lab in s.register]
        q_lab = [lab for _, lab in s.queries]
        full = qry["full"] @ reg["full"].T
        halves = (qry["top"] @ reg["top"].T + qry["bottom"] @ reg["bottom"].T) / 2
        for label, sim in (("full image (shipped)", full), ("mean of full, top half, bottom half", (full + 2 * halves) / 3),
                           ("halves only", halves)):
            r = rates(sim, q_lab, r_lab)
            f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            print(f"| {name} | {label} | {f(r['tpr@0.0001'])} | {f(r['tpr@0.001'])} | {r['top1']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
