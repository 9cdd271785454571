"""Render-speed benchmark: `python -m encoders.training.synth.bench [--n N]`.

Why: training renders millions of specimens; the budget is < 80 ms per card and
< 200 ms per A4 page on one core.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import FAMILIES, render_document  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6, help="templates per family (x2 fills)")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    for fam in FAMILIES:  # warm font caches
        render_document(fam, 10_000, 0, a.scale)
    by_kind: dict[str, list[float]] = {}
    for name, fam in FAMILIES.items():
        ts = []
        for tseed in range(a.n):
            for fs in range(2):
                t0 = time.perf_counter()
                render_document(name, tseed, fs, a.scale)
                ts.append(time.perf_counter() - t0)
        ms = 1000 * sum(ts) / len(ts)
        by_kind.setdefault(fam.kind, []).append(ms)
        print(f"{name:24s} {fam.kind:9s} mean {ms:6.1f} ms  max {1000 * max(ts):6.1f} ms")
    for k, v in by_kind.items():
        print(f"[{k}] mean over families {sum(v) / len(v):.1f} ms")


if __name__ == "__main__":
    main()
