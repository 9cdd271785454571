#!/usr/bin/env python
"""Encoder speed and size: images/s at batch 1 and 32 (1 and 2 threads), parameters, MACs, MB.

    python scripts/bench_encoder.py encoders/default/docretriever-default.onnx [more.onnx ...] [--json out.json]
    python scripts/bench_encoder.py MODEL.onnx [...] --per-call     # img/s by images per ONNX Runtime call

Throughput is measured on preprocessed tensors (decode excluded: see scripts/bench_bulk.py),
interleaving models round by round so machine load affects them alike; the median round wins.
MACs are counted from the ONNX graph (Conv, MatMul, Gemm) after shape inference.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def count_macs_and_params(path: str) -> tuple[int, int]:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    macs = 0
    for node in g.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            w = inits[node.input[1]]
            out = shapes.get(node.output[0])
            if out and len(out) == 4:
                macs += int(np.prod(out[1:])) * int(np.prod(w.shape[1:]))
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in inits:
            w = inits[node.input[1]]
            macs += int(np.prod(w.shape))
    params = int(sum(v.size for v in inits.values() if v.dtype.kind == "f" or v.dtype.kind == "i"))
    return macs, params


def throughput(path: str, batch: int, threads: int, seconds: float = 2.0) -> float:
    """Images/s of one model; a model with a local map also returns it (as a gallery that re-ranks
    asks for it: the map's copy and its unit cell vectors are part of the cost)."""
    from encoders.runtime import Encoder

    enc = Encoder(path, threads=threads, run_batch=batch)  # one ONNX Runtime call of `batch` images
    h, w = enc.input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)
    local = enc.has_local
    enc.encode_batch(x, local=local)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        enc.encode_batch(x, local=local)
        n += batch
    return n / (time.perf_counter() - t0)


def per_call(models: list[str], rounds: int, sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> None:
    """Throughput on one thread as a function of the images per call (medians of ``rounds``)."""
    res = {m: {b: [] for b in sizes} for m in models}
    for _ in range(rounds):
        for m in models:
            for b in sizes:
                res[m][b].append(throughput(m, b, 1))
    print("| model | " + " | ".join(f"{b} per call" for b in sizes) + " |\n|---|" + "---:|" * len(sizes))
    for m in models:
        print(f"| {os.path.basename(m)} | " + " | ".join(f"{statistics.median(res[m][b]):.0f}" for b in sizes) + " |")
    print(f"\n(img/s, 1 thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {rounds} rounds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--per-call", action="store_true",
                    help="instead: img/s on 1 thread by images per ONNX Runtime call (1..32), the basis of "
                         "encoders.runtime.CPU_RUN_BATCH")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.per_call:
        return per_call(args.models, args.rounds)
    rows = []
    for m in args.models:
        macs, params = count_macs_and_params(m)
        rows.append({"model": m, "mb": os.path.getsize(m) / 1e6, "params": params, "macs": macs})
    configs = [(1, 1), (32, 1), (1, 2), (32, 2)]
    for r in rows:
        r["img_s"] = {f"b{b}_t{t}": [] for b, t in configs}
    for _ in range(args.rounds):
        for r in rows:
            for b, t in configs:
                r["img_s"][f"b{b}_t{t}"].append(throughput(r["model"], b, t))
    load = os.getloadavg()[0]
    print("| model | MB | params | GMACs | img/s b1 1t | b32 1t | b1 2t | b32 2t |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        med = {k: statistics.median(v) for k, v in r["img_s"].items()}
        r["img_s_median"] = med
        print(f"| {os.path.basename(r['model'])} | {r['mb']:.2f} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.3f} | "
              f"{med['b1_t1']:.0f} | {med['b32_t1']:.0f} | {med['b1_t2']:.0f} | {med['b32_t2']:.0f} |")
    print(f"\n(load average during the run: {load:.1f} on {os.cpu_count()} cores; median of {args.rounds} rounds)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "load": load}, fh, indent=2)


if __name__ == "__main__":
    main()
