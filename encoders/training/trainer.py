"""Train the trainable top of an embedding model on the feature cache (CPU, one process).

AdamW (weight decay off for norms, biases and class centres), linear warm-up then linear decay,
gradient clipping, PartialFC with a margin loss.  Checkpoints every epoch (atomically) and
resumes from the last one; a JSON-lines metrics log and a progress bar.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .losses import MarginLoss
from .partial_fc import PartialFC

LOG = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup: float = 0.1
    clip: float = 5.0
    loss: str = "cosface"
    s: float = 64.0
    m: float = 0.4
    sample_rate: float = 0.3
    sibling_fraction: float = 0.0  # share of PartialFC's negatives drawn from the batch's sibling classes
    seed: int = 0
    distill_weight: float = 0.0  # cosine distillation towards cached teacher features, if any


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on norm weights and biases (the reference meant to, but its name filter missed)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) or \
                type(module).__name__.startswith("BatchNormAct")
            (no_decay if is_norm or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * max(0.0, (total - step) / max(1, total - warmup))


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_on_cache(model: nn.Module, feats: np.ndarray, labels: np.ndarray, num_classes: int, cfg: TrainConfig,
                   run_dir: Path, validate: Callable[[nn.Module], dict] | None = None,
                   log: Callable[[str], None] = print, groups: np.ndarray | None = None,
                   teacher: np.ndarray | None = None) -> dict:
    """Train ``model.forward_from_trunk`` on cached trunk maps; returns the best validation record.
    ``groups``: a sibling group id per class (``data.class_groups``), for ``cfg.sibling_fraction``;
    ``teacher``: a feature per view to distil towards with weight ``cfg.distill_weight``."""

    def batch(idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(feats[idx].astype(np.float32)).contiguous(memory_format=torch.channels_last)

    return train(model, model.forward_from_trunk, batch, labels, num_classes, cfg, run_dir, validate, log,
                 groups=groups, teacher=teacher)


def train_on_pixels(model: nn.Module, pixels: np.ndarray, labels: np.ndarray, num_classes: int, cfg: TrainConfig,
                    run_dir: Path, contract, teacher: np.ndarray | None = None,
                    validate: Callable[[nn.Module], dict] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train a whole network on cached views (``(n, H, W, 3)`` BGR uint8), optionally distilling
    towards cached teacher features with weight ``cfg.distill_weight``."""
    from ..preprocess import to_tensor

    def batch(idx: np.ndarray) -> torch.Tensor:
        x = np.stack([to_tensor(p, contract) for p in pixels[idx]])
        return torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

    return train(model, model, batch, labels, num_classes, cfg, run_dir, validate, log, teacher=teacher)


def train(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
          batch: Callable[[np.ndarray], torch.Tensor], labels: np.ndarray, num_classes: int, cfg: TrainConfig,
          run_dir: Path, validate: Callable[[nn.Module], dict] | None = None,
          log: Callable[[str], None] = print, teacher: np.ndarray | None = None,
          groups: np.ndarray | None = None) -> dict:
    """The loop: ``forward(batch(idx))`` -> embeddings -> PartialFC margin loss (+ distillation)."""
    from tqdm import tqdm

    from .distill import CosineDistillLoss

    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    pfc = PartialFC(MarginLoss(cfg.loss, cfg.s, cfg.m), model.dim, num_classes, cfg.sample_rate, seed=cfg.seed,
                    groups=None if groups is None else torch.from_numpy(groups),
                    sibling_fraction=cfg.sibling_fraction)
    distill = CosineDistillLoss(model.dim, teacher.shape[1]) if teacher is not None and cfg.distill_weight > 0 \
        else None
    dense = param_groups(model, cfg.weight_decay)
    if distill is not None:
        dense.append({"params": list(distill.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(dense, lr=cfg.lr)
    opt_c = torch.optim.SparseAdam(pfc.parameters(), lr=cfg.lr)
    n = len(labels)
    steps_per_epoch = n // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup * total))
    ckpt = run_dir / "last.pt"
    start_epoch, step, history, best = 0, 0, [], None
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        pfc.load_state_dict(state["pfc"])
        opt.load_state_dict(state["opt"])
        opt_c.load_state_dict(state["opt_c"])
        if distill is not None and state.get("distill"):
            distill.load_state_dict(state["distill"])
        start_epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        log(f"resumed from {ckpt} at epoch {start_epoch}, step {step}")
    metrics_log = open(run_dir / "metrics.jsonl", "a")
    labels_t = torch.from_numpy(labels)
    teacher_t = torch.from_numpy(teacher) if distill is not None else None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = np.random.default_rng(cfg.seed + epoch).permutation(n)
        t0, seen, loss_sum, kd_sum = time.time(), 0, 0.0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", mininterval=10,
                   disable=None)
        lr = cfg.lr
        for b in bar:
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            x, y = batch(idx), labels_t[idx]
            lr = lr_at(step, total, warmup, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            for g in opt_c.param_groups:
                g["lr"] = lr
            emb = forward(x)
            loss = pfc(emb, y)
            if distill is not None:
                kd = distill(emb, teacher_t[idx])
                kd_sum += kd.item() * len(idx)
                loss = loss + cfg.distill_weight * kd
            opt.zero_grad(set_to_none=True)
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.clip)
            opt.step()
            opt_c.step()
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            if b % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
            if bar.disable and b % 200 == 0 and b:  # no terminal: periodic log lines instead
                log(f"epoch {epoch + 1} step {b}/{steps_per_epoch} loss {loss_sum / seen:.4f} "
                    f"{seen / (time.time() - t0):.0f} samples/s")
        rec = {"epoch": epoch + 1, "step": step, "loss": loss_sum / max(seen, 1),
               "samples_per_s": seen / (time.time() - t0), "lr": lr}
        if distill is not None:
            rec["distill_loss"] = kd_sum / max(seen, 1)
        if validate is not None:
            model.eval()
            with torch.no_grad():
                rec.update(validate(model))
            key = rec.get("val_key", -math.inf)
            if best is None or key > best.get("val_key", -math.inf):
                best = dict(rec)
                _atomic_save({"model": model.state_dict(), "record": rec}, run_dir / "best.pt")
        history.append(rec)
        metrics_log.write(json.dumps(rec) + "\n")
        metrics_log.flush()
        log(json.dumps(rec))
        _atomic_save({"model": model.state_dict(), "pfc": pfc.state_dict(), "opt": opt.state_dict(),
                      "opt_c": opt_c.state_dict(), "distill": distill.state_dict() if distill else None,
                      "epoch": epoch + 1, "step": step, "history": history, "best": best}, ckpt)
    metrics_log.close()
    if best is None:
        _atomic_save({"model": model.state_dict(), "record": history[-1] if history else {}}, run_dir / "best.pt")
        best = history[-1] if history else {}
    return best
