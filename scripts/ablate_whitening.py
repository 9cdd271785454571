#!/usr/bin/env python
"""Ablation: does centring or whitening the embeddings help the low-FPR tail?

PCA whitening with statistics from training data is a standard post-hoc gain in image retrieval;
if it helped here it could be folded into the exported model as one fixed linear layer.  This
measures it on the benchmark: statistics from the run's training views (the trained head over a
few shards of each of its caches), applied to the exported model's features, then the usual
protocol (``retriever.metrics``).

    python scripts/ablate_whitening.py --config scripts/configs/lite0_b6_wide_r128_x2.yaml \\
        --model encoders/default/docretriever-default.onnx --split val
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import evaluate as E  # noqa: E402
import train as T  # noqa: E402
from retriever import metrics as M  # noqa: E402


def training_embeddings(cfg: dict, shards_per_cache: int) -> np.ndarray:
    """Unit-length embeddings of cached training views through the run's best checkpoint."""
    model = T.build_model(cfg)
    model.load_state_dict(torch.load(Path(cfg["run_dir"]) / "best.pt", map_location="cpu",
                                     weights_only=False)["model"])
    model.eval()
    out = []
    for d in [cfg["cache_dir"]] + [c["cache_dir"] for c in cfg["extra_caches_from"]]:
        for p in sorted(Path(d).glob("shard-*.npz"))[:shards_per_cache]:
            with np.load(p) as z:
                fmap = torch.from_numpy(z["feats"].astype(np.float32)).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                out.append(torch.nn.functional.normalize(model.forward_from_trunk(fmap), dim=1).numpy())
    return np.concatenate(out)


def transforms(train: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    mu = train.mean(0)
    w, v = np.linalg.eigh(np.cov((train - mu).T))
    w = np.maximum(w, 0.0)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"none": lambda x: x, "centre": lambda x: x - mu}
    for eps in (1e-1, 1e-2, 1e-3):  # shrinkage towards the identity, relative to the top eigenvalue
        wm = v @ np.diag(1 / np.sqrt(w + eps * w.max())) @ v.T
        out[f"whiten, eps {eps:g}"] = lambda x, wm=wm: (x - mu) @ wm
    for power in (0.25, 0.5):  # partial whitening: eigenvalues ** -power
        wm = v @ np.diag((w + 1e-6) ** -power) @ v.T
        out[f"whiten, power {power:g}"] = lambda x, wm=wm: (x - mu) @ wm
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the run's training config (caches, run_dir, benchmark)")
    ap.add_argument("--model", required=True, help="the run's exported ONNX model")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--shards-per-cache", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = T.load_config(args.config)
    train = training_embeddings(cfg, args.shards_per_cache)
    split = E.load_split(Path(cfg["benchmark"]), args.split)
    feats, _ = E.encode_split(E.load_candidates([args.model], [])[0], split, 32)
    ql, rl = [lab for _, lab in split.queries], [lab for _, lab in split.register]
    print(f"statistics from {len(train):,} training views; |mean embedding| {np.linalg.norm(train.mean(0)):.4f}; "
          f"{args.split} split\n")
    print("| transform | TPR@1e-4 | TPR@1e-3 | AUROC | top-1 |\n|---|---:|---:|---:|---:|")
    for name, fn in transforms(train).items():
        f = {}
        for part, x in feats.items():
            if x is not None:
                y = fn(x)
                f[part] = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
        res = M.evaluate_features(f["queries"], ql, f["register"], rl, f.get("unknown"))
        tpr = {r["fpr"]: r["tpr"] for r in res["table"]}
        print(f"| {name} | {tpr[1e-4]:.4f} | {tpr[1e-3]:.4f} | {res['auroc']:.5f} | {res['top1_accuracy']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
