#!/usr/bin/env python
"""What the gallery's file checksums cost: open and write times with and without them.

    python scripts/bench_integrity.py [--n 10000 --n 1000000]

For each size: a gallery of random unit vectors (``--index auto``: exact flat at 10k, IVF-PQ with an
exact store beside it at 1M), then, in the same process, opening it with its checksums (files read
into memory hashed before use; memory-mapped ones hashed in a background thread, whose time is
reported separately) and without them (the same manifest with its ``checksums`` removed), and one
add of 1,000 vectors (new files are hashed before the manifest is written).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench(n: int, work: Path, dim: int = 256) -> dict[str, float]:
    from indexer.gallery import Gallery
    from indexer.importer import EncoderInfo

    info = EncoderInfo(name="bench", fingerprint="bench-" + "0" * 58, dim=dim)
    rng = np.random.default_rng(n)
    path = work / f"g{n}"
    g = Gallery.create(path, info, index_spec="auto", self_calibrate=False)
    g.add_vectors(unit(rng, n, dim), [f"t{i // 4}" for i in range(n)], encoder=info, check_near_duplicates=False)
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    out: dict[str, float] = {"n": n, "MB": size / 1e6}
    t0 = time.perf_counter()
    g = Gallery.open(path)
    out["open_checked_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g.integrity_problems(wait=True)
    out["background_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g.add_vectors(unit(rng, 1000, dim), [f"new{i}" for i in range(1000)], encoder=info, check_near_duplicates=False)
    out["add_1000_s"] = time.perf_counter() - t0
    mp = path / "manifest.json"
    m = json.loads(mp.read_text())
    m.pop("checksums", None)
    mp.write_text(json.dumps(m))
    t0 = time.perf_counter()
    Gallery.open(path)
    out["open_unchecked_s"] = time.perf_counter() - t0
    shutil.rmtree(path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="gallery sizes (default 10000 and 1000000)")
    a = ap.parse_args(argv)
    print(f"# Gallery checksums (SHA-256), one thread, load {os.getloadavg()[0]:.2f}\n")
    print("| vectors | gallery MB | open, checked (s) | + background check of mapped files (s) | open, no checksums (s) "
          "| add 1,000 incl. hashing new files (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp:
        for n in a.n or [10_000, 1_000_000]:
            r = bench(n, Path(tmp))
            print(f"| {n:,} | {r['MB']:.0f} | {r['open_checked_s']:.3f} | {r['background_s']:.3f} | "
                  f"{r['open_unchecked_s']:.3f} | {r['add_1000_s']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
