"""Memory and time of `retriever calibrate` on a verifying gallery: scored block by block, against
the baseline of every capture encoded (and printed) before any is scored.

Why: a verifying gallery's calibration makes each capture's page print (~250 KB with its grey page);
held all at once they grow with the number of captures (2.2 GB for 3,600).  Each run is a fresh
process, so its peak RSS is its own.

    python scripts/bench_calibrate.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val

Builds (once, under --work) a verifying gallery of the split's register and a labelled folder of its
queries and unknown captures (hard links), then calibrates it twice: in blocks of --batch captures, and
in one block (the baseline).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import encoders
from retriever.calibrate import calibrate_gallery
enc = encoders.load()
t = time.perf_counter()
rec = calibrate_gallery(sys.argv[2], sys.argv[3], enc, batch_size=int(sys.argv[4]))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "top1": rec["top1_accuracy"], "auroc": rec["auroc"], "n_pos": rec["n_pos"], "n_neg": rec["n_neg"],
                  "table": [[r["fpr"], r["tpr"]] for r in rec["table"]]}))
"""


def _prepare(benchmark: Path, split: str, work: Path) -> tuple[Path, Path]:
    gallery, labelled = work / "gallery", work / "labelled"
    if not labelled.is_dir():
        tmp = work / "labelled.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(benchmark / split / "queries", tmp, copy_function=os.link)
        shutil.copytree(benchmark / split / "unknown", tmp / "unknown", copy_function=os.link)
        tmp.rename(labelled)
    if not (gallery / "manifest.json").is_file():
        env = dict(os.environ, DOCRETRIEVER_SELF_CALIBRATE="0")
        subprocess.run([sys.executable, "-m", "indexer", "build", str(benchmark / split / "register"), "-o", str(gallery),
                        "--verify", "--force"], check=True, env=env, cwd=ROOT)
    return gallery, labelled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", type=Path, default=Path.home() / ".cache/docretriever/benchmark-v4")
    ap.add_argument("--split", default="val")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/docretriever/bench-calibrate")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    work = args.work / args.split
    work.mkdir(parents=True, exist_ok=True)
    gallery, labelled = _prepare(args.benchmark, args.split, work)
    n = sum(1 for p in labelled.rglob("*") if p.is_file())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = {}
    for name, batch in (("blocks", args.batch), ("baseline: one block", 10 ** 9)):
        shutil.copytree(gallery, work / "g", dirs_exist_ok=False)  # each run calibrates a fresh copy
        try:
            out = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(work / "g"), str(labelled), str(batch)],
                                 check=True, env=env, capture_output=True, text=True).stdout
        finally:
            shutil.rmtree(work / "g", ignore_errors=True)
        runs[name] = json.loads(out.strip().splitlines()[-1])
    base, new = runs["baseline: one block"], runs["blocks"]
    print(f"# `retriever calibrate` on a verifying gallery: {args.split}, {n:,} captures "
          f"({new['n_pos']:,} of registered types), 1 thread\n")
    print("| run | seconds | peak RSS MB | top-1 | TPR@1e-4 |")
    print("|---|---:|---:|---:|---:|")
    for name, r in runs.items():
        tpr = dict((f, t) for f, t in r["table"]).get(1e-4, float("nan"))
        print(f"| {name} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['top1']:.4f} | {tpr:.4f} |")
    print(f"\nblocks of {args.batch} / baseline: time {new['seconds'] / base['seconds']:.2f}x, "
          f"peak memory {new['peak_mb'] / base['peak_mb']:.2f}x; same table: {new['table'] == base['table']}")


if __name__ == "__main__":
    main()
