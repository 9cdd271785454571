#!/usr/bin/env python
"""Test-time ablation: re-rank the top-k by the page's spatial feature map, weighted where the
candidates differ.  Does it tell look-alike types apart without training?

    python scripts/ablate_local_rerank.py --benchmark ~/.cache/docretriever/benchmark-v4 \
        --split val-lookalike --split val

Siblings differ in one small element, and the 256-d feature spreads that difference over the whole
page.  The network's last feature map (the squeeze head's input, C x 6 x 6 at 192 px) still says
*where* things are.  For each query, among its top-k exemplars by cosine: per cell, how much the
candidates' maps differ from one another (1 - their mean pairwise cosine) weights the cell; each
candidate gains ``lambda`` x its weighted mean cell cosine with the query (centred over the
candidates, so only their order changes).  Reported per split and lambda: top-1, and top-1 among
queries whose top-k holds a sibling type.  Chosen on val splits, then reported on test splits.
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

MAP_OUTPUTS = {"fine": "/model/backbone/trunk/trunk.4/trunk.4.0/bn1/act/Clip_output_0",  # 240 x 24 x 24
               "b2": "/model/backbone/trunk/trunk.3/trunk.3.1/Add_output_0",  # 40 x 24 x 24
               "b3": "/model/backbone/trunk/trunk.4/trunk.4.2/Add_output_0",  # 80 x 12 x 12
               "mid112": "/model/backbone/trunk/trunk.5/trunk.5.2/Add_output_0",  # 112 x 12 x 12 (its input)
               "mid": "/model/backbone/trunk/trunk.6/trunk.6.0/bn1/act/Clip_output_0",  # 672 x 12 x 12
               "top": "/model/backbone/top/top.1/top.1.1/act/Clip_output_0",
               "squeeze": "/model/head/squeeze/Conv_output_0"}
# Fused maps: each layer's cells made unit length on the coarsest grid (finer maps average-pooled), then joined.
MAP_OUTPUTS["b3+b2"] = (MAP_OUTPUTS["b3"], MAP_OUTPUTS["b2"])


def session_with_map(model_path: str, tensor: str | tuple[str, ...]):
    """An ONNX Runtime session giving the model's feature and the named intermediate map(s)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(model_path)
    for t in (tensor,) if isinstance(tensor, str) else tensor:
        m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def encode(sess, encoder, paths: list[Path], batch: int = 32, n_maps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d), unit cell vectors (n, cells, C)) of each file (``n_maps`` > 1: the session's last
    outputs fused, see ``MAP_OUTPUTS``)."""
    from encoders.decode import read_image
    from encoders.preprocess import preprocess

    feats, maps, buf = [], [], []

    def flush() -> None:
        if buf:
            # the feature and the named map(s) only (a shipped model may already have a local output)
            f, *ms = sess.run([sess.get_outputs()[0].name, *(o.name for o in sess.get_outputs()[-n_maps:])],
                              {sess.get_inputs()[0].name: np.stack(buf)})
            feats.append(f)
            side = min(x.shape[2] for x in ms)
            parts = []
            for m in ms:
                r = m.shape[2] // side
                m = m.reshape(m.shape[0], m.shape[1], side, r, side, r).mean(axis=(3, 5))
                m = m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1)  # (n, cells, C)
                parts.append(m / np.maximum(np.linalg.norm(m, axis=2, keepdims=True), 1e-6))
            m = np.concatenate(parts, axis=2)
            maps.append(m / np.maximum(np.linalg.norm(m, axis=2, keepdims=True), 1e-6))
            buf.clear()

    for p in paths:
        buf.append(preprocess(read_image(str(p), encoder.input_size), encoder.contract))
        if len(buf) >= batch:
            flush()
    flush()
    return np.concatenate(feats), np.concatenate(maps).astype(np.float32)


def rerank_top1(sim: np.ndarray, q_maps: np.ndarray, r_maps: np.ndarray, k: int, lam: float,
                weights: str = "diff", tol: int = 0) -> np.ndarray:
    """Index of the chosen exemplar per query after re-ranking its top-k."""
    top = np.argsort(-sim, axis=1)[:, :k]
    out = np.empty(len(sim), dtype=np.int64)
    for i, cand in enumerate(top):
        cm = r_maps[cand]                                     # (k, cells, C)
        pair = np.einsum("icd,jcd->cij", cm, cm)              # per cell, candidates' cosines
        off = (pair.sum(axis=(1, 2)) - np.trace(pair, axis1=1, axis2=2)) / max(k * (k - 1), 1)
        w = np.clip(1.0 - off, 0.0, None) if weights == "diff" else np.ones_like(off)  # where candidates differ
        if tol:
            side = int(round(np.sqrt(cm.shape[1])))
            full = np.einsum("qd,icd->icq", q_maps[i], cm).reshape(k, side, side, side, side)  # i, ey, ex, qy, qx
            best = np.full((k, side, side), -1.0, dtype=np.float32)
            for dy in range(-tol, tol + 1):
                for dx in range(-tol, tol + 1):
                    ys, xs = np.arange(side), np.arange(side)
                    qy, qx = np.clip(ys + dy, 0, side - 1), np.clip(xs + dx, 0, side - 1)
                    v = full[:, ys[:, None], xs[None, :], qy[:, None], qx[None, :]]
                    best = np.maximum(best, v)
            cell = best.reshape(k, -1)
        else:
            cell = np.einsum("cd,icd->ic", q_maps[i], cm)     # (k, cells) query-candidate cosines
        local = (cell * w).sum(axis=1) / max(w.sum(), 1e-6)
        score = sim[i, cand] + lam * (local - local.mean())
        out[i] = cand[int(np.argmax(score))]
    return out


def rescored(sim: np.ndarray, q_maps: np.ndarray, r_maps: np.ndarray, k: int, lam: float,
             weights: str = "diff", tol: int = 0, align: bool = False) -> np.ndarray:
    """``sim`` with each query's top-k entries moved by ``lam`` x (its local score - the top-k mean):
    the re-ranked score of every (query, exemplar) pair, for pair tables and open-set rates."""
    out = sim.copy()
    if lam == 0 or sim.shape[1] < 2:
        return out
    k = min(k, sim.shape[1])
    top = np.argsort(-sim, axis=1)[:, :k]
    for i, cand in enumerate(top):
        cm = aligned_maps(q_maps[i], r_maps[cand]) if align else r_maps[cand]
        out[i, cand] += lam * local_scores(q_maps[i], cm, weights, tol)
    return out


def aligned_maps(q_map: np.ndarray, cm: np.ndarray, thr: float = 1.5) -> np.ndarray:
    """The candidates' maps (k, cells, C) resampled into the query's frame by one homography fitted
    (RANSAC, ``thr`` cells) to mutual nearest-neighbour cells of the query and the first candidate;
    unchanged when fewer than 8 cells agree."""
    import cv2

    side = int(round(np.sqrt(q_map.shape[0])))
    yy, xx = np.mgrid[0:side, 0:side]
    cen = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    c = q_map @ cm[0].T
    a, b = c.argmax(1), c.argmax(0)
    mut = np.flatnonzero(b[a] == np.arange(len(a)))
    if len(mut) < 8:
        return cm
    H, mask = cv2.findHomography(cen[mut], cen[a[mut]], cv2.RANSAC, thr)
    if H is None or mask.sum() < 8:
        return cm
    p = cv2.perspectiveTransform(cen[None], H)[0]
    x, y = np.clip(p[:, 0], 0, side - 1), np.clip(p[:, 1], 0, side - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, side - 1), np.minimum(y0 + 1, side - 1)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    g = cm.reshape(len(cm), side, side, -1)
    out = (g[:, y0, x0] * (1 - ax) * (1 - ay) + g[:, y0, x1] * ax * (1 - ay)
           + g[:, y1, x0] * (1 - ax) * ay + g[:, y1, x1] * ax * ay)
    return (out / np.maximum(np.linalg.norm(out, axis=2, keepdims=True), 1e-6)).astype(np.float32)


def znormed(scores: np.ndarray, sim: np.ndarray, skip: int, n: int) -> np.ndarray:
    """Per-query score normalisation against the query's own cohort: its cosines ranked skip+1 ..
    skip+n (the register's other exemplars): (score - their mean) / their std."""
    top = -np.sort(-sim, axis=1)[:, skip:skip + n]
    return (scores - top.mean(1, keepdims=True)) / (top.std(1, keepdims=True) + 1e-3)


CENTER = "mean"  # --center: "max" scores each candidate against its strongest rival instead


def local_scores(q_map: np.ndarray, cm: np.ndarray, weights: str = "diff", tol: int = 0) -> np.ndarray:
    """Centred weighted cell cosine of one query map against its candidates' maps (k, cells, C):
    minus the candidates' mean, or (``CENTER == "max"``) minus the best of the other candidates."""
    k = len(cm)
    pair = np.einsum("icd,jcd->cij", cm, cm)
    off = (pair.sum(axis=(1, 2)) - np.trace(pair, axis1=1, axis2=2)) / max(k * (k - 1), 1)
    w = np.clip(1.0 - off, 0.0, None) if weights == "diff" else np.ones_like(off)
    cell = np.einsum("cd,icd->ic", q_map, cm)
    local = (cell * w).sum(axis=1) / max(w.sum(), 1e-6)
    if CENTER == "max" and k > 1:
        order = np.argsort(-local)
        rival = np.where(np.arange(k) == order[0], local[order[1]], local[order[0]])
        return local - rival
    return local - local.mean()


def score_sets(sim_known: np.ndarray, known_labels: np.ndarray, sim_unknown: np.ndarray | None,
               reg_labels: np.ndarray):
    """ScoreSets (retriever.metrics) from (query x exemplar) score matrices: a type scores its best exemplar."""
    from retriever import metrics as M

    types = np.unique(reg_labels)
    col_type = np.searchsorted(types, reg_labels)

    def per_type(sim: np.ndarray) -> np.ndarray:
        out = np.full((len(sim), len(types)), -np.inf, dtype=np.float32)
        for j, t in enumerate(col_type):
            out[:, t] = np.maximum(out[:, t], sim[:, j])
        return out

    acc = M.ScoreAccumulator(types, n_exemplars=len(reg_labels))
    acc.add_known(per_type(sim_known), np.searchsorted(types, known_labels))
    if sim_unknown is not None and len(sim_unknown):
        acc.add_unknown(per_type(sim_unknown))
    return acc.finish()


def summary(sets, fpir: float = 1e-2) -> dict[str, float | None]:
    from retriever import metrics as M
    from retriever import openset as O

    out: dict[str, float | None] = {"top1": float(np.mean(sets.known_correct)), "auroc": M.auroc(sets.pos, sets.neg, True)}
    for fpr in (1e-4, 1e-3):
        t = M.threshold_at(sets.neg, fpr)
        out[f"tpr@{fpr:g}"] = None if t is None else float(np.mean(sets.pos >= t))
    if len(sets.unknown_best):
        scores = O.scores_from_sets(sets, unknowns=True)
        for name in ("cosine", "cosine+margin"):
            row = O.dir_table(scores, O.RULES[name], [fpir])[0]
            out[f"dir[{name}]"] = row["dir"] if row.get("measurable") else None
    return out


def dense_registers(split, r_lab: np.ndarray, q_lab: np.ndarray, u_lab: np.ndarray):
    """(query rows, unknown rows, register columns) of each dense register of ``split`` (one family's
    types, as scripts/evaluate.py makes them) that has both known and unknown captures."""
    out = []
    for g in E.dense_groups(split):
        cols = np.flatnonzero([E.type_group(t) == g for t in r_lab])
        qi = np.flatnonzero([E.type_group(t) == g for t in q_lab])
        ui = np.flatnonzero([E.type_group(t) == g for t in u_lab])
        if len(qi) and len(ui):
            out.append((qi, ui, cols))
    return out


def pooled(parts: list):
    """One ScoreSets of several dense registers (rates pooled), as scripts/evaluate.py pools them."""
    from retriever import metrics as M

    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return M.ScoreSets(types=cat("types"), n_exemplars=sum(p.n_exemplars for p in parts), pos=cat("pos"),
                       neg=np.sort(cat("neg")), known_best=cat("known_best"), known_pred=np.zeros(0, np.int64),
                       known_correct=cat("known_correct"), unknown_best=cat("unknown_best"),
                       unknown_pred=np.zeros(0, np.int64), known_second=cat("known_second"),
                       known_loo_best=cat("known_loo_best"), known_loo_second=cat("known_loo_second"),
                       unknown_second=cat("unknown_second"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--map", choices=sorted(MAP_OUTPUTS), default="b3")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--lam", type=float, action="append", default=None)
    ap.add_argument("--weights", choices=["diff", "uniform"], default="diff")
    ap.add_argument("--tol", type=int, default=0, help="cells a query cell may be displaced by (max over them)")
    ap.add_argument("--align", action="store_true", help="resample candidates' maps into the query's frame first "
                    "(one homography from mutually nearest cells; --full only)")
    ap.add_argument("--znorm", type=int, nargs=2, metavar=("SKIP", "N"), default=None,
                    help="score normalisation: each query's scores minus the mean (and over the std) of its "
                         "scores ranked SKIP+1 .. SKIP+N (--full only)")
    ap.add_argument("--center", choices=["mean", "max"], default="mean",
                    help="local scores minus the candidates' mean (shipped) or minus the best other candidate's")
    ap.add_argument("--full", action="store_true", help="pair table and open-set rates too (mixed and dense registers)")
    a = ap.parse_args()
    global CENTER
    CENTER = a.center
    import encoders

    enc = encoders.load(a.model)
    sess = session_with_map(str(enc.path), MAP_OUTPUTS[a.map])
    lams = a.lam or [0.0, 0.8, 1.6, 2.4, 3.2]
    print(f"model {enc.name} ({enc.fingerprint[:12]}), map {a.map}, k {a.k}, cell weights {a.weights}\n")
    if a.full:
        print("| split | lambda | TPR@1e-4 | TPR@1e-3 | AUROC | top-1 | mixed DIR@FPIR1e-2 cos / cos+margin "
              "| dense DIR@FPIR1e-2 cos / cos+margin |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| split | lambda | top-1 | top-1, queries with a sibling in the top-k |\n|---|---:|---:|---:|")
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name in a.split:
        s = E.load_split(a.benchmark, name)
        nm = 1 if isinstance(MAP_OUTPUTS[a.map], str) else len(MAP_OUTPUTS[a.map])
        rf, rm = encode(sess, enc, [p for p, _ in s.register], n_maps=nm)
        qf, qm = encode(sess, enc, [p for p, _ in s.queries], n_maps=nm)
        uf, um = encode(sess, enc, [p for p, _ in s.unknown], n_maps=nm) if s.unknown else (None, None)
        r_lab = np.asarray([lab for _, lab in s.register])
        q_lab = np.asarray([lab for _, lab in s.queries])
        u_lab = np.asarray([lab for _, lab in s.unknown])
        sim = qf @ rf.T
        for lam in lams:
            if not a.full:
                top = np.argsort(-sim, axis=1)[:, :a.k]
                group = np.asarray([E.type_group(t) for t in r_lab])
                q_group = np.asarray([E.type_group(t) for t in q_lab])
                hard = np.asarray([np.sum(group[c] == g) > 1 for c, g in zip(top, q_group)])
                pick = rerank_top1(sim, qm, rm, a.k, lam, a.weights, a.tol)
                ok = r_lab[pick] == q_lab
                print(f"| {name} | {lam:g} | {ok.mean():.4f} | {ok[hard].mean():.4f} (n={int(hard.sum())}) |", flush=True)
                continue
            known = rescored(sim, qm, rm, a.k, lam, a.weights, a.tol, a.align)
            unknown = rescored(uf @ rf.T, um, rm, a.k, lam, a.weights, a.tol, a.align) if uf is not None else None
            if a.znorm:
                known, unknown = znormed(known, sim, *a.znorm), znormed(unknown, uf @ rf.T, *a.znorm)
            mixed = summary(score_sets(known, q_lab, unknown, r_lab))
            parts = []
            for qi, ui, cols in dense_registers(s, r_lab, q_lab, u_lab):
                kq = rescored(sim[np.ix_(qi, cols)], qm[qi], rm[cols], a.k, lam, a.weights, a.tol, a.align)
                ku = rescored(uf[ui] @ rf[cols].T, um[ui], rm[cols], a.k, lam, a.weights, a.tol, a.align)
                if a.znorm:
                    kq = znormed(kq, sim[np.ix_(qi, cols)], *a.znorm)
                    ku = znormed(ku, uf[ui] @ rf[cols].T, *a.znorm)
                parts.append(score_sets(kq, q_lab[qi], ku, r_lab[cols]))
            dense = summary(pooled(parts)) if parts else {}
            print(f"| {name} | {lam:g} | {f(mixed['tpr@0.0001'])} | {f(mixed['tpr@0.001'])} | {mixed['auroc']:.4f} "
                  f"| {mixed['top1']:.4f} | {f(mixed.get('dir[cosine]'))} / {f(mixed.get('dir[cosine+margin]'))} "
                  f"| {f(dense.get('dir[cosine]'))} / {f(dense.get('dir[cosine+margin]'))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
