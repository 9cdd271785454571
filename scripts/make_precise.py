#!/usr/bin/env python
"""Make the shipped "precise" model: the default model over the full page and its two halves.

    python scripts/make_precise.py [--base encoders/default/docretriever-default.onnx]
        [--out encoders/default/docretriever-precise.onnx]
    python scripts/evaluate.py --model encoders/default/docretriever-precise.onnx \\
        --benchmark ~/.cache/docretriever/benchmark-v4 --split val --write-thresholds
    python scripts/evaluate.py --model encoders/default/docretriever-precise.onnx \\
        --model encoders/default/docretriever-default.onnx --benchmark ~/.cache/docretriever/benchmark-v4 \\
        --split test --split test-lookalike

See encoders/training/halves.py for what the composed model computes and why.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from encoders.training.halves import compose_halves  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=str(REPO / "encoders" / "default" / "docretriever-default.onnx"))
    ap.add_argument("--out", default=str(REPO / "encoders" / "default" / "docretriever-precise.onnx"))
    a = ap.parse_args()
    out = compose_halves(a.base, a.out, name="docretriever-lite0-b6-wide-r192-x2-halves")
    print(f"wrote {out}; measure its threshold table next (see this script's help)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
