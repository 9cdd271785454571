"""Margin losses on cosine logits: softmax (scale only), CosFace and ArcFace.

Each takes logits that are already cosines clamped to [-1, 1] and integer labels where -1
marks "this sample's class centre is not in the sampled/local set" (PartialFC), and returns
scaled logits ready for cross-entropy.  Same shape as insightface's CombinedMarginLoss.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class MarginLoss(nn.Module):
    """``kind``: "softmax" (s*cos), "cosface" (s*(cos - m) on the target), "arcface" (s*cos(theta + m))."""

    def __init__(self, kind: str = "cosface", s: float = 64.0, m: float = 0.4) -> None:
        super().__init__()
        if kind not in ("softmax", "cosface", "arcface"):
            raise ValueError(f"unknown margin loss {kind!r}; choose softmax, cosface or arcface")
        self.kind, self.s, self.m = kind, float(s), float(m)

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        idx = torch.where(labels != -1)[0]
        target = labels[idx]
        logits = cos.clone()
        if self.kind == "cosface":
            logits[idx, target] -= self.m
        elif self.kind == "arcface":
            t = cos[idx, target].clamp(-1 + 1e-7, 1 - 1e-7)
            theta = torch.acos(t)
            # Past pi - m, cos(theta + m) stops decreasing; fall back to a CosFace-like penalty there
            # so the target logit stays monotonic in theta (the "easy margin" guard).
            with_margin = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m),
                                      t - self.m * math.sin(self.m))
            logits[idx, target] = with_margin
        return logits * self.s

    def extra_repr(self) -> str:
        return f"kind={self.kind}, s={self.s}, m={self.m}"
