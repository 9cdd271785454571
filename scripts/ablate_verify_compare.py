#!/usr/bin/env python
"""Test-time ablation of verification's *comparison* step, registration held fixed.

    python scripts/ablate_verify_compare.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val-lookalike \\
        --variant base --variant aspect-g128 --variant pairwise-pow2 --mu 1 --mu 2

encoders/pageprint.verify_deltas registers a capture onto its first candidate, then compares the aligned page
with each candidate where the candidates differ (the page squashed to 256 x 256, contrast-normalised, 96 x 96).
On the look-alike splits it lifts top-1 0.856 -> 0.886 and leaves most sibling errors.  This script keeps each
capture's homography (cached) and tries other comparisons of the same aligned pages:

* ``aspect*``: the page keeps its aspect ratio (a wide card is not squashed), at a finer grid;
* ``*-mb``: the exemplars blurred to match the capture (the level that best fits the first candidate);
* ``colour``: Lab a/b channels beside grey (siblings that differ in the colour of one region);
* ``shift1``: each pixel's difference is the best over +-1 grid-pixel shifts (residual misalignment);
* ``pairwise*``: each pair of candidates is decided on the region where the two differ, normalised by that
  region, instead of one weight map over all pairs (a non-sibling among the five then no longer dilutes it).

Reports, per variant and mu, the pair table's TPR@1e-4 and 1e-3, top-1, and DIR at FPIR 1e-2 on the mixed
register (cosine + margin rule), as scripts/ablate_verify.py does.  Results: scripts/results/verify/compare.md.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (str(REPO), str(REPO / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

import ablate_local_rerank as A  # noqa: E402
import evaluate as E  # noqa: E402
from ablate_verify import cached, prepare  # noqa: E402
from encoders import pageprint as P  # noqa: E402

cv2.setNumThreads(1)

BLUR_LEVELS = [0, 1, 2, 3, 4, 6]  # candidate blur levels tried by the *-mb variants (px at a 256 frame)
VARIANTS: dict[str, dict] = {
    "base": dict(squash=True, compare=256, grid=96),  # what encoders/pageprint does
    "aspect": dict(squash=False, compare=256, grid=96),
    "aspect-g128": dict(squash=False, compare=384, grid=128),
    "aspect-g192": dict(squash=False, compare=512, grid=192),
    "mb": dict(squash=True, compare=256, grid=96, match_blur=BLUR_LEVELS),
    "aspect-g128-mb": dict(squash=False, compare=384, grid=128, match_blur=BLUR_LEVELS),
    "colour": dict(squash=True, compare=256, grid=96, colour=True),
    "aspect-g128-colour": dict(squash=False, compare=384, grid=128, colour=True),
    "shift1": dict(squash=True, compare=256, grid=96, shift=1),
    "pairwise": dict(squash=True, compare=256, grid=96, pairwise=True),
    "pairwise-pow2": dict(squash=True, compare=256, grid=96, pairwise=True, pow=2),
    "aspect-g128-pairwise": dict(squash=False, compare=384, grid=128, pairwise=True),
}


def load_images(paths: list[Path], longest: int) -> list[np.ndarray]:
    """BGR images, shrunk to ``longest`` px on their longest side when larger."""
    out = []
    for p in paths:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is None:
            raise ValueError(f"{p}: cannot decode")
        s = longest / max(im.shape[:2])
        if s < 1:
            im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
        out.append(im)
    return out


def _normalised(x: np.ndarray, sigma: float) -> np.ndarray:
    x = x.astype(np.float32)
    mu = cv2.GaussianBlur(x, (0, 0), sigma)
    return (x - mu) / (np.sqrt(cv2.GaussianBlur((x - mu) ** 2, (0, 0), sigma)) + 8.0)


def _sizes(ref_hw: tuple[int, int], v: dict) -> tuple[int, int, int, int]:
    """(frame h, w, grid h, w) for an exemplar whose keypoint frame is ``ref_hw``."""
    h, w = ref_hw
    if v["squash"]:
        return v["compare"], v["compare"], v["grid"], v["grid"]
    f, g = v["compare"] / max(h, w), v["grid"] / max(h, w)
    return max(8, round(h * f)), max(8, round(w * f)), max(8, round(h * g)), max(8, round(w * g))


def _grid(frame_bgr: np.ndarray, v: dict, gh: int, gw: int) -> np.ndarray:
    """(channels, gh, gw): grey (and with ``colour`` Lab a/b), contrast-normalised, reduced to the grid."""
    chans = [cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)]
    if v.get("colour"):
        lab = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2LAB)
        chans += [lab[..., 1], lab[..., 2]]
    sigma = max(frame_bgr.shape[:2]) / 50
    return np.stack([cv2.resize(_normalised(c, sigma), (gw, gh), interpolation=cv2.INTER_AREA) for c in chans])


def deltas(capture: np.ndarray, qprint, H: np.ndarray, ref_hw: tuple[int, int], cands: list[np.ndarray],
           v: dict) -> np.ndarray:
    """(k,) centred agreement of the capture (BGR, any size; ``qprint`` its print, ``H`` its homography onto
    the reference exemplar's keypoint frame ``ref_hw``) with each candidate exemplar (BGR)."""
    k = len(cands)
    h, w = ref_hw
    fh, fw, gh, gw = _sizes(ref_hw, v)
    (qh, qw), (ih, iw) = qprint.size, capture.shape[:2]
    to = np.diag([fw / w, fh / h, 1.0]) @ H @ np.diag([qw / iw, qh / ih, 1.0])
    warped = cv2.warpPerspective(capture, to, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    seen = cv2.warpPerspective(np.full(capture.shape[:2], 255, np.uint8), to, (fw, fh), flags=cv2.INTER_NEAREST)
    seen = (cv2.resize(seen, (gw, gh), interpolation=cv2.INTER_AREA) > 250).astype(np.float32)
    qg = _grid(warped, v, gh, gw)
    frames = [cv2.resize(c, (fw, fh), interpolation=cv2.INTER_AREA) for c in cands]
    sig = 0.0
    if v.get("match_blur"):
        errs = []
        for lv in v["match_blur"]:
            s = lv * max(fh, fw) / 256
            g0 = _grid(cv2.GaussianBlur(frames[0], (0, 0), s) if s else frames[0], v, gh, gw)
            errs.append((float((np.abs(qg - g0).sum(0) * seen).sum()), s))
        sig = min(errs)[1]
    cg = np.stack([_grid(cv2.GaussianBlur(f, (0, 0), sig) if sig else f, v, gh, gw) for f in frames])
    blur = max(gh, gw) / 96 if not v["squash"] else gw / 96
    diff = []
    for c in cg:
        if v.get("shift"):
            r = v["shift"]
            d = np.min([np.abs(qg - np.stack([cv2.warpAffine(ch, np.float32([[1, 0, dx], [0, 1, dy]]), (gw, gh),
                                                              borderMode=cv2.BORDER_REPLICATE) for ch in c])).sum(0)
                        for dy in range(-r, r + 1) for dx in range(-r, r + 1)], axis=0)
        else:
            d = np.abs(qg - c).sum(0)
        diff.append(cv2.GaussianBlur(d, (0, 0), blur))
    diff = np.stack(diff)
    region = {(i, j): cv2.GaussianBlur(np.abs(cg[i] - cg[j]).sum(0), (0, 0), blur) * seen
              for i in range(k) for j in range(i + 1, k)}
    if v.get("pairwise"):
        p = np.zeros((k, k), np.float32)
        for (i, j), R in region.items():
            R = R ** v.get("pow", 1)
            p[i, j] = float((R * (diff[j] - diff[i])).sum() / max(float(R.sum()), 1e-6))
            p[j, i] = -p[i, j]
        return (p.sum(1) / (k - 1)).astype(np.float32)
    where = sum(region.values())
    agree = -(diff * where).sum(axis=(1, 2)) / max(float(where.sum()), 1e-6)
    return (agree - agree.mean()).astype(np.float32)


def print_by_edit(benchmark: Path, split: str, runs: dict[str, tuple], r_lab: np.ndarray, q_lab: np.ndarray,
                  mu: float) -> None:
    """Top-1 per sibling edit of the capture's type (from the benchmark manifest), re-ranked and verified
    by each variant, and where the errors land: what a look-alike split's errors are made of."""
    import collections
    import json

    man = json.loads((benchmark / "manifest.json").read_text())["splits"][split]
    edit = {r["type"]: (r.get("sibling") or {}).get("edit") or "template" for r in man["register"]}
    kinds = np.asarray([edit.get(lab, "?") for lab in q_lab])
    own = np.searchsorted(r_lab, q_lab) if np.all(r_lab[:-1] <= r_lab[1:]) else \
        np.asarray([int(np.flatnonzero(r_lab == lab)[0]) for lab in q_lab])
    names = list(runs)
    ks, _, registered = runs[names[0]]
    right = {"re-ranked": np.argmax(ks, 1) == own}
    for v in names:
        ks, kd, _ = runs[v]
        right[v] = np.argmax(ks + mu * kd, 1) == own
    print(f"\n{split}, mu {mu:g}: top-1 per sibling edit of the capture's type\n")
    print("| edit | captures | registered | " + " | ".join(right) + " |\n|---|---:|---:|" + "---:|" * len(right))
    for k in sorted(set(kinds.tolist())):
        m = kinds == k
        print(f"| {k} | {int(m.sum())} | {registered[m].mean():.3f} | "
              + " | ".join(f"{r[m].mean():.3f}" for r in right.values()) + " |")
    ks, kd, _ = runs[names[0]]
    pred = np.argmax(ks + mu * kd, 1)
    wrong = np.flatnonzero(pred != own)
    same_set = np.mean([r_lab[pred[i]].rsplit("-", 1)[0] == q_lab[i].rsplit("-", 1)[0] for i in wrong]) if len(wrong) else 0
    pairs = collections.Counter(f"{kinds[i]} -> {edit.get(r_lab[pred[i]], '?')}" for i in wrong).most_common(8)
    print(f"\n{names[0]}: {len(wrong)} errors, {same_set:.0%} within the capture's own sibling set; most common "
          f"(capture's edit -> edit taken for): {', '.join(f'{p} {n}' for p, n in pairs)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--mu", type=float, action="append", default=None)
    ap.add_argument("--capture-side", type=int, default=P.GRAY_SIDE,
                    help="captures are compared at this longest side (the product keeps 320)")
    ap.add_argument("--by-edit", type=float, default=None, metavar="MU",
                    help="also, at this mu: top-1 per sibling edit (look-alike splits) re-ranked and verified, and "
                         "how many captures registered")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/docretriever/verify-proto").expanduser())
    a = ap.parse_args()
    import encoders

    enc = encoders.load()
    sess = A.session_with_map(str(enc.path), A.MAP_OUTPUTS["b3"])
    mus = a.mu or [1.0, 2.0, 3.0]
    f = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"model {enc.name} ({enc.fingerprint[:12]}), re-ranked top-5 (lambda 2.4), registration as shipped "
          f"(keypoints at {P.SIDE} px, ratio {P.RATIO}, >= {P.MIN_INLIERS} inliers); captures at {a.capture_side} px\n")
    print("| split | variant | mu | TPR@1e-4 | TPR@1e-3 | top-1 | mixed DIR@FPIR1e-2 (cos+margin) | s |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for name in a.split:
        s = E.load_split(a.benchmark, name)
        parts = ("register", "queries", "unknown")
        paths = {part: [p for p, _ in getattr(s, part)] for part in parts}
        feats = cached(a.cache / f"{name}-{enc.fingerprint[:12]}-features.pkl",
                       lambda: {part: A.encode(sess, enc, paths[part]) for part in parts})
        prints = cached(a.cache / f"{name}-prints-{P.KEYPOINTS}-{P.SIDE}.pkl",
                        lambda: {part: prepare(paths[part], P.KEYPOINTS, part != "register", P.SIDE) for part in parts})
        rf, rm = feats["register"]

        def geometry(part: str):
            """Re-ranked scores, top-5, and (homography, reference column) or None per capture."""
            qf, qm = feats[part]
            sc = A.rescored(qf @ rf.T, qm, rm, 5, 2.4)
            top = np.argsort(-sc, axis=1)[:, :5]
            found = []
            for n, cand in enumerate(top):
                got = None
                for c in cand[:2]:
                    H, inl = P.homography(prints[part][n], prints["register"][c])
                    if H is not None and inl >= P.MIN_INLIERS:
                        got = (H, int(c))
                        break
                found.append(got)
            return sc, top, found

        geo = {part: cached(a.cache / f"{name}-geometry-{part}.pkl", lambda: geometry(part))
               for part in ("queries", "unknown")}
        exemplars = load_images(paths["register"], 1000)
        captures = {part: load_images(paths[part], a.capture_side) for part in ("queries", "unknown")}
        r_lab = np.asarray([lab for _, lab in s.register])
        q_lab = np.asarray([lab for _, lab in s.queries])
        by_edit: dict[str, tuple] = {}
        for vname in a.variant:
            t0 = time.time()
            out = {}
            for part in ("queries", "unknown"):
                sc, top, found = geo[part]
                d = np.zeros_like(sc)
                for n, cand in enumerate(top):
                    if found[n] is not None:
                        H, ref = found[n]
                        d[n, cand] = deltas(captures[part][n], prints[part][n], H, prints["register"][ref].size,
                                            [exemplars[j] for j in cand], VARIANTS[vname])
                out[part] = (sc, d)
            (ks, kd), (us, ud) = out["queries"], out["unknown"]
            dt = time.time() - t0
            for mu in mus:
                m = A.summary(A.score_sets(ks + mu * kd, q_lab, us + mu * ud, r_lab))
                print(f"| {name} | {vname} | {mu:g} | {f(m['tpr@0.0001'])} | {f(m['tpr@0.001'])} | {m['top1']:.4f} "
                      f"| {f(m.get('dir[cosine+margin]'))} | {dt:.0f} |", flush=True)
            if a.by_edit is not None:
                by_edit[vname] = (ks, kd, np.asarray([x is not None for x in geo["queries"][2]]))
        if a.by_edit is not None:
            print_by_edit(a.benchmark, name, by_edit, r_lab, q_lab, a.by_edit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
