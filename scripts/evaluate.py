#!/usr/bin/env python
"""Evaluate encoders on the retrieval benchmark: exact TPR@FPR table, AUROC, top-1, open set.

    python scripts/evaluate.py --model runs/best.onnx --benchmark data/bench --split val \\
        --baselines --json out/eval.json --plots out/plots [--write-thresholds]

Benchmark layout (scripts/build_benchmark.py): ``DIR/<split>/register/<type>/*`` (clean
exemplars), ``DIR/<split>/queries/<type>/*`` (captures of registered types),
``DIR/<split>/unknown/<type>/*`` (captures of unregistered types, optional), ``DIR/manifest.json``.

Every query is scored against every register type (cosine, best exemplar per type); same type =
positive pair, other type = negative.  Thresholds come exactly from the sorted negatives
(accept iff cosine >= threshold; measured FPR <= target); rows with fewer than 1/FPR negatives
are reported as not measurable.  See retriever/metrics.py.

A model whose contract has a local map (``local``: k, weight) answers with the re-ranked score, so
that is what its row measures: each query's top-k exemplars by cosine move by weight x their local
delta (indexer/rerank.py), the others keep their cosine, then each type takes its best exemplar.
Its cosine alone is reported too, as ``<name> [cosine]`` (the gain, and what a gallery without maps
answers).  Dense registers re-rank within their own exemplars, as a gallery of those types would.

``--baselines`` measures two neighbours in the same run: raw-pixel thumbnails (16x16 gray,
mean-centred, unit length) and ImageNet EfficientNet-Lite0 GAP features without any training
(exported once with scripts/export_baseline.py and cached in ~/.cache/docretriever/).

``--write-thresholds`` stores the measured table (measurable rows, FPR = target) in the FIRST
model's ONNX metadata (for a model with a local map: the cosine table as ``threshold_table`` and
the re-ranked one as ``local.threshold_table``, in one write).  This changes the file's bytes and
therefore its fingerprint: galleries built with the old file must be rebuilt (or built after this step).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime as _dt
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from encoders.contract import LocalMap

from encoders.decode import IMAGE_SUFFIXES  # the one list for every reader
from retriever import metrics as M
from retriever import openset as O

SPLITS = ("val", "test", "val-lookalike", "test-lookalike")

cv2.setNumThreads(1)

BASELINES = ("pixels", "lite0")
REPO = Path(__file__).resolve().parent.parent


class EvaluationError(RuntimeError):
    """The benchmark or a model cannot be evaluated as asked; the message names what is wrong."""


# --------------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------------
@dataclass
class Split:
    root: Path
    split: str
    register: list[tuple[Path, str]]
    queries: list[tuple[Path, str]]
    unknown: list[tuple[Path, str]]
    manifest_sha256: str | None = None
    manifest_info: dict[str, Any] = field(default_factory=dict)
    type_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # the manifest's entry per type

    @property
    def types(self) -> list[str]:
        return sorted({lab for _, lab in self.register})

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.root), "split": self.split, "manifest_sha256": self.manifest_sha256,
                "manifest": self.manifest_info, "register_images": len(self.register),
                "register_types": len(self.types), "queries": len(self.queries),
                "query_types": len({lab for _, lab in self.queries}), "unknown_queries": len(self.unknown),
                "unknown_types": len({lab for _, lab in self.unknown})}


def _labelled_images(folder: Path) -> list[tuple[Path, str]]:
    """(image, label) below ``folder``; label = parent folder path relative to ``folder``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(folder)
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if rel == Path("."):
                raise EvaluationError(f"{folder / name}: image directly in {folder}; expected {folder}/<type>/<image>")
            out.append((Path(dirpath) / name, rel.as_posix()))
    return out


def load_split(root: str | os.PathLike, split: str) -> Split:
    root = Path(root)
    base = root / split
    if not base.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise EvaluationError(f"{base}: no such split directory (benchmark {root} has: {', '.join(have) or 'nothing'})")
    parts = {}
    for name in ("register", "queries", "unknown"):
        d = base / name
        if name != "unknown" and not d.is_dir():
            raise EvaluationError(f"{d}: missing; a benchmark split needs register/<type>/ and queries/<type>/ folders")
        parts[name] = _labelled_images(d) if d.is_dir() else []
    if not parts["register"]:
        raise EvaluationError(f"{base / 'register'}: no images")
    if not parts["queries"]:
        raise EvaluationError(f"{base / 'queries'}: no images")
    reg_types = {lab for _, lab in parts["register"]}
    stray = sorted({lab for _, lab in parts["queries"]} - reg_types)
    if stray:
        raise EvaluationError(f"{base / 'queries'}: types without a register exemplar: {stray[:10]}"
                              f"{' ...' if len(stray) > 10 else ''} (move them to unknown/ or add them to register/)")
    overlap = sorted({lab for _, lab in parts["unknown"]} & reg_types)
    if overlap:
        raise EvaluationError(f"{base / 'unknown'}: types that are registered: {overlap[:10]} (unknown/ must hold "
                              "only unregistered types)")
    sha, info, per_type = None, {}, {}
    man = root / "manifest.json"
    if man.is_file():
        data = man.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        try:
            loaded = json.loads(data)
            if isinstance(loaded, dict):  # scalar facts only: the full manifest may list every image
                info = {k: v for k, v in loaded.items() if isinstance(v, (str, int, float, bool)) or v is None}
                sp = (loaded.get("splits") or {}).get(split) or {}
                per_type = {e["type"]: e for e in sp.get("register", []) + sp.get("unknown", [])
                            if isinstance(e, dict) and "type" in e}
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{man}: not valid JSON ({exc})") from None
    return Split(root, split, parts["register"], parts["queries"], parts["unknown"], sha, info, per_type)


