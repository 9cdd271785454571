#!/usr/bin/env python
"""Test-time ablation: verify the top-k by registering the capture onto each candidate's exemplar.

    python scripts/ablate_verify.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val-lookalike --split val

Siblings differ in one element (a block added, removed or moved, a count of marks, a title, a colour).
The CNN's cell-by-cell re-ranking compares maps at fixed positions, so a capture's perspective and
crop blur the one place that matters.  Here the capture is aligned onto each candidate exemplar by a
homography (SIFT keypoints, MAGSAC), both are contrast-normalised, and each candidate is scored by how
well the aligned capture matches it where the candidates differ from one another.  Each candidate's
score moves by ``mu`` x (its verification score - the candidates' mean), on top of the shipped
cosine + local-map re-ranking.  Chosen on val splits, then reported on test.
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

cv2.setNumThreads(1)
SIDE = 640        # keypoints are found on the image shrunk to this longest side
GRID_W = 96       # aligned images are compared at this width
HALF = np.diag([0.5, 0.5, 1.0])


def gray_at(path: Path, side: int = SIDE) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    g = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if g is None:
        raise ValueError(f"{path}: cannot decode")
    s = side / max(g.shape)
    return cv2.resize(g, (round(g.shape[1] * s), round(g.shape[0] * s)), interpolation=cv2.INTER_AREA)


_sift = None
_clahe = None


def keypoints(gray: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints and descriptors (uint8) on a contrast-equalised page: ORB and ECC aligned too
    few blurred, tilted captures (about 40 % of a val-lookalike sample against SIFT's 76 %)."""
    global _sift, _clahe
    if _sift is None:
        _sift, _clahe = cv2.SIFT_create(nfeatures=n), cv2.createCLAHE(2.0, (8, 8))
    kp, des = _sift.detectAndCompute(_clahe.apply(gray), None)
    pts = np.float32([k.pt for k in kp]).reshape(-1, 2)
    return pts, (np.clip(des, 0, 255).astype(np.uint8) if des is not None else np.zeros((0, 128), np.uint8))


def normalised(gray: np.ndarray) -> np.ndarray:
    """Local contrast normalisation: lighting, colour casts and paper tone cancel; edges and marks stay."""
    g = gray.astype(np.float32)
    mu = cv2.GaussianBlur(g, (0, 0), 6)
    sd = np.sqrt(cv2.GaussianBlur((g - mu) ** 2, (0, 0), 6)) + 8.0
    return (g - mu) / sd


def prepare(paths: list[Path], n_kp: int) -> list[dict]:
    out = []
    for p in paths:
        g = gray_at(p)
        pts, des = keypoints(g, n_kp)
        small = cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)
        out.append({"shape": small.shape, "pts": pts, "des": des, "gray": small})
    return out


_flann = cv2.FlannBasedMatcher(dict(algorithm=1, trees=4), dict(checks=32))


def homography(q: dict, r: dict, ratio: float = 0.8) -> tuple[np.ndarray | None, int]:
    """Capture -> exemplar homography (keypoint coordinates) and its inlier count."""
    if len(q["des"]) < 8 or len(r["des"]) < 8:
        return None, 0
    pairs = _flann.knnMatch(q["des"].astype(np.float32), r["des"].astype(np.float32), k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 10:
        return None, 0
    src = q["pts"][[m.queryIdx for m in good]]
    dst = r["pts"][[m.trainIdx for m in good]]
    H, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 5.0)
    if H is None:
        return None, 0
    return H, int(mask.sum())


