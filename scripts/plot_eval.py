"""Plots for scripts/evaluate.py: ROC (log FPR), score histograms with thresholds, 2-D feature maps.

Kept apart from the evaluation so matplotlib and scikit-learn load only when plots are asked for.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PLOT_TYPES = 20
PLOT_QUERIES_PER_TYPE = 25
DPI = 130


def _fpr_label(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def plot_roc(path: Path, results: Sequence[dict[str, Any]], fprs: Sequence[float]) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    lo = 1.0
    for i, res in enumerate(results):
        roc = res["roc"]
        f = np.asarray(roc["fpr"], dtype=float)
        t = np.asarray(roc["tpr"], dtype=float)
        keep = f > 0
        if not keep.any():
            continue
        lo = min(lo, f[keep].min())
        tpr4 = next((r["tpr"] for r in res["table"] if math.isclose(r["fpr"], 1e-4) and r["measurable"]), None)
        label = f"{res['name']}  AUROC {res['auroc']:.4f}" + (f", TPR@1e-4 {tpr4:.3f}" if tpr4 is not None else "")
        ax.step(f[keep], t[keep], where="post", lw=1.8, label=label,
                ls="-" if res["kind"] == "model" else "--", color=f"C{i}")
    for target in fprs:
        if target >= lo:
            ax.axvline(target, color="0.6", lw=0.8, ls=":")
            ax.text(target, 0.005, _fpr_label(target), rotation=90, va="bottom", ha="right", fontsize=8, color="0.4",
                    transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (negative pairs accepted), log scale")
    ax.set_ylabel("true-positive rate (positive pairs accepted)")
    n_neg = results[0]["n_neg"] if results else 0
    ax.set_title(f"ROC, {n_neg:,} negative / {results[0]['n_pos'] if results else 0:,} positive pairs")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_histograms(path: Path, items: Sequence[tuple[dict[str, Any], Any]]) -> Path:
    n = len(items)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.9 * n), squeeze=False)
    for ax, (res, sets) in zip(axes[:, 0], items):
        parts = [("negative pairs", sets.neg, "C3"), ("positive pairs", sets.pos, "C2")]
        if len(sets.unknown_best):
            parts.append(("unknown queries, best score", sets.unknown_best, "C1"))
        finite = np.concatenate([p[1][np.isfinite(p[1])] for p in parts if len(p[1])])
        lo, hi = float(finite.min()), float(finite.max())
        pad = 0.02 * (hi - lo + 1e-6)
        bins = np.linspace(lo - pad, hi + pad, 61)
        for name, vals, colour in parts:
            if len(vals) == 0:
                continue
            h, _ = np.histogram(vals, bins=bins)
            dens = h / (len(vals) * np.diff(bins))
            ax.stairs(dens, bins, fill=True, alpha=0.35, color=colour, label=f"{name} (n={len(vals):,})")
            ax.stairs(dens, bins, color=colour, lw=1)
        ax.set_yscale("log")
        ymax = ax.get_ylim()[1]
        for r in res["table"]:
            if r["measurable"]:
                ax.axvline(r["threshold"], color="k", lw=0.9, ls="--")
                ax.text(r["threshold"], ymax, f" {_fpr_label(r['fpr'])}", rotation=90, va="top", ha="right",
                        fontsize=7)
        ax.set_title(f"{res['name']}: cosine scores; dashed = thresholds at target FPR", fontsize=10)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density (log)")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _subset(types_all: Sequence[str], reg_labels: np.ndarray, q_labels: np.ndarray
            ) -> tuple[list[str], np.ndarray, np.ndarray]:
    types_all = list(types_all)
    step = max(1, len(types_all) // PLOT_TYPES)
    chosen = types_all[::step][:PLOT_TYPES]
    rsel = np.nonzero(np.isin(reg_labels, chosen))[0]
    qsel = []
    for t in chosen:
        qsel.extend(np.nonzero(q_labels == t)[0][:PLOT_QUERIES_PER_TYPE].tolist())
    return chosen, rsel, np.asarray(qsel, dtype=np.int64)


def plot_feature_map(path: Path, res: dict[str, Any], feats: dict[str, np.ndarray], split: Any) -> Path:
    from sklearn.manifold import TSNE

    reg_labels = np.asarray([lab for _, lab in split.register])
    q_labels = np.asarray([lab for _, lab in split.queries])
    chosen, rsel, qsel = _subset(sorted(set(reg_labels.tolist())), reg_labels, q_labels)
    x = np.concatenate([feats["register"][rsel], feats["queries"][qsel]]).astype(np.float64)
    labels = np.concatenate([reg_labels[rsel], q_labels[qsel]])
    is_reg = np.arange(len(x)) < len(rsel)
    colour_of = {t: plt.cm.tab20(i % 20) for i, t in enumerate(chosen)}
    colours = np.array([colour_of[t] for t in labels])
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    pca = xc @ vt[:2].T
    maps = [("PCA", pca)]
    if len(x) >= 5:
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0, n_jobs=1)
        maps.append(("t-SNE", tsne.fit_transform(x)))
    fig, axes = plt.subplots(1, len(maps), figsize=(6.8 * len(maps), 6.4), squeeze=False)
    for ax, (title, y) in zip(axes[0], maps):
        ax.scatter(y[~is_reg, 0], y[~is_reg, 1], c=colours[~is_reg], s=14, alpha=0.75, linewidths=0)
        ax.scatter(y[is_reg, 0], y[is_reg, 1], c=colours[is_reg], s=160, marker="*", edgecolors="k", linewidths=0.8)
        for t in chosen:
            m = is_reg & (labels == t)
            if m.any():
                px, py = y[m][0]
                ax.annotate(t if len(t) <= 18 else t[:17] + "…", (px, py), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, color="0.15")
        ax.set_title(f"{title}: {len(chosen)} types, {int(is_reg.sum())} register (stars), "
                     f"{int((~is_reg).sum())} queries (dots)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{res['name']}: register and query features coloured by type", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_det(path: Path, results: Sequence[dict[str, Any]], rules: Sequence[str] = ("cosine", "cosine+margin")
             ) -> Path | None:
    """Open-set DET: DIR against FPIR (log), mixed and dense registers side by side, per model and rule."""
    have = [r for r in results if r.get("open_set_dir")]
    if not have:
        return None
    kinds = [k for k in ("mixed", "dense") if any(k in r["open_set_dir"] for r in have)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for i, res in enumerate(have):
            sec = res["open_set_dir"].get(kind)
            if not sec:
                continue
            for j, rule in enumerate(rules):
                det = sec["rules"].get(rule, {}).get("det")
                if not det:
                    continue
                f = np.asarray(det["fpir"], dtype=float)
                d = np.asarray(det["dir"], dtype=float)
                keep = f > 0
                ax.plot(f[keep], d[keep], color=f"C{i}", ls="-" if j else "--", lw=1.4,
                        label=f"{res['name']} / {rule}")
        ax.set_xscale("log")
        ax.set_xlabel("FPIR (unregistered captures accepted)")
        ax.set_ylabel("DIR (registered captures: right type and accepted)")
        ax.set_ylim(0, 1)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"open set, {kind} register")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_plots(out_dir: Path, plot_data: Sequence[tuple[dict[str, Any], Any, dict[str, np.ndarray]]],
                split: Any, fprs: Sequence[float]) -> list[Path]:
    """ROC of all compared models, one histogram figure, and one feature map per model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [r for r, _, _ in plot_data]
    written = [plot_roc(out_dir / "roc.png", results, fprs),
               plot_histograms(out_dir / "score_histograms.png", [(r, s) for r, s, _ in plot_data])]
    det = plot_det(out_dir / "det_open_set.png", results)
    if det is not None:
        written.append(det)
    for res, _, feats in plot_data:
        written.append(plot_feature_map(out_dir / f"features_{_safe(res['name'])}.png", res, feats, split))
    return written
