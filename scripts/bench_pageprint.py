#!/usr/bin/env python
"""What verification by registration costs per query, beside the encoder it would run with.

    python scripts/bench_pageprint.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val-lookalike --n 200

On one thread, for the same ``--n`` captures of a split (interleaved, ``--rounds`` times, best round kept):
* decode for the encoder (reduced JPEG decode at the model's input size) + encode: the baseline;
* decode for a page print (reduced to half size, grey) + the print (SIFT at ``--side`` px);
* verification of each capture against five exemplars of its own sibling set (``verify_deltas``), by the
  fixed rule and by the learned comparison (what a gallery built now uses).
Prints ms per query and the ratio of the verification path to the baseline.
"""
from __future__ import annotations

import argparse
import os
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

import evaluate as E  # noqa: E402
from encoders import pageprint as P  # noqa: E402

cv2.setNumThreads(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", default="val-lookalike")
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--side", type=int, default=P.SIDE)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import encoders
    from encoders.decode import read_image

    enc = encoders.load(a.model, threads=1)
    s = E.load_split(a.benchmark, a.split)
    step = max(1, len(s.queries) // a.n)
    queries = s.queries[::step][:a.n]
    by_label: dict[str, Path] = {lab: p for p, lab in s.register}
    group = {lab: E.type_group(lab) for lab in by_label}

    def grey(path: Path) -> np.ndarray:
        return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)

    exemplars = {lab: P.unpack(P.pack(P.of_image(grey(p), side=a.side))) for lab, p in by_label.items()}
    cands = []
    for _, lab in queries:
        sibs = [t for t in sorted(by_label) if group[t] == group[lab]][:5]
        cands.append([exemplars[t] for t in sibs])
    data = [Path(p).read_bytes() for p, _ in queries]

    best = {"encoder": np.inf, "print": np.inf, "verify": np.inf, "verify-learned": np.inf}
    for _ in range(a.rounds):
        t = time.perf_counter()
        for b in data:
            enc.encode_batch(enc.preprocess(read_image(b, enc.input_size))[None])
        best["encoder"] = min(best["encoder"], (time.perf_counter() - t) / len(data))
        t = time.perf_counter()
        prints = [P.of_image(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2),
                             side=a.side, keep_gray=True) for b in data]
        best["print"] = min(best["print"], (time.perf_counter() - t) / len(data))
        t = time.perf_counter()
        for q, c in zip(prints, cands):
            P.verify_deltas(q, c, comparison=P.RULE)
        best["verify"] = min(best["verify"], (time.perf_counter() - t) / len(data))
        t = time.perf_counter()
        for q, c in zip(prints, cands):
            P.verify_deltas(q, c, comparison=P.LEARNED)
        best["verify-learned"] = min(best["verify-learned"], (time.perf_counter() - t) / len(data))
    base = best["encoder"]
    extra = best["print"] + best["verify"]
    print(f"{a.split}: {len(data)} captures, model {enc.name}, keypoints at {a.side} px, 1 thread, best of {a.rounds}\n")
    print("| step | ms per query | / decode + encode |\n|---|---:|---:|")
    print(f"| decode + encode (baseline) | {1000 * base:.1f} | 1.00 |")
    print(f"| decode + page print | {1000 * best['print']:.1f} | {best['print'] / base:.2f} |")
    print(f"| verify against 5 exemplars, fixed rule | {1000 * best['verify']:.1f} | {best['verify'] / base:.2f} |")
    print(f"| verify against 5 exemplars, learned | {1000 * best['verify-learned']:.1f} | "
          f"{best['verify-learned'] / base:.2f} |")
    print(f"| with verification (rule), in all | {1000 * (base + extra):.1f} | {(base + extra) / base:.2f} |")
    learned = base + best["print"] + best["verify-learned"]
    print(f"| **with verification (learned), in all** | {1000 * learned:.1f} | {learned / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