def verify_scores(q: dict, cands: list[dict], min_inliers: int, tries: int = 2, grid_w: int = GRID_W,
                  blur: float = 1.0) -> np.ndarray:
    """Per candidate: minus the weighted mean absolute difference between the aligned, normalised
    capture and the candidate, weighted where the candidates differ from one another; centred; 0s
    if the capture aligns onto none of the first ``tries`` candidates (siblings share one frame, so
    one alignment serves all)."""
    k = len(cands)
    H = None
    for ref in cands[:tries]:
        H, inl = homography(q, ref)
        if H is not None and inl >= min_inliers:
            break
        H = None
    if H is None:
        return np.zeros(k, np.float32)
    h, w = ref["shape"]
    gw, gh = grid_w, max(8, round(grid_w * h / w))
    Hs = HALF @ H @ np.linalg.inv(HALF)  # keypoints were found at twice the compared size
    warped = cv2.warpPerspective(q["gray"], Hs, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = cv2.warpPerspective(np.full(q["gray"].shape, 255, np.uint8), Hs, (w, h), flags=cv2.INTER_NEAREST)
    qn = cv2.resize(normalised(warped), (gw, gh), interpolation=cv2.INTER_AREA)
    vm = (cv2.resize(valid, (gw, gh), interpolation=cv2.INTER_AREA) > 250).astype(np.float32)
    cn = []
    for c in cands:
        g = c["gray"] if c["shape"] == ref["shape"] else cv2.resize(c["gray"], (w, h), interpolation=cv2.INTER_AREA)
        cn.append(cv2.resize(normalised(g), (gw, gh), interpolation=cv2.INTER_AREA))
    cn = np.stack(cn)
    wmap = np.zeros((gh, gw), np.float32)
    for i in range(k):
        for j in range(i + 1, k):
            wmap += np.abs(cn[i] - cn[j])
    wmap = cv2.GaussianBlur(wmap, (0, 0), blur) * vm
    d = np.stack([cv2.GaussianBlur(np.abs(qn - c), (0, 0), blur) for c in cn])
    s = -(d * wmap).sum(axis=(1, 2)) / max(float(wmap.sum()), 1e-6)
    return (s - s.mean()).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--lam", type=float, action="append", default=None,
                    help="the local-map re-ranking weight (shipped 2.4)")
    ap.add_argument("--grid-w", type=int, default=GRID_W, help="width the aligned pages are compared at")
    ap.add_argument("--blur", type=float, default=1.0, help="Gaussian sigma (grid cells) of the difference maps")
    ap.add_argument("--mu", type=float, action="append", default=None)
    ap.add_argument("--kp", type=int, default=1000)
    ap.add_argument("--min-inliers", type=int, default=15)
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/docretriever/verify-proto").expanduser())
    ap.add_argument("--limit", type=int, default=0, help="first N queries only (quick looks)")
    ap.add_argument("--gate", type=float, default=None,
                    help="verify only queries whose best two re-ranked scores are closer than this")
    a = ap.parse_args()
    import encoders

    enc = encoders.load(a.model)
    sess = A.session_with_map(str(enc.path), A.MAP_OUTPUTS["b3"])
    mus = a.mu or [0.0, 0.5, 1.0, 2.0, 4.0]
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lams = a.lam or [2.4]
    print(f"model {enc.name} ({enc.fingerprint[:12]}), k {a.k}, keypoints {a.kp}, grid width {a.grid_w}, "
          f"blur {a.blur}\n")
    print("| split | lambda | mu | TPR@1e-4 | TPR@1e-3 | AUROC | top-1 | mixed DIR@FPIR1e-2 cos / cos+margin |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in a.split:
        s = E.load_split(a.benchmark, name)
        cache = a.cache / f"{name}-{enc.fingerprint[:12]}-{a.kp}.pkl"
        if cache.exists():
            D = pickle.loads(cache.read_bytes())
        else:
            t0 = time.time()
            D = {}
            for part in ("register", "queries", "unknown"):
                paths = [p for p, _ in getattr(s, part)]
                D[part] = (*A.encode(sess, enc, paths), prepare(paths, a.kp))
            print(f"[{name}: encoded in {time.time() - t0:.0f}s]", file=sys.stderr, flush=True)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(D))
        rf, rm, rv = D["register"]
        qf, qm, qv = D["queries"]
        uf, um, uv = D["unknown"]
        r_lab = np.asarray([lab for _, lab in s.register])
        q_lab = np.asarray([lab for _, lab in s.queries])
        if a.limit:
            qf, qm, qv, q_lab = qf[:a.limit], qm[:a.limit], qv[:a.limit], q_lab[:a.limit]
        for lam in lams:
            t0 = time.time()
            known = A.rescored(qf @ rf.T, qm, rm, a.k, lam)
            unknown = A.rescored(uf @ rf.T, um, rm, a.k, lam)
            vk = np.zeros_like(known)
            vu = np.zeros_like(unknown)
            for sc, views, out in ((known, qv, vk), (unknown, uv, vu)):
                top = np.argsort(-sc, axis=1)[:, :a.k]
                for i, cand in enumerate(top):
                    if a.gate is not None and sc[i, cand[0]] - sc[i, cand[1]] >= a.gate:
                        continue
                    out[i, cand] = verify_scores(views[i], [rv[j] for j in cand], a.min_inliers,
                                                 grid_w=a.grid_w, blur=a.blur)
            n_q = len(known) + len(unknown)
            if a.gate is not None:
                n_v = int((vk != 0).any(axis=1).sum() + (vu != 0).any(axis=1).sum())
                print(f"[{name}: gate {a.gate:g}: {n_v} of {n_q} queries aligned and verified]", file=sys.stderr, flush=True)
            print(f"[{name}: verified {n_q} queries in {time.time() - t0:.0f}s, "
                  f"{1000 * (time.time() - t0) / n_q:.1f} ms each]", file=sys.stderr, flush=True)
            for mu in mus:
                m = A.summary(A.score_sets(known + mu * vk, q_lab, unknown + mu * vu, r_lab))
                print(f"| {name} | {lam:g} | {mu:g} | {f(m['tpr@0.0001'])} | {f(m['tpr@0.001'])} | {m['auroc']:.4f} "
                      f"| {m['top1']:.4f} | {f(m.get('dir[cosine]'))} / {f(m.get('dir[cosine+margin]'))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
