#!/usr/bin/env python
"""Static int8 copy of a model, calibrated on images (use the benchmark's *val* split, never test).

    python scripts/quantize.py --model M.onnx --calib ~/.cache/docretriever/benchmark-v1/val --out M-int8.onnx
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from encoders.training.quantize import quantize_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True, help="directory of calibration images (searched recursively)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=256, help="calibration images to sample")
    ap.add_argument("--activations", choices=("s8", "u8"), default="s8",
                    help="int8 activation type: s8 (S8S8, portable; default) or u8 (U8S8)")
    args = ap.parse_args()
    files = sorted(str(p) for p in Path(args.calib).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(0).shuffle(files)
    out = quantize_model(args.model, args.out, files[: args.n], activations=args.activations)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) from {min(len(files), args.n)} calibration images")


if __name__ == "__main__":
    main()
