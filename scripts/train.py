#!/usr/bin/env python
"""Train an encoder from a YAML config: build the view cache, train, select, export.

    python scripts/train.py --config scripts/configs/lite0_squeeze_r128.yaml            # all stages
    python scripts/train.py --config ... --stage cache --worker 0 --workers 2           # cache only, 1 of 2 processes
    python scripts/train.py --config ... --stage train                                  # train on the finished shards
    python scripts/train.py --config ... --stage export --out model.onnx                # best checkpoint -> ONNX
    python scripts/train.py --config ... --stage teacher                                # teacher features only

Every stage resumes: cache shards already written are skipped, training continues from
``<run_dir>/last.pt``.  Runs unattended: log to a file, progress every few seconds.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
import yaml

from encoders.contract import ModelContract
from encoders.training.cache import build_cache, load_caches
from encoders.training.data import class_groups, image_sources, synth_sources
from encoders.training.export import check_parity, contract_for, export_onnx
from encoders.training.model import EmbeddingModel
from encoders.training.trainer import TrainConfig, train_on_cache

LOG = logging.getLogger("train")


def load_config(path: str) -> dict:
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    cfg["_path"] = path
    for key in ("cache_dir", "run_dir", "benchmark"):
        if cfg.get(key):
            cfg[key] = str(Path(os.path.expanduser(cfg[key])))
    # Other configs whose view caches this one trains on too (its own cache comes first): named by
    # config, not by directory, so the cache stage can build them from their own recipes.
    cfg["extra_caches_from"] = [load_config(p) for p in cfg.get("extra_caches_from") or []]
    return cfg


def build_model(cfg: dict) -> EmbeddingModel:
    m = cfg["model"]
    return EmbeddingModel(m["backbone"], head=m.get("head", "squeeze"), dim=m.get("dim", 256),
                          norm=m.get("norm", "ln"), input_size=tuple(cfg["input_size"]),
                          pretrained=m.get("pretrained", True), train_from=m.get("train_from"),
                          **m.get("head_kwargs", {}))


def make_contract(cfg: dict, model: EmbeddingModel) -> ModelContract:
    return contract_for(model, cfg["name"], str(cfg.get("version", "1")))


def sources_for(cfg: dict) -> list:
    from encoders.training.synth import TRAIN_FAMILIES

    d = cfg["data"]
    src = synth_sources(sorted(TRAIN_FAMILIES), d["templates_per_family"], seed=cfg.get("seed", 0),
                        template_offset=d.get("template_offset", 0), siblings=d.get("siblings", 1))
    if d.get("real_images", True):
        src += image_sources(crops_per_large_image=d.get("crops_per_large_image", 6), seed=cfg.get("seed", 0),
                             max_icons=d.get("max_icons", 400))
    # Interleave kinds so any prefix of shards is a fair sample of the whole.
    rng = np.random.default_rng(cfg.get("seed", 0))
    return [src[i] for i in rng.permutation(len(src))]


def stage_cache(cfg: dict, worker: int, workers: int, max_shards: int | None) -> None:
    for other in cfg["extra_caches_from"]:
        LOG.info("cache of %s (this config trains on it too)", other["_path"])
        stage_cache(other, worker, workers, max_shards)
    model = build_model(cfg).eval()
    contract = make_contract(cfg, model)
    sources = sources_for(cfg)
    d = cfg["data"]
    LOG.info("%d sources -> %d classes x %d views", len(sources), len(sources) * 24, d["views"])
    build_cache(model, contract, sources, Path(cfg["cache_dir"]), d["views"], d.get("render_scale", 0.5),
                d.get("shard_sources", 16), worker, workers, max_shards, captures=d.get("captures", "train"),
                store_pixels=d.get("store_pixels", True))


def val_inputs(cfg: dict, contract: ModelContract, trunk=None) -> dict | None:
    """The validation split of the benchmark as model-input-sized pixels (and, given the frozen
    trunk, its feature maps), computed once and cached beside the training cache."""
    bench = cfg.get("benchmark")
    if not bench or not (Path(bench) / "val").is_dir():
        LOG.warning("no validation benchmark at %s: training without model selection", bench)
        return None
    from encoders.decode import read_image
    from encoders.preprocess import resize_to_input, to_tensor

    import hashlib

    tag = hashlib.sha256((Path(bench) / "manifest.json").read_bytes()).hexdigest()[:12]
    out = Path(cfg["cache_dir"]) / f"val-{tag}-{contract.input_size[0]}x{contract.input_size[1]}.npz"
    if out.exists():
        z = np.load(out, allow_pickle=False)
        res = {k: z[k] for k in z.files}
    else:
        root = Path(bench) / "val"
        res = {}
        for part in ("register", "queries", "unknown"):
            files = sorted(p for p in (root / part).rglob("*") if p.is_file())
            res[f"{part}_pixels"] = np.stack([resize_to_input(read_image(str(p), target_hw=contract.input_size),
                                                              contract) for p in files]) if files else \
                np.zeros((0, *contract.input_size, 3), np.uint8)
            res[f"{part}_labels"] = np.array([p.parent.name for p in files])
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, **res)
        os.replace(tmp, out)
    for part in ("register", "queries", "unknown"):
        px = res[f"{part}_pixels"]
        res[f"{part}_x"] = np.stack([to_tensor(p, contract) for p in px]) if len(px) else \
            np.zeros((0, 3, *contract.input_size), np.float32)
        if trunk is not None and len(px):
            with torch.no_grad():
                res[f"{part}_x"] = np.concatenate([trunk(torch.from_numpy(res[f"{part}_x"][i:i + 128])).numpy()
                                                   for i in range(0, len(px), 128)])
    return res


def make_validator(val: dict | None, from_trunk: bool):
    if val is None:
        return None
    from retriever.metrics import evaluate_features

    def feats(model, x):
        fwd = model.forward_from_trunk if from_trunk else model
        out = [torch.nn.functional.normalize(fwd(torch.from_numpy(x[i:i + 256])), dim=1).numpy()
               for i in range(0, len(x), 256)]
        return np.concatenate(out)

    def validate(model) -> dict:
        r = evaluate_features(feats(model, val["queries_x"]), val["queries_labels"],
                              feats(model, val["register_x"]), val["register_labels"],
                              feats(model, val["unknown_x"]) if len(val["unknown_x"]) else None)
        tpr = {f"val_tpr@{row['fpr']:.0e}": row["tpr"] for row in r["table"]}
        t4 = tpr.get("val_tpr@1e-04") or 0.0
        return {**tpr, "val_auroc": r["auroc"], "val_top1": r["top1_accuracy"],
                "val_key": (t4 or 0.0) + (r["auroc"] or 0.0)}

    return validate


def stage_train(cfg: dict) -> dict:
    model = build_model(cfg)
    contract = make_contract(cfg, model)
    dirs = [Path(c["cache_dir"]) for c in (cfg, *cfg["extra_caches_from"])]
    feats, labels, _, meta = load_caches(dirs, cfg["data"].get("max_shards"))
    LOG.info("cache: %d views, %d classes present of %d", len(feats), len(np.unique(labels)), meta["num_classes"])
    t = cfg["train"]
    teacher = None
    if cfg.get("teacher") and t.get("distill_weight", 0) > 0:
        teacher = teacher_features_of_views(cfg)
        if len(teacher) != len(feats):
            raise SystemExit(f"teacher features cover {len(teacher)} views, the student has {len(feats)}")
        LOG.info("distilling from %s (weight %s)", cfg["teacher"]["onnx"], t["distill_weight"])
    val = val_inputs(cfg, contract, trunk=model.backbone.trunk.eval())
    tc = TrainConfig(**{k: v for k, v in t.items() if k in TrainConfig.__dataclass_fields__})
    model = model.to(memory_format=torch.channels_last)
    t0 = time.time()
    groups = class_groups(meta["sources"], labels) if tc.sibling_fraction > 0 else None
    best = train_on_cache(model, feats, labels, meta["num_classes"], tc, Path(cfg["run_dir"]),
                          make_validator(val, from_trunk=True), log=LOG.info, groups=groups, teacher=teacher)
    summary = {"config": cfg["_path"], "name": cfg["name"], "views": int(len(feats)),
               "classes_present": int(len(np.unique(labels))), "best": best, "train_wall_s": time.time() - t0,
               "cache_dirs": [str(d) for d in dirs], "threads": torch.get_num_threads(),
               "teacher": cfg.get("teacher")}
    (Path(cfg["run_dir"]) / "summary.json").write_text(json.dumps(summary, indent=2))
    LOG.info("best: %s", json.dumps(best))
    return summary


def teacher_features_of_views(cfg: dict, partial: bool = False) -> np.ndarray | None:
    """Teacher features of every view in this config's caches, for distilling while training on
    cached trunk maps: ``teacher: {onnx: M.onnx, views_from: T.yaml}``, where T's caches hold the same
    seeded captures at the teacher's input size (``distill.top_features_of_caches``)."""
    from encoders.training.distill import top_features_of_caches

    spec = cfg["teacher"]
    tcfg = load_config(spec["views_from"])
    mine = [Path(c["cache_dir"]) for c in (cfg, *cfg["extra_caches_from"])]
    theirs = [Path(c["cache_dir"]) for c in (tcfg, *tcfg["extra_caches_from"])]
    from encoders.runtime import file_sha256

    # Keyed by the teacher file's hash: another teacher (or a re-exported one) never reuses these features.
    out = Path(cfg["run_dir"]) / f"teacher-{Path(spec['onnx']).stem}-{file_sha256(spec['onnx'])[:12]}"
    return top_features_of_caches(spec["onnx"], mine, theirs, out,
                                  trunk_output=spec.get("trunk_output"), partial=partial, log=LOG.info)


