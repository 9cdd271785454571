"""PartialFC: a margin softmax over a random subset of class centres each step.

With hundreds of thousands of classes the full class matrix dominates a CPU training step
(measured: 83 % of an lcnet step with 100k dense classes).  Each step samples
``sample_rate * num_classes`` centres: the batch's own classes always, the rest random
negatives; only the sampled rows get gradients (the centre matrix is a sparse-gradient
embedding, updated by its own optimiser so AdamW state for untouched rows costs nothing).

Written for one process but laid out like insightface's PartialFC_V2 so it extends to
``torch.distributed``: each rank would own ``centres[class_start:class_start+num_local]``,
all-gather embeddings and labels, and remap labels outside its shard to -1; the loss would
then need a distributed softmax (all-reduce of max and sum).  ``class_start``/``num_local``
are kept for that reason.

Sibling negatives (``groups``, ``sibling_fraction``): the pairs that set a low-FPR threshold are
*siblings*, two templates of one document family seen the same way up (measured on the
benchmark: all 71 negatives above the 1e-4 threshold).  Uniform sampling gives each batch class
only ``sample_rate`` of its siblings as negatives; with a group id per class (e.g. family x
variant) a share of the negative budget is drawn from the groups present in the batch first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .losses import MarginLoss


class PartialFC(nn.Module):
    def __init__(self, margin: MarginLoss, dim: int, num_classes: int, sample_rate: float = 0.3,
                 class_start: int = 0, num_local: int | None = None, seed: int = 0,
                 groups: torch.Tensor | None = None, sibling_fraction: float = 0.0) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.margin = margin
        self.num_classes = num_classes
        self.class_start = class_start
        self.num_local = num_local if num_local is not None else num_classes
        self.sample_rate = sample_rate
        self.num_sample = max(1, int(sample_rate * self.num_local))
        # Centres as an Embedding with sparse gradients: the step touches only sampled rows.
        self.centres = nn.Embedding(self.num_local, dim, sparse=True)
        nn.init.normal_(self.centres.weight, 0.0, 0.01)
        self.generator = torch.Generator().manual_seed(seed)
        if not 0 <= sibling_fraction <= 1:
            raise ValueError(f"sibling_fraction must be in [0, 1], got {sibling_fraction}")
        if sibling_fraction > 0 and groups is None:
            raise ValueError("sibling_fraction > 0 needs groups (one group id per class)")
        if groups is not None and len(groups) != self.num_local:
            raise ValueError(f"groups has {len(groups)} entries for {self.num_local} classes")
        self.sibling_fraction = sibling_fraction
        self.groups = None if groups is None else torch.as_tensor(groups, dtype=torch.long)

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sampled class indices (sorted), labels remapped into that index space, -1 if absent)."""
        local = labels - self.class_start
        in_shard = (local >= 0) & (local < self.num_local)
        local = torch.where(in_shard, local, torch.full_like(local, -1))
        if self.num_sample >= self.num_local:
            return torch.arange(self.num_local), local
        positives = torch.unique(local[in_shard])
        score = torch.rand(self.num_local, generator=self.generator)
        score[positives] = 3.0  # the batch's own classes are always sampled
        k = max(self.num_sample, positives.numel())
        if self.sibling_fraction > 0:
            # then a share of the negatives from the batch's own groups, at random among them
            sib = torch.isin(self.groups, torch.unique(self.groups[positives]))
            sib[positives] = False
            pool = sib.nonzero().squeeze(1)
            n_sib = min(pool.numel(), int(self.sibling_fraction * (k - positives.numel())))
            if n_sib:
                score[pool[torch.randperm(pool.numel(), generator=self.generator)[:n_sib]]] = 2.0
        index = torch.topk(score, k, sorted=False).indices.sort().values
        remapped = torch.full_like(local, -1)
        remapped[in_shard] = torch.searchsorted(index, local[in_shard])
        return index, remapped

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        index, remapped = self.sample(labels)
        weight = self.centres(index)  # (k, dim), sparse gradient into the full matrix
        cos = F.linear(F.normalize(embeddings), F.normalize(weight)).clamp(-1, 1)
        logits = self.margin(cos, remapped)
        return F.cross_entropy(logits, remapped, ignore_index=-1)
