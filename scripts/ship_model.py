#!/usr/bin/env python
"""A trained model -> the shipped files of one tier: ``encoders/default/docretriever-<name>.onnx`` and its
``-int8`` copy, each with its local map as a second output (for re-ranking) and both threshold tables
(cosine and re-ranked) measured on the benchmark's val split.

    python scripts/ship_model.py --model runs/lite0_b6_wide_r96_x2_distill/model.onnx --name fast \\
        --map blocks.2 --rerank-weight 3.2 --benchmark ~/.cache/docretriever/benchmark-v4 --results scripts/results/fast

Steps, in order (each file is written atomically; a failed step leaves the earlier files in place):
1. the fp32 file: the trained model with its local map (``--map``) exposed (``encoders.local.add_local_output``);
2. its tables: ``scripts/evaluate.py --split val --write-thresholds`` (report kept in ``--results``);
3. the int8 copy: static QDQ quantisation of the trained model, calibrated on val images
   (``encoders.training.quantize``), then the same map exposed (the float output before its
   QuantizeLinear, which leaves the features bit-identical);
4. its tables, measured the same way.
The re-ranking weight is chosen beforehand on val (``scripts/ablate_local_rerank.py --full``).
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from encoders.local import LITE0_MAPS, add_local_output  # noqa: E402
from encoders.runtime import DEFAULT_MODEL  # noqa: E402


def measure_tables(model: Path, benchmark: Path, report: Path) -> None:
    """Both tables into ``model`` from one val run; the run's report saved to ``report``."""
    report.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--model", str(model), "--benchmark", str(benchmark),
           "--split", "val", "--write-thresholds"]
    print("+", " ".join(cmd), flush=True)
    with open(report, "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, cwd=REPO)
    print(f"  report: {report}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="the trained model (scripts/train.py --stage export)")
    ap.add_argument("--name", required=True, help="the tier's name: files docretriever-<name>[-int8].onnx")
    ap.add_argument("--rerank-weight", required=True, type=float, help="lambda, chosen on val")
    ap.add_argument("--k", type=int, default=5, help="candidates re-ranked")
    ap.add_argument("--map", choices=sorted(LITE0_MAPS), default="blocks.3",
                    help="the layer whose output re-ranks (chosen on val: blocks.3 at 192 px, blocks.2 at 96 px)")
    ap.add_argument("--benchmark", required=True, type=Path)
    ap.add_argument("--results", required=True, type=Path, help="where the val reports go")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_MODEL.parent)
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()
    if not (args.benchmark / "val").is_dir():
        raise SystemExit(f"{args.benchmark}: no val split (scripts/build_benchmark.py makes one)")
    fp32 = args.out_dir / f"docretriever-{args.name}.onnx"
    tensor = LITE0_MAPS[args.map]
    add_local_output(args.model, tensor, fp32, k=args.k, weight=args.rerank_weight)
    print(f"wrote {fp32} (local map {args.map}: {tensor}, k {args.k}, weight {args.rerank_weight})", flush=True)
    measure_tables(fp32, args.benchmark, args.results / "eval-val.txt")
    if args.no_int8:
        return
    from encoders.training.quantize import quantize_model

    files = sorted(str(p) for p in (args.benchmark / "val").rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(0).shuffle(files)
    int8 = args.out_dir / f"docretriever-{args.name}-int8.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        plain = quantize_model(args.model, Path(tmp) / "int8.onnx", files[:256])
        add_local_output(plain, tensor, int8, k=args.k, weight=args.rerank_weight)
    print(f"wrote {int8} (static int8, calibrated on {min(256, len(files))} val images)", flush=True)
    measure_tables(int8, args.benchmark, args.results / "eval-val-int8.txt")


if __name__ == "__main__":
    main()