def student_teacher_features(cfg: dict, cache_dir: Path, n_views: int) -> np.ndarray:
    """Teacher features of every cached view (only shards that hold pixels), computed once.

    ``teacher: {config: X.yaml}`` names a model trained on this same cache: its features come
    from the cached trunk maps through its trained top (seconds, and identical to running its
    ONNX export on the same pixels).  ``teacher: {onnx: M.onnx}`` runs any ONNX encoder on the
    cached pixels (a docretriever model, or e.g. a user's CLIP image tower with a contract).
    """
    from encoders.training.distill import OnnxTeacher, teacher_features

    spec = cfg["teacher"]
    name = Path(spec.get("config") or spec["onnx"]).stem
    tcache = Path(cfg["run_dir"]) / f"teacher-{name}-{n_views}.npy"
    if tcache.exists():
        return np.load(tcache)
    shards = [p for p in sorted(cache_dir.glob("shard-*.npz")) if "pixels" in np.load(p).files]
    if spec.get("config"):
        tcfg = load_config(spec["config"])
        tmodel = build_model(tcfg)
        tmodel.load_state_dict(torch.load(Path(tcfg["run_dir"]) / "best.pt", map_location="cpu",
                                          weights_only=False)["model"])
        tmodel.eval()
        out = []
        with torch.no_grad():
            for p in shards:
                maps = np.load(p)["feats"]
                for i in range(0, len(maps), 512):
                    f = tmodel.forward_from_trunk(torch.from_numpy(maps[i:i + 512].astype(np.float32)))
                    out.append(torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float16))
        feats = np.concatenate(out)
    else:
        teacher = OnnxTeacher(spec["onnx"])
        feats = np.concatenate([teacher_features(teacher, np.load(p)["pixels"]) for p in shards])
    if len(feats) != n_views:
        raise SystemExit(f"teacher features cover {len(feats)} views, the student has {n_views}")
    tcache.parent.mkdir(parents=True, exist_ok=True)
    np.save(tcache, feats)
    return feats