# --------------------------------------------------------------------------------------------------
# Encoders (models and baselines)
# --------------------------------------------------------------------------------------------------
class PixelBaseline:
    """Raw-pixel thumbnails: 16x16 gray, mean-centred, unit length (the floor any model must beat)."""

    kind = "baseline"
    name = "pixels-16x16-gray"
    dim = 256
    fingerprint = None
    path = None

    def encode(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        from encoders.decode import read_image

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, src in enumerate(images):
            gray = cv2.cvtColor(read_image(src, target_hw=(64, 64)), cv2.COLOR_BGR2GRAY)
            t = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
            t -= t.mean()
            n = float(np.linalg.norm(t))
            out[i] = t / n if n > 1e-6 else t
        return out


def cache_dir() -> Path:
    return Path(os.environ.get("DOCRETRIEVER_CACHE", Path.home() / ".cache" / "docretriever"))


def lite0_baseline_path() -> Path:
    """The untrained Lite0 GAP-1280 ONNX model, exported once into the cache (needs the [train] extra)."""
    target = cache_dir() / "lite0_gap.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    script = REPO / "scripts" / "export_baseline.py"
    print(f"exporting the Lite0 GAP baseline to {target} (once) ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "lite0_gap.onnx"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, str(script), "--out", str(out), "--dim", "1280"],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not out.is_file():
            raise EvaluationError(f"cannot export the Lite0 baseline with {script} (exit {proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        os.replace(out, target)
    return target


@dataclass
class Candidate:
    label: str          # unique display name
    kind: str           # "model" | "baseline"
    encoder: Any
    path: str | None


def load_candidates(models: Sequence[str], baselines: Sequence[str]) -> list[Candidate]:
    import encoders

    out: list[Candidate] = []
    seen: dict[str, int] = {}

    def unique(name: str) -> str:
        seen[name] = seen.get(name, 0) + 1
        return name if seen[name] == 1 else f"{name}#{seen[name]}"

    for m in models:
        enc = encoders.load(m, threads=1)
        out.append(Candidate(unique(enc.name), "model", enc, str(enc.path)))
    for b in baselines:
        if b == "pixels":
            out.append(Candidate(unique(PixelBaseline.name), "baseline", PixelBaseline(), None))
        elif b == "lite0":
            enc = encoders.load(lite0_baseline_path(), threads=1)
            out.append(Candidate(unique(enc.name), "baseline", enc, str(enc.path)))
        else:
            raise EvaluationError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
    return out


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def encode_with_maps(enc: Any, paths: Sequence[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and local maps (unit cell vectors, float16 as a gallery holds them) in one pass of
    the model; the maps are filled in place so a split's worth is never held twice."""
    feats, maps = [], None
    for i in range(0, len(paths), batch_size):
        f, m = enc.encode_batch(np.stack([enc.preprocess(p) for p in paths[i:i + batch_size]]), local=True)
        if maps is None:
            maps = np.empty((len(paths), *m.shape[1:]), dtype=np.float16)
        maps[i:i + len(m)] = m
        feats.append(f)
    return np.concatenate(feats), maps


def encode_split(cand: Candidate, split: Split, batch_size: int,
                 local: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Features of every split image (``register``, ``queries``, ``unknown``); with ``local`` also
    their local maps (``<part>_maps``), for re-ranking."""
    feats = {}
    n = 0
    t0 = time.perf_counter()
    for part in ("register", "queries", "unknown"):
        items = getattr(split, part)
        paths = [str(p) for p, _ in items]
        if local:
            got = encode_with_maps(cand.encoder, paths, batch_size) if items else (None, None)
            feats[part], feats[f"{part}_maps"] = got
        else:
            feats[part] = cand.encoder.encode(paths, batch_size=batch_size) if items else None
        n += len(items)
    dt = time.perf_counter() - t0
    return feats, {"images": n, "seconds": round(dt, 3), "images_per_s": round(n / dt, 2) if dt > 0 else None,
                   "batch_size": batch_size, "threads": 1}


# --------------------------------------------------------------------------------------------------
# Re-ranking by the local map: the score a model with one answers with
# --------------------------------------------------------------------------------------------------
RERANK_CHUNK = 128  # queries per local_deltas call: their candidates' maps stay tens of MB


def rerank_of(encoder: Any) -> LocalMap | None:
    """How the product re-ranks for this encoder (its contract's ``local``: top ``k`` by cosine moved
    by ``weight`` x their local delta), or None (no local map: it answers with the cosine)."""
    return getattr(getattr(encoder, "contract", None), "local", None)


def reranked(sim: np.ndarray, q_maps: np.ndarray, r_maps: np.ndarray, rerank: LocalMap,
             q_rows: np.ndarray | None = None, chunk: int = RERANK_CHUNK) -> np.ndarray:
    """``sim`` (queries x exemplars cosines) as the product scores it: each row's top-k entries
    (k = min(rerank.k, exemplars), all valid) moved by weight x local_deltas, every other entry
    unchanged (scripts/ablate_local_rerank.py's ``rescored``).  Row i's map is
    ``q_maps[q_rows[i]]`` (``q_maps[i]`` without ``q_rows``): a block never copies a split's maps."""
    from indexer.rerank import local_deltas  # the product's arithmetic, not a copy of it

    out = np.array(sim, dtype=np.float32, copy=True)
    k = min(rerank.k, out.shape[1])
    if k < 2 or len(out) == 0:
        return out
    w = np.float32(rerank.weight)
    for i in range(0, len(out), chunk):
        s = out[i:i + chunk]  # a view: re-scored in place
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        qm = q_maps[i:i + chunk] if q_rows is None else q_maps[q_rows[i:i + chunk]]
        moved = np.take_along_axis(s, top, axis=1) + w * local_deltas(qm, r_maps[top])
        np.put_along_axis(s, top, moved, axis=1)
    return out


@dataclass
class _Register:
    """Register rows sorted by type as retriever.metrics sorts them, with their maps."""

    feats: np.ndarray
    maps: np.ndarray
    types: np.ndarray
    starts: np.ndarray


def _register(feats: dict[str, np.ndarray], split: Split, r: np.ndarray) -> _Register:
    labels = np.asarray([split.register[i][1] for i in r]).astype(str)
    order = np.argsort(labels, kind="stable")
    types, starts = np.unique(labels[order], return_index=True)
    rows = r[order]
    return _Register(np.asarray(feats["register"], dtype=np.float32)[rows], feats["register_maps"][rows], types, starts)


def reranked_type_blocks(q_feats: np.ndarray, q_maps: np.ndarray, q_rows: np.ndarray, reg: _Register,
                         rerank: LocalMap, max_block: int = M.DEFAULT_MAX_BLOCK
                         ) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, scores (m, n_types))`` of the queries ``q_feats`` (maps ``q_maps[q_rows]``),
    re-ranked before each type takes its best exemplar.  The blocks and products of
    M.type_score_blocks: where nothing moves, the cosine comes out bit for bit."""
    q = np.asarray(q_feats, dtype=np.float32)
    step = max(1, max_block // max(1, len(reg.feats)))
    for i in range(0, len(q), step):
        sims = reranked(q[i:i + step] @ reg.feats.T, q_maps, reg.maps, rerank, q_rows[i:i + step])
        yield i, (np.maximum.reduceat(sims, reg.starts, axis=1) if len(reg.feats) != len(reg.starts) else sims)


def reranked_sets(feats: dict[str, np.ndarray], split: Split, q: np.ndarray, r: np.ndarray, u: np.ndarray,
                  rerank: LocalMap) -> M.ScoreSets:
    """M.pair_scores of the queries ``q`` and unknowns ``u`` against the register rows ``r``, on
    the re-ranked score (top-k among those register rows only)."""
    reg = _register(feats, split, r)
    acc = M.ScoreAccumulator(reg.types, n_exemplars=len(r))
    true_idx = np.searchsorted(reg.types, np.asarray([split.queries[i][1] for i in q]).astype(str))
    for i, block in reranked_type_blocks(feats["queries"][q], feats["queries_maps"], q, reg, rerank):
        acc.add_known(block, true_idx[i:i + len(block)])
    if feats["unknown"] is not None and len(u):
        for _, block in reranked_type_blocks(feats["unknown"][u], feats["unknown_maps"], u, reg, rerank):
            acc.add_unknown(block)
    return acc.finish()


def negatives_at_or_above(feats: dict[str, np.ndarray], split: Split, t: float,
                          rerank: LocalMap | None = None) -> list[tuple[int, str, float]]:
    """M.negatives_at_or_above of the split, on the re-ranked score with ``rerank``."""
    qlabels = [lab for _, lab in split.queries]
    if rerank is None:
        return M.negatives_at_or_above(feats["queries"], qlabels, feats["register"],
                                       [lab for _, lab in split.register], t)
    q = np.arange(len(split.queries))
    reg = _register(feats, split, np.arange(len(split.register)))
    ql = np.asarray(qlabels).astype(str)
    out: list[tuple[int, str, float]] = []
    for i, block in reranked_type_blocks(feats["queries"], feats["queries_maps"], q, reg, rerank):
        rows, cols = np.nonzero((block >= t) & (reg.types[None, :] != ql[i:i + len(block), None]))
        out += [(int(i + r), str(reg.types[c]), float(block[r, c])) for r, c in zip(rows, cols)]
    return sorted(out, key=lambda x: -x[2])


def _worst(sets: M.ScoreSets, split: Split, n: int = 10) -> dict[str, list[dict[str, Any]]]:
    """Most confident mistakes: misidentified known queries and accepted-looking unknowns."""
    wrong = np.nonzero(~sets.known_correct)[0]
    wrong = wrong[np.argsort(-sets.known_best[wrong], kind="stable")][:n]
    unk = np.argsort(-sets.unknown_best, kind="stable")[:n]
    return {
        "misidentified": [{"query": str(split.queries[i][0]), "type": split.queries[i][1],
                           "predicted": str(sets.types[sets.known_pred[i]]), "score": float(sets.known_best[i]),
                           "own_type_score": float(sets.pos[i])} for i in wrong],
        "unknown_highest": [{"query": str(split.unknown[i][0]), "type": split.unknown[i][1],
                             "predicted": str(sets.types[sets.unknown_pred[i]]), "score": float(sets.unknown_best[i])}
                            for i in unk],
    }


def type_group(type_name: str) -> str:
    """A benchmark type's group: its name without the last ``-part`` (``payslip-007`` -> ``payslip``,
    ``wallpaper-flow-2`` -> ``wallpaper-flow``): the family of a synthetic template, the source
    image of a wallpaper crop."""
    return type_name.rsplit("-", 1)[0]


def sibling_errors(sets: M.ScoreSets, split: Split, fpr: float = 1e-4) -> dict[str, Any]:
    """Top-1 errors and how many land on a sibling of the right type (same group: the sibling set on
    the look-alike splits, the family elsewhere); on the look-alike splits also top-1 and TPR at
    ``fpr`` per kind of edit that made the query's type (``none``: the unedited template)."""
    labels = [lab for _, lab in split.queries]
    wrong = np.flatnonzero(~sets.known_correct)
    on_sib = sum(type_group(str(sets.types[sets.known_pred[i]])) == type_group(labels[i]) for i in wrong)
    out: dict[str, Any] = {"queries": len(labels), "top1_errors": int(len(wrong)), "on_sibling": int(on_sib),
                           "share_on_sibling": float(on_sib / len(wrong)) if len(wrong) else None}
    t = M.threshold_at(sets.neg, fpr)
    if t is not None and sets.known_loo_best is not None:
        # what sets the threshold: a capture's best *wrong* type at or above it, and whether that capture
        # still ranks its own type first (then a runner-up, not an error, is what the pair table counts)
        v = float(np.nextafter(np.float32(t), np.float32(-np.inf)))  # the highest negative t must clear
        above = np.asarray(sets.known_loo_best) >= v
        out["over_threshold"] = {"fpr": fpr, "threshold": float(t), "negative": v, "queries": int(above.sum()),
                                 "ranked_right": int((above & np.asarray(sets.known_correct)).sum())}
    kinds = {t: (e.get("sibling") or {}).get("edit") or "none" for t, e in split.type_info.items() if "sibling" in e}
    if kinds:
        per: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            k = per.setdefault(kinds.get(lab, "?"), [0, 0, 0])
            k[0] += 1
            k[1] += int(sets.known_correct[i])
            k[2] += int(t is not None and sets.pos[i] >= t)
        out["by_edit"] = {k: {"queries": n, "top1": c / n, f"tpr@{fpr:g}": (a / n if t is not None else None)}
                          for k, (n, c, a) in sorted(per.items())}
    return out


def sibling_errors_markdown(e: dict[str, Any], fpr: float = 1e-4) -> str:
    share = "n/a" if e["share_on_sibling"] is None else f"{e['share_on_sibling']:.2f}"
    lines = [f"Top-1 errors: {e['top1_errors']} of {e['queries']} queries; on a sibling of the right type "
             f"(same family, or same sibling set on a look-alike split): {e['on_sibling']} ({share})"]
    o = e.get("over_threshold")
    if o:
        lines += ["", f"At FPR {o['fpr']:g}: {o['queries']} queries have a wrong type among the negatives the threshold "
                  f"must clear ({o['negative']:.4f} and above); {o['ranked_right']} of them still rank their own type "
                  "first (there a runner-up, not a top-1 error, sets the threshold)"]
    if e.get("by_edit"):
        lines += ["", f"| edit that made the type | queries | top-1 | TPR@{fpr:g} |", "|---|---:|---:|---:|"]
        for k, r in e["by_edit"].items():
            tpr = r[f"tpr@{fpr:g}"]
            lines.append(f"| {k} | {r['queries']} | {r['top1']:.4f} | {'n/a' if tpr is None else f'{tpr:.4f}'} |")
    return "\n".join(lines)


def _reporting_group(split: Split):
    """Groups to break misses down by: the family on the look-alike splits (their sibling sets are
    too many to list), else ``type_group``."""
    fam = {t: e["family"] for t, e in split.type_info.items() if "sibling" in e and "family" in e}
    return (lambda lab: fam.get(lab, type_group(lab))) if fam else type_group


def by_group(sets: M.ScoreSets, feats: dict[str, np.ndarray], split: Split, fpr: float = 1e-4,
             rerank: LocalMap | None = None) -> dict[str, Any]:
    """Where the misses are at one operating point: per group, the known queries scoring under the
    threshold, and the group pairs of the negatives at or above it (the pairs that set it; scored
    as ``sets`` were, so re-ranked with ``rerank``)."""
    t = M.threshold_at(sets.neg, fpr)
    if t is None:
        return {"fpr": fpr, "threshold": None}
    qlabels = [lab for _, lab in split.queries]
    group = _reporting_group(split)
    misses: dict[str, list[int]] = {}
    for lab, p in zip(qlabels, sets.pos):
        m = misses.setdefault(group(lab), [0, 0])
        m[0] += int(p < t)
        m[1] += 1
    pairs: dict[str, int] = {}
    for qi, typ, _ in negatives_at_or_above(feats, split, t, rerank):
        key = f"{group(qlabels[qi])} -> {group(typ)}"
        if group(qlabels[qi]) != type_group(qlabels[qi]) and type_group(qlabels[qi]) == type_group(typ):
            key += " (same sibling set)"
        pairs[key] = pairs.get(key, 0) + 1
    return {"fpr": fpr, "threshold": t, "misses": dict(sorted(misses.items())),
            "negative_pairs": dict(sorted(pairs.items(), key=lambda kv: -kv[1]))}


def by_group_markdown(g: dict[str, Any]) -> str:
    if g.get("threshold") is None:
        return f"(FPR {g['fpr']:g}: not measurable, no per-group breakdown)"
    n_neg = sum(g["negative_pairs"].values())
    lines = [f"Where the misses are at FPR {g['fpr']:g} (threshold {g['threshold']:.4f}): known queries under it, "
             "per group, and the groups of the negative pairs at or above it", "",
             "| group | queries under the threshold | of |", "|---|---:|---:|"]
    lines += [f"| {k} | {m} | {n} |" for k, (m, n) in g["misses"].items()]
    lines += ["", f"| negative pair (query group -> register group) | of the {n_neg} at or above the threshold |",
              "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in g["negative_pairs"].items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Open set: DIR at FPIR on the mixed register and on dense registers of one family each
# --------------------------------------------------------------------------------------------------
DENSE_MIN_TYPES = 3  # a dense register needs a runner-up even with one type left out


def _sets_for(feats: dict[str, np.ndarray], split: Split, keep_type: Any = None,
              rerank: LocalMap | None = None) -> M.ScoreSets | None:
    """Score sets of the split, or of the sub-register of the types ``keep_type`` accepts (its queries
    and the unknowns of the same groups); with ``rerank``, of the re-ranked score within that
    sub-register (its own top-k, as a gallery of only those types would answer)."""
    def rows(items: list[tuple[Path, str]]) -> np.ndarray:
        return np.asarray([i for i, (_, lab) in enumerate(items) if keep_type is None or keep_type(lab)], dtype=np.int64)

    r, q, u = rows(split.register), rows(split.queries), rows(split.unknown)
    if len(r) == 0 or len(q) == 0:
        return None
    if rerank is not None:
        return reranked_sets(feats, split, q, r, u, rerank)
    unk = feats["unknown"][u] if feats["unknown"] is not None and len(u) else None
    return M.pair_scores(feats["queries"][q], [split.queries[i][1] for i in q], feats["register"][r],
                         [split.register[i][1] for i in r], unk)


def dense_groups(split: Split) -> list[str]:
    """Synthetic families with >= DENSE_MIN_TYPES registered types: each is a dense register (every
    template of one family, all alike) whose look-alike unknowns are that family's unregistered templates."""
    counts: dict[str, int] = {}
    for lab in split.types:
        counts[type_group(lab)] = counts.get(type_group(lab), 0) + 1
    return sorted(g for g, n in counts.items() if n >= DENSE_MIN_TYPES and not g.startswith("wallpaper"))


def open_set_section(sets: M.ScoreSets, pair_rows: Sequence[dict[str, Any]], register: dict[str, Any],
                     rules: dict[str, O.DecisionRule], fpirs: Sequence[float]) -> dict[str, Any]:
    real = O.scores_from_sets(sets, unknowns=True)
    loo = O.scores_from_sets(sets, unknowns=False, leave_own_out=True)
    out: dict[str, Any] = {"register": register, "n_known": real.n_known, "n_unknown": real.n_unknown,
                           "n_leave_one_out": loo.n_unknown, "top1_accuracy": float(np.mean(real.known_correct)),
                           "pair_table": list(pair_rows), "rules": {}}
    for name, rule in rules.items():
        out["rules"][name] = {"rule": rule.to_dict(), "table": O.dir_table(real, rule, fpirs),
                              "leave_one_out_table": O.dir_table(loo, rule, fpirs),
                              "det": O.det_points(real, rule)}
    return out


def evaluate_open_set(feats: dict[str, np.ndarray], split: Split, sets: M.ScoreSets, fprs: Sequence[float],
                      rules: dict[str, O.DecisionRule] | None = None,
                      fpirs: Sequence[float] = O.DEFAULT_FPIRS, rerank: LocalMap | None = None) -> dict[str, Any]:
    """DIR at FPIR for every rule on the mixed register (the whole split) and on the dense registers
    (one family each, queries scored against their own family's register, rates pooled); with
    ``rerank`` the dense registers are re-ranked too (``sets`` already is)."""
    rules = rules or dict(O.RULES)
    if not split.unknown:
        return {}
    mixed = open_set_section(sets, M.threshold_table(sets.pos, sets.neg, fprs, neg_sorted=True),
                             {"kind": "mixed", **sets.register_size}, rules, fpirs)
    parts, sizes = [], {}
    for g in dense_groups(split):
        s = _sets_for(feats, split, lambda lab, g=g: type_group(lab) == g, rerank)
        if s is not None and len(s.unknown_best):
            parts.append(s)
            sizes[g] = int(len(s.types))
    if not parts:
        return {"mixed": mixed}
    pooled = M.ScoreSets(
        types=np.concatenate([p.types for p in parts]), n_exemplars=sum(p.n_exemplars for p in parts),
        pos=np.concatenate([p.pos for p in parts]), neg=np.sort(np.concatenate([p.neg for p in parts])),
        known_best=np.concatenate([p.known_best for p in parts]), known_pred=np.zeros(0, np.int64),
        known_correct=np.concatenate([p.known_correct for p in parts]),
        unknown_best=np.concatenate([p.unknown_best for p in parts]), unknown_pred=np.zeros(0, np.int64),
        known_second=np.concatenate([p.known_second for p in parts]),
        known_loo_best=np.concatenate([p.known_loo_best for p in parts]),
        known_loo_second=np.concatenate([p.known_loo_second for p in parts]),
        unknown_second=np.concatenate([p.unknown_second for p in parts]))
    dense = open_set_section(pooled, M.threshold_table(pooled.pos, pooled.neg, fprs, neg_sorted=True),
                             {"kind": "dense", "registers": len(parts), "types_per_register": sizes}, rules, fpirs)
    return {"mixed": mixed, "dense": dense}


def open_set_markdown(op: dict[str, Any], default_rule: str) -> str:
    lines = []
    for kind in ("mixed", "dense"):
        sec = op.get(kind)
        if not sec:
            continue
        reg = sec["register"]
        size = (f"{reg['types']} types ({reg['exemplars']} exemplars)" if kind == "mixed" else
                f"{reg['registers']} registers of one family or sibling set each, "
                f"{min(reg['types_per_register'].values())}-{max(reg['types_per_register'].values())} types")
        lines += [f"### Open set, {kind} register: {size}; {sec['n_known']} captures of registered types, "
                  f"{sec['n_unknown']} of unregistered look-alike types (top-1 {sec['top1_accuracy']:.4f})", ""]
        fp = [r["fpir"] for r in next(iter(sec["rules"].values()))["table"]]
        lines += ["DIR at FPIR, per decision rule (threshold on the rule's decision score):", "",
                  "| rule | " + " | ".join(f"{f:g}" for f in fp) + " |", "|---|" + "---:|" * len(fp)]
        for name, r in sec["rules"].items():
            mark = " (default)" if name == default_rule else ""
            lines.append(f"| {name}{mark} | " + " | ".join("n/a" if x["dir"] is None else f"{x['dir']:.4f}"
                                                         for x in r["table"]) + " |")
        lines += ["", O.markdown_dir_table(sec["rules"][default_rule]["table"], f"Rule {default_rule}:"), ""]
        pair = sec["pair_table"]
        lines += ["Pair table on this register: " + ", ".join(
            f"TPR@{r['fpr']:g} {'n/a' if r['tpr'] is None else format(r['tpr'], '.4f')}" for r in pair), ""]
    return "\n".join(lines)


def evaluate_candidate(cand: Candidate, split: Split, fprs: Sequence[float], batch_size: int,
                       rules: dict[str, O.DecisionRule] | None = None
                       ) -> list[tuple[dict[str, Any], M.ScoreSets, dict[str, np.ndarray]]]:
    """One (result, score sets, features) per answer the candidate gives: what the product answers
    with first (re-ranked, for a model with a local map), then for such a model its cosine alone as
    ``<name> [cosine]`` (the gain; what a gallery without maps answers).  Encoded once."""
    rerank = rerank_of(cand.encoder)
    feats, enc_stats = encode_split(cand, split, batch_size, local=rerank is not None)
    rows = [score_candidate(cand, cand.label, feats, enc_stats, split, fprs, rules, rerank)]
    if rerank is not None:
        rows.append(score_candidate(cand, f"{cand.label} [cosine]", feats, enc_stats, split, fprs, rules, None))
    return rows


def score_candidate(cand: Candidate, label: str, feats: dict[str, np.ndarray], enc_stats: dict[str, Any],
                    split: Split, fprs: Sequence[float], rules: dict[str, O.DecisionRule] | None,
                    rerank: LocalMap | None) -> tuple[dict[str, Any], M.ScoreSets, dict[str, np.ndarray]]:
    """Every figure of one row from one way of scoring (cosine, or re-ranked with ``rerank``)."""
    sets = _sets_for(feats, split, rerank=rerank)
    res = M.summarise(sets, fprs)
    enc = cand.encoder
    out = {"name": label, "kind": cand.kind, "path": cand.path, "fingerprint": getattr(enc, "fingerprint", None),
           "dim": int(enc.dim), "encode": enc_stats, **res, "table_markdown": M.markdown_table(res),
           "roc": M.roc_points(sets.pos, sets.neg, neg_sorted=True), "worst": _worst(sets, split),
           "by_group": by_group(sets, feats, split, rerank=rerank), "sibling_errors": sibling_errors(sets, split)}
    if rerank_of(enc) is not None:  # only models with a local map have two rows to tell apart
        out["scoring"] = "cosine" if rerank is None else "reranked"
        out["rerank"] = None if rerank is None else {"k": rerank.k, "weight": rerank.weight}
    out["open_set_dir"] = evaluate_open_set(feats, split, sets, fprs, rules, rerank=rerank)
    return out, sets, feats


def _tpr_at(res: dict[str, Any], fpr: float) -> float | None:
    for r in res["table"]:
        if math.isclose(r["fpr"], fpr, rel_tol=1e-9):
            return r["tpr"]
    return None


def comparison(results: Sequence[dict[str, Any]], fpr: float = 1e-4) -> list[dict[str, Any]]:
    """One row per model: TPR@1e-4 (and 1e-3), AUROC, top-1, miss-rate ratio vs the Lite0 baseline."""
    lite0 = [r for r in results if r["name"].startswith("lite0-imagenet-gap")]  # baseline run, or passed as --model
    ref = next((r for r in lite0 if r["kind"] == "baseline"), lite0[0] if lite0 else None)
    ref_tpr = _tpr_at(ref, fpr) if ref else None
    rows = []
    for r in results:
        tpr = _tpr_at(r, fpr)
        ratio = None
        if tpr is not None and ref_tpr is not None and ref_tpr < 1.0:
            ratio = (1.0 - tpr) / (1.0 - ref_tpr)
        rows.append({"name": r["name"], "kind": r["kind"], f"tpr@{fpr:g}": tpr, "tpr@0.001": _tpr_at(r, 1e-3),
                     "auroc": r["auroc"], "top1": r["top1_accuracy"],
                     "miss_ratio_vs_lite0": ratio, "images_per_s": r["encode"]["images_per_s"]})
    return rows


def comparison_markdown(rows: Sequence[dict[str, Any]], fpr: float = 1e-4) -> str:
    def f(v: Any, d: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    lines = [f"| model | kind | TPR@{fpr:g} | TPR@0.001 | AUROC | top-1 | miss rate / lite0 @{fpr:g} | images/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['kind']} | {f(r[f'tpr@{fpr:g}'])} | {f(r['tpr@0.001'])} | {f(r['auroc'])} | "
                     f"{f(r['top1'])} | {f(r['miss_ratio_vs_lite0'], 3)} | {f(r['images_per_s'], 1)} |")
    return "\n".join(lines)


def report_text(res: dict[str, Any]) -> str:
    rs = res["register_size"]
    how = ("" if not res.get("rerank") else f"; re-ranked: each query's top-{res['rerank']['k']} exemplars "
           f"by cosine moved by {res['rerank']['weight']:g} x their local-map delta")
    lines = [f"## {res['name']} ({res['kind']}, {res['dim']}-d{how})", "",
             f"{res['n_pos']:,} positive / {res['n_neg']:,} negative pairs; register {rs['types']} types "
             f"({rs['exemplars']} exemplars); encoding {res['encode']['images']} images at "
             f"{res['encode']['images_per_s']} images/s (batch {res['encode']['batch_size']}, 1 thread)", "",
             res["table_markdown"], "",
             f"AUROC {res['auroc']:.6f}   closed-set top-1 {res['top1_accuracy']:.4f}", ""]
    if res["n_unknown_queries"]:
        lines.append(f"Open set ({res['n_unknown_queries']} unknown-type queries): false accepts (best score >= t)")
        lines.append("| FPR row | threshold | false accepts | rate |")
        lines.append("|---|---|---|---|")
        for o in res["open_set"]:
            fa = "n/a" if o["false_accepts"] is None else str(o["false_accepts"])
            rate = "n/a" if o["false_accept_rate"] is None else f"{o['false_accept_rate']:.4f}"
            th = "n/a" if o["threshold"] is None else f"{o['threshold']:.4f}"
            lines.append(f"| {o['fpr']:g} | {th} | {fa} | {rate} |")
        lines.append("")
    lines.append(M.markdown_identification(res))
    if res.get("sibling_errors"):
        lines += ["", sibling_errors_markdown(res["sibling_errors"])]
    if res.get("open_set_dir"):
        lines += ["", open_set_markdown(res["open_set_dir"], O.DEFAULT_RULE.name)]
    if res.get("by_group"):
        lines += ["", by_group_markdown(res["by_group"])]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Thresholds into the model
# --------------------------------------------------------------------------------------------------
def _table_rows(label: str, res: dict[str, Any]) -> list[Any]:
    """The table's measurable rows as contract rows (FPR = the target); none is an error."""
    from encoders.contract import ThresholdRow

    rows = [ThresholdRow(fpr=r["fpr"], tpr=r["tpr"], threshold=r["threshold"]) for r in res["table"] if r["measurable"]]
    if not rows:
        raise EvaluationError(f"no measurable threshold row for {label} ({res['n_neg']} negative pairs); "
                              "nothing written")
    return rows


def _table_source(res: dict[str, Any], split: Split, date: str) -> str:
    rs = res["register_size"]
    how = "" if not res.get("rerank") else (f" (re-ranked: top-{res['rerank']['k']} by the local map, "
                                            f"weight {res['rerank']['weight']:g})")
    return (f"scripts/evaluate.py on {split.root.name}/{split.split}{how}: {res['n_pos']} positive / {res['n_neg']} "
            f"negative pairs, register {rs['types']} types ({rs['exemplars']} exemplars), "
            f"benchmark manifest {str(split.manifest_sha256)[:12]}, {date}; fpr = target, measured <= target")


def write_thresholds(cand: Candidate, res: dict[str, Any], split: Split,
                     reranked_res: dict[str, Any] | None = None) -> dict[str, Any]:
    """``res`` (the cosine row) into the contract's ``threshold_table``; for a model with a local
    map also ``reranked_res`` (its re-ranked row) into ``local.threshold_table``.  One atomic write,
    so the file never holds one table measured and the other stale."""
    from encoders.contract import write_contract

    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    rows, source = _table_rows(cand.label, res), _table_source(res, split, date)
    contract = cand.encoder.contract.with_thresholds(rows, source=source)
    out: dict[str, Any] = {"path": cand.path, "rows": [r.__dict__ for r in rows], "source": source}
    if reranked_res is not None:
        lrows, lsource = _table_rows(reranked_res["name"], reranked_res), _table_source(reranked_res, split, date)
        contract = contract.with_local_thresholds(lrows, lsource)
        out.update(local_rows=[r.__dict__ for r in lrows], local_source=lsource)
    old_fp = cand.encoder.fingerprint
    write_contract(cand.path, contract)
    from encoders.runtime import file_sha256

    return {**out, "old_fingerprint": old_fp, "new_fingerprint": file_sha256(cand.path)}


# --------------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Strict JSON: non-finite floats become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(jsonable(data), fh, indent=1, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", action="append", required=True, help="ONNX model (repeat to compare several)")
    ap.add_argument("--benchmark", required=True, type=Path, help="benchmark root (holds <split>/ and manifest.json)")
    ap.add_argument("--split", action="append", dest="splits", choices=SPLITS,
                    help="benchmark split (repeatable: several splits in one run) [default: val]")
    ap.add_argument("--baselines", nargs="?", const=",".join(BASELINES), default="",
                    help=f"add baselines measured in the same run (default all: {','.join(BASELINES)}; "
                         "or a comma list)")
    ap.add_argument("--json", type=Path, help="write the full result here")
    ap.add_argument("--plots", type=Path, help="write ROC, histogram and feature-map PNGs here")
    ap.add_argument("--write-thresholds", action="store_true",
                    help="store the measured table in the first model's ONNX metadata (changes its fingerprint)")
    ap.add_argument("--fpr", type=float, action="append", dest="fprs",
                    help="FPR rows (repeatable) [default: 1e-5 1e-4 1e-3 1e-2 1e-1]")
    ap.add_argument("--margin-weight", type=float, action="append", dest="margin_weights",
                    help="also compare the rule cosine + W x margin (repeatable; the open-set rules of "
                         "retriever.openset.RULES are always compared)")
    ap.add_argument("--batch-size", type=int, default=32)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fprs = tuple(sorted(args.fprs)) if args.fprs else M.DEFAULT_FPRS
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    names = list(dict.fromkeys(args.splits or ["val"]))
    try:
        splits = [load_split(args.benchmark, name) for name in names]
        cands = load_candidates(args.model, baselines)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rules = dict(O.RULES)
    for w in args.margin_weights or []:
        rules.setdefault(O.DecisionRule(1.0, w).name, O.DecisionRule(1.0, w))
    by_split: dict[str, dict[str, Any]] = {}
    plot_data: list[Any] = []
    for split in splits:
        info = split.describe()
        print(f"# Benchmark {split.root} split {split.split}: register {info['register_types']} types "
              f"({info['register_images']} images), {info['queries']} queries, {info['unknown_queries']} unknown-type "
              f"queries ({info['unknown_types']} types)\n")
        results = []
        for cand in cands:
            for res, sets, feats in evaluate_candidate(cand, split, fprs, args.batch_size, rules):
                results.append(res)
                print(report_text(res), "\n", flush=True)
                if args.plots and split is splits[0]:
                    plot_data.append((res, sets, feats))
        comp = comparison(results)
        print(f"## Comparison ({split.split})\n")
        print(comparison_markdown(comp), "\n")
        by_split[split.split] = {"benchmark": info, "models": results, "comparison": comp}
    if len(splits) > 1:
        print("## Every split, one run\n")
        print(splits_markdown(by_split), "\n")
    first = by_split[splits[0].split]
    written = None
    if args.write_thresholds:
        cos, rer = _rows_of_first_model(first["models"], cands[0])
        try:
            written = write_thresholds(cands[0], cos, splits[0], rer)
        except EvaluationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        local = "" if rer is None else f" and {len(written['local_rows'])} re-ranked rows"
        print(f"wrote {len(written['rows'])} threshold rows{local} (split {splits[0].split}) into {written['path']}; "
              f"its fingerprint changed {written['old_fingerprint'][:12]} -> {written['new_fingerprint'][:12]}: "
              "rebuild galleries made with the old file")
    plots = []
    if args.plots:
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        from plot_eval import write_plots  # scripts/ sibling; matplotlib is imported only when asked

        plots = [str(p) for p in write_plots(args.plots, plot_data, splits[0], fprs)]
        print("plots: " + ", ".join(plots))
    if args.json:
        write_json_atomic(args.json, {
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": list(argv) if argv is not None else sys.argv[1:],
            # the first split's figures at the top level (the layout of single-split runs), every split in by_split
            **first, "by_split": by_split if len(splits) > 1 else None, "fprs": list(fprs),
            "thresholds_written": written, "plots": plots,
            "notes": {"scores": "cosine in [-1, 1]; reference project's score = (cos + 1) / 2",
                      "accept": "score >= threshold", "threshold_rule": "smallest t with #(neg >= t)/n_neg <= fpr",
                      "measurable": "n_neg >= 1/fpr"}})
        print(f"wrote {args.json}")
    return 0


def _rows_of_first_model(results: Sequence[dict[str, Any]], cand: Candidate
                         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The first model's (cosine row, re-ranked row or None): evaluate_candidate puts its rows first,
    the re-ranked one (a model with a local map) ahead of its cosine."""
    if rerank_of(cand.encoder) is None:
        return results[0], None
    return results[1], results[0]


def splits_markdown(by_split: dict[str, dict[str, Any]], fpr: float = 1e-4) -> str:
    """One row per (split, model): the pair table's headline, top-1, errors on a sibling, and DIR at
    FPIR 1e-2 of the default rule on the split's dense registers."""
    def f(v: Any, d: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    lines = [f"| split | model | TPR@{fpr:g} | AUROC | top-1 | top-1 errors on a sibling | dense DIR@FPIR 1e-2 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, d in by_split.items():
        for r in d["models"]:
            e = r.get("sibling_errors") or {}
            dense = ((r.get("open_set_dir") or {}).get("dense") or {}).get("rules", {}).get(O.DEFAULT_RULE.name, {})
            d2 = next((x["dir"] for x in dense.get("table", []) if math.isclose(x["fpir"], 1e-2)), None)
            lines.append(f"| {name} | {r['name']} | {f(_tpr_at(r, fpr))} | {f(r['auroc'])} | {f(r['top1_accuracy'])} | "
                         f"{e.get('on_sibling', 'n/a')} of {e.get('top1_errors', 'n/a')} | {f(d2)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
