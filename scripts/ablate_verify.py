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
from encoders import pageprint as P  # noqa: E402

cv2.setNumThreads(1)


def cached(path: Path, make):
    """The pickled value at ``path``, made (and kept) if absent."""
    if path.exists():
        return pickle.loads(path.read_bytes())
    t0 = time.time()
    value = make()
    print(f"[{path.name}: made in {time.time() - t0:.0f}s]", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(value))
    tmp.replace(path)
    return value


def prepare(paths: list[Path], n_kp: int, keep_gray: bool, side: int) -> list:
    """Page prints of the files (exemplars packed and unpacked, as a gallery would keep them)."""
    out = []
    for p in paths:
        data = np.fromfile(str(p), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2)
        if img is None:
            raise ValueError(f"{p}: cannot decode")
        pp = P.of_image(img, n_kp, keep_gray=keep_gray, side=side)
        out.append(pp if keep_gray else P.unpack(P.pack(pp, n_kp), n_kp))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--lam", type=float, action="append", default=None,
                    help="the local-map re-ranking weight (shipped 2.4)")
    ap.add_argument("--mu", type=float, action="append", default=None)
    ap.add_argument("--kp", type=int, default=P.KEYPOINTS)
    ap.add_argument("--min-inliers", type=int, default=P.MIN_INLIERS)
    ap.add_argument("--side", type=int, default=P.SIDE, help="longest side keypoints are found at")
    ap.add_argument("--ratio", type=float, default=P.RATIO, help="Lowe's ratio test on keypoint matches")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/docretriever/verify-proto").expanduser())
    ap.add_argument("--limit", type=int, default=0, help="first N queries only (quick looks)")
    ap.add_argument("--verifier", type=Path, default=None,
                    help="a learned comparison (scripts/train_verifier.py best.pt) in place of the fixed rule")
    ap.add_argument("--gate", type=float, default=None,
                    help="verify only queries whose best two re-ranked scores are closer than this")
    a = ap.parse_args()
    import encoders

    enc = encoders.load(a.model)
    learned = None
    if a.verifier is not None:
        import torch

        from train_verifier import learned_deltas, load_verifier

        torch.set_num_threads(1)
        learned = load_verifier(a.verifier)
        print(f"comparison: learned ({a.verifier})")
    sess = A.session_with_map(str(enc.path), A.MAP_OUTPUTS["b3"])
    mus = a.mu or [0.0, 0.5, 1.0, 2.0, 4.0]
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lams = a.lam or [2.4]
    print(f"model {enc.name} ({enc.fingerprint[:12]}), k {a.k}, keypoints {a.kp}, "
          f"found at {a.side} px, ratio {a.ratio}, >= {a.min_inliers} inliers; page print {P.row_bytes(a.kp)} bytes\n")
    print("| split | lambda | mu | TPR@1e-4 | TPR@1e-3 | AUROC | top-1 | mixed DIR@FPIR1e-2 cos / cos+margin "
          "| dense DIR@FPIR1e-2 cos / cos+margin |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in a.split:
        s = E.load_split(a.benchmark, name)
        feats_file = a.cache / f"{name}-{enc.fingerprint[:12]}-features.pkl"
        prints_file = a.cache / f"{name}-prints-{a.kp}-{a.side}.pkl"
        parts = ("register", "queries", "unknown")
        paths = {part: [p for p, _ in getattr(s, part)] for part in parts}
        feats = cached(feats_file, lambda: {part: A.encode(sess, enc, paths[part]) for part in parts})
        prints = cached(prints_file, lambda: {part: prepare(paths[part], a.kp, part != "register", a.side)
                                              for part in parts})
        D = {part: (*feats[part], prints[part]) for part in parts}
        rf, rm, rv = D["register"]
        qf, qm, qv = D["queries"]
        uf, um, uv = D["unknown"]
        r_lab = np.asarray([lab for _, lab in s.register])
        q_lab = np.asarray([lab for _, lab in s.queries])
        if a.limit:
            qf, qm, qv, q_lab = qf[:a.limit], qm[:a.limit], qv[:a.limit], q_lab[:a.limit]
        u_lab = np.asarray([lab for _, lab in s.unknown])

        def scored(qi: np.ndarray, ui: np.ndarray, cols: np.ndarray, lam: float):
            """Re-ranked scores and verification deltas of queries ``qi`` and unknowns ``ui`` against
            the register columns ``cols`` (the whole register, or one dense register)."""
            out = []
            tried = 0
            for f_, m_, v_, rows in ((qf, qm, qv, qi), (uf, um, uv, ui)):
                sc = A.rescored(f_[rows] @ rf[cols].T, m_[rows], rm[cols], a.k, lam)
                d = np.zeros_like(sc)
                top = np.argsort(-sc, axis=1)[:, :a.k]
                for n, cand in enumerate(top):
                    if a.gate is not None and sc[n, cand[0]] - sc[n, cand[1]] >= a.gate:
                        continue
                    tried += 1
                    if learned is not None:
                        d[n, cand] = learned_deltas(learned, v_[rows[n]], [rv[cols[j]] for j in cand])
                        continue
                    d[n, cand] = P.verify_deltas(v_[rows[n]], [rv[cols[j]] for j in cand], a.min_inliers,
                                                 ratio=a.ratio)
                out += [sc, d]
            scored.tried = tried
            return out

        every_q, every_u, every_r = np.arange(len(qf)), np.arange(len(uf)), np.arange(len(rf))
        groups = A.dense_registers(s, r_lab, q_lab, u_lab)
        for lam in lams:
            t0 = time.time()
            known, vk, unknown, vu = scored(every_q, every_u, every_r, lam)
            n_q = len(known) + len(unknown)
            if a.gate is not None:
                n_v = int((vk != 0).any(axis=1).sum() + (vu != 0).any(axis=1).sum())
                print(f"| {name} | gate {a.gate:g}: {scored.tried} of {n_q} queries verified ({n_v} registered) |",
                      flush=True)
            print(f"[{name}: verified {n_q} queries in {time.time() - t0:.0f}s, "
                  f"{1000 * (time.time() - t0) / n_q:.1f} ms each]", file=sys.stderr, flush=True)
            dense = [(qi, ui, cols, scored(qi, ui, cols, lam)) for qi, ui, cols in groups]
            for mu in mus:
                m = A.summary(A.score_sets(known + mu * vk, q_lab, unknown + mu * vu, r_lab))
                parts = [A.score_sets(kq + mu * dq, q_lab[qi], ku + mu * du, r_lab[cols])
                         for qi, ui, cols, (kq, dq, ku, du) in dense]
                dm = A.summary(A.pooled(parts)) if parts else {}
                print(f"| {name} | {lam:g} | {mu:g} | {f(m['tpr@0.0001'])} | {f(m['tpr@0.001'])} | {m['auroc']:.4f} "
                      f"| {m['top1']:.4f} | {f(m.get('dir[cosine]'))} / {f(m.get('dir[cosine+margin]'))} "
                      f"| {f(dm.get('dir[cosine]'))} / {f(dm.get('dir[cosine+margin]'))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