def load_pixels(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The view pixels of every shard that holds them, copied once into one preallocated array
    (concatenating a list of shards needs twice the memory: 2 x 11 GB for 231k views, which the
    kernel's OOM killer ended on a 24 GB machine)."""
    shards = []
    for p in sorted(cache_dir.glob("shard-*.npz")):
        with np.load(p) as z:
            if "pixels" in z.files:
                shards.append((p, z["labels"]))
    if not shards:
        raise SystemExit(f"{cache_dir}: no shard holds pixels; rebuild the cache")
    labels = np.concatenate([lab for _, lab in shards])
    pixels = None
    row = 0
    for p, lab in shards:
        with np.load(p) as z:
            px = z["pixels"]
        if pixels is None:
            pixels = np.empty((len(labels), *px.shape[1:]), px.dtype)
        pixels[row:row + len(px)] = px
        row += len(px)
        del px
    return pixels, labels


def stage_student(cfg: dict) -> dict:
    """Train a whole network (e.g. LCNet, no pretrained weights) on the cached view pixels,
    distilling from a teacher's features (an ONNX model, e.g. the trained EfficientNet-Lite0)."""
    from encoders.training.trainer import train_on_pixels

    model = build_model(cfg)
    contract = make_contract(cfg, model)
    cache_dir = Path(cfg["cache_dir"])
    meta = json.loads((cache_dir / "cache.json").read_text())
    pixels, labels = load_pixels(cache_dir)
    teacher = None
    t = cfg["train"]
    if cfg.get("teacher") and t.get("distill_weight", 0) > 0:
        teacher = student_teacher_features(cfg, cache_dir, len(pixels))
    LOG.info("student on %d views, %d classes present; teacher %s", len(pixels), len(np.unique(labels)),
             None if teacher is None else teacher.shape)
    val = val_inputs(cfg, contract)
    tc = TrainConfig(**{k: v for k, v in t.items() if k in TrainConfig.__dataclass_fields__})
    model = model.to(memory_format=torch.channels_last)
    t0 = time.time()
    best = train_on_pixels(model, pixels, labels, meta["num_classes"], tc, Path(cfg["run_dir"]), contract,
                           teacher=teacher, validate=make_validator(val, from_trunk=False), log=LOG.info)
    summary = {"config": cfg["_path"], "name": cfg["name"], "views": int(len(pixels)),
               "classes_present": int(len(np.unique(labels))), "best": best, "train_wall_s": time.time() - t0,
               "teacher": cfg.get("teacher")}
    (Path(cfg["run_dir"]) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def stage_export(cfg: dict, out: str) -> None:
    model = build_model(cfg)
    state = torch.load(Path(cfg["run_dir"]) / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    contract = make_contract(cfg, model)
    run_summary = Path(cfg["run_dir"]) / "summary.json"
    info = {"config": cfg["_path"], "backbone": cfg["model"]["backbone"], "head": cfg["model"].get("head"),
            "train_from": cfg["model"].get("train_from"), "selected": state.get("record", {})}
    if run_summary.exists():
        s = json.loads(run_summary.read_text())
        info.update(views=s["views"], classes=s["classes_present"], train_wall_s=round(s["train_wall_s"]))
    contract = contract.with_info(**info)
    export_onnx(model, contract, out)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, *contract.input_size)).astype(np.float32)
    err = check_parity(model, out, x)
    LOG.info("exported %s; torch vs ONNX max abs diff %.2e", out, err)
    if err > 1e-4:
        raise SystemExit(f"parity check failed: torch and ONNX differ by {err:.2e}")


def keep_freed_memory() -> None:
    """Stop glibc from returning big freed blocks to the kernel after every step.

    A training step allocates and frees tensors of tens of MB (the sampled class logits); by
    default glibc serves those with mmap and unmaps them on free, so the next step page-faults
    them in again: measured here, half the process's CPU time in the kernel.  Raising the mmap
    and trim thresholds keeps them in the heap for reuse.  No-op where mallopt is not glibc's."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    except (OSError, AttributeError):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--stage", choices=["cache", "teacher", "train", "student", "export", "all"], default="all",
                    help="all = cache, then train (or student, when the config's teacher teaches on pixels), "
                         "then export")
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-shards", type=int, default=None, help="stop the cache stage after this many shards")
    ap.add_argument("--out", default=None, help="ONNX output path (export stage)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    # One thread by default (a shared 2-core box); DOCRETRIEVER_TRAIN_THREADS=2 when the box is yours.
    torch.set_num_threads(int(os.environ.get("DOCRETRIEVER_TRAIN_THREADS", "1")))
    torch.set_float32_matmul_precision("medium")
    keep_freed_memory()
    cfg = load_config(args.config)
    if args.stage in ("cache", "all"):
        stage_cache(cfg, args.worker, args.workers, args.max_shards)
    if args.stage == "teacher":  # distilling on cached trunk maps: the teacher's features, ahead of training
        teacher_features_of_views(cfg, partial=True)
    # A teacher with ``views_from`` is distilled while training on trunk maps; any other teacher
    # teaches a whole student network on cached pixels.
    on_pixels = bool(cfg.get("teacher")) and not cfg["teacher"].get("views_from")
    if args.stage == "train" or (args.stage == "all" and not on_pixels):
        stage_train(cfg)
    if args.stage == "student" or (args.stage == "all" and on_pixels):
        stage_student(cfg)
    if args.stage in ("export", "all"):
        stage_export(cfg, args.out or str(Path(cfg["run_dir"]) / f"{cfg['name']}.onnx"))


if __name__ == "__main__":
    main()
