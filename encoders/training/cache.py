"""The pre-rendered training cache: frozen-trunk feature maps of augmented captured views.

Two CPU cores cannot render, augment and push millions of images through a pretrained CNN
while also training it.  So views are produced once: render the source (a new fill of the
personal data for each view of a synthetic template), apply the class variant (x24), simulate
a capture (perspective, light, blur, noise, JPEG), decode it through the *same* reduced-JPEG
path and preprocessing as inference, run the frozen trunk (ONNX Runtime), and store the
feature maps as float16 shards.  Training then runs the small trainable top on these maps.

Shards are written atomically and skipped when present, so an interrupted build resumes;
``worker``/``workers`` split the shards between processes.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..decode import read_image
from ..preprocess import resize_to_input, to_tensor
from .data import VARIANTS, Source, apply_variant, render_source, stable_seed

LOG = logging.getLogger(__name__)


def export_trunk(model, contract: ModelContract, path: Path) -> Path:
    """The frozen trunk as ONNX (about 2x faster than eager PyTorch on one core)."""
    import torch

    trunk = model.backbone.trunk.eval()
    h, w = contract.input_size
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(trunk, (torch.zeros(2, 3, h, w),), str(tmp), input_names=["img"], output_names=["fmap"],
                          opset_version=17, dynamo=False, dynamic_axes={"img": {0: "b"}, "fmap": {0: "b"}})
    os.replace(tmp, path)
    return path


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def make_view(base: np.ndarray, key: str, variant: int, view: int, contract: ModelContract,
              capture_strength: str | tuple[str, ...] = "train", aug_p: float = 0.5) -> np.ndarray:
    """One training view as the model-input-sized BGR uint8 image.  View 0 is the clean
    register-like image; the others are simulated captures decoded like inference decodes.
    A tuple of capture presets picks one per view (uniformly, from the view's own seed)."""
    img = apply_variant(base, variant)
    if view == 0:
        return resize_to_input(img, contract)
    from .capture import augment_view, simulate_capture

    rng = np.random.default_rng(stable_seed(key, variant, view))
    strength = capture_strength
    if not isinstance(strength, str):
        strength = strength[int(rng.integers(len(strength)))]
    jpeg = simulate_capture(img, rng, strength=strength)
    small = resize_to_input(read_image(jpeg, target_hw=contract.input_size), contract)
    if rng.random() < aug_p:
        small = augment_view(small, rng)
    return small


def build_shard(sources: list[Source], first_class: int, session, contract: ModelContract, views: int,
                render_scale: float, out: Path, captures: str | tuple[str, ...] = "train",
                store_pixels: bool = True) -> int:
    pixels, labels, view_ids = [], [], []
    for si, src in enumerate(sources):
        fills = [render_source(src, fill=k, scale=render_scale) for k in range(views)] if src.kind == "synth" \
            else [render_source(src, fill=0, scale=render_scale)] * views
        for v in range(VARIANTS):
            for k in range(views):
                pixels.append(make_view(fills[k], src.key, v, k, contract, captures))
                labels.append(first_class + si * VARIANTS + v)
                view_ids.append(k)
    feats = []
    batch = np.stack([to_tensor(p, contract) for p in pixels])
    for i in range(0, len(batch), 128):
        (f,) = session.run(None, {"img": batch[i:i + 128]})
        feats.append(f.astype(np.float16))
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".npz.tmp")
    os.close(fd)
    with open(tmp, "wb") as fh:
        # Pixels too: a student without a pretrained trunk (LCNet) trains on them end to end.
        arrays = dict(feats=np.concatenate(feats), labels=np.asarray(labels, np.int64),
                      views=np.asarray(view_ids, np.int8))
        if store_pixels:
            arrays["pixels"] = np.stack(pixels)
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return len(pixels)


def build_cache(model, contract: ModelContract, sources: list[Source], cache_dir: Path, views: int,
                render_scale: float, shard_sources: int, worker: int = 0, workers: int = 1,
                max_shards: int | None = None, captures: str | tuple[str, ...] = "train",
                store_pixels: bool = True) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    captures = captures if isinstance(captures, str) else tuple(captures)
    meta = {"n_sources": len(sources), "num_classes": len(sources) * VARIANTS, "views": views,
            "captures": captures if isinstance(captures, str) else list(captures), "store_pixels": store_pixels,
            "render_scale": render_scale, "shard_sources": shard_sources, "contract": json.loads(contract.to_json()),
            "sources": [s.key for s in sources]}
    meta_path = cache_dir / "cache.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        older = {"captures": "train", "store_pixels": True}  # caches written before these keys existed
        same = all(old.get(k, older.get(k)) == meta[k] for k in ("sources", "views", "captures", "store_pixels"))
        if not same:
            raise ValueError(f"{cache_dir} holds a cache built from other sources/views/captures; "
                             "use another cache_dir")
    elif worker == 0:
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    trunk_path = cache_dir / f"trunk-w{worker}.onnx"
    export_trunk(model, contract, trunk_path)
    session = _session(trunk_path)
    n_shards = (len(sources) + shard_sources - 1) // shard_sources
    order = list(range(n_shards))
    done = 0
    t0 = time.time()
    for s in order:
        if s % workers != worker:
            continue
        if max_shards is not None and done >= max_shards:
            break
        out = cache_dir / f"shard-{s:05d}.npz"
        if out.exists():
            continue
        chunk = sources[s * shard_sources:(s + 1) * shard_sources]
        n = build_shard(chunk, s * shard_sources * VARIANTS, session, contract, views, render_scale, out,
                        captures, store_pixels)
        done += 1
        el = time.time() - t0
        LOG.info("shard %d/%d: %d views (%.1f views/s this worker)", s + 1, n_shards, n,
                 done * shard_sources * VARIANTS * views / max(el, 1e-9))


def load_cache(cache_dir: Path, max_shards: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Finished shards (the first ``max_shards``: sources are shuffled, so any prefix is a fair
    sample, e.g. for a data-scaling ablation) -> (feats float16 (n,C,h,w), labels, views, meta)."""
    meta = json.loads((cache_dir / "cache.json").read_text())
    shards = sorted(cache_dir.glob("shard-*.npz"))[:max_shards]
    if not shards:
        raise FileNotFoundError(f"{cache_dir}: no finished shards; run scripts/train.py --stage cache first")
    feats, labels, views = [], [], []
    for p in shards:
        with np.load(p) as z:
            feats.append(z["feats"])
            labels.append(z["labels"])
            views.append(z["views"])
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(views), meta


# Contract fields that decide what a cached feature map means (not the model's name or version).
_INPUT_FIELDS = ("input_size", "colour", "resize", "scale", "mean", "std")


def load_caches(cache_dirs: list[Path], max_shards: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                dict]:
    """Several caches as one training set: class ids of each later cache are shifted past the
    earlier ones'.  Refused when the caches were made with different input contracts or trunks
    (feature maps of another shape), or share a source (one image would become two classes).
    ``max_shards`` applies to the first cache only (the data-scaling ablations' knob)."""
    feats, labels, views, metas = [], [], [], []
    offset = 0
    seen_sources: dict[str, Path] = {}
    for i, d in enumerate(cache_dirs):
        f, lab, v, meta = load_cache(d, max_shards if i == 0 else None)
        if metas:
            first = metas[0]
            for k in _INPUT_FIELDS:
                if first["contract"].get(k) != meta["contract"].get(k):
                    raise ValueError(f"{d}: contract field {k!r} is {meta['contract'].get(k)!r}, "
                                     f"but {cache_dirs[0]} has {first['contract'].get(k)!r}")
            if f.shape[1:] != feats[0].shape[1:]:
                raise ValueError(f"{d}: feature maps {f.shape[1:]} differ from {cache_dirs[0]}'s "
                                 f"{feats[0].shape[1:]} (another trunk?)")
        for key in meta["sources"]:
            if key in seen_sources:
                raise ValueError(f"{d} and {seen_sources[key]} both hold source {key}; a source must be one "
                                 "set of classes")
            seen_sources[key] = d
        feats.append(f)
        labels.append(lab + offset)
        views.append(v)
        metas.append(meta)
        offset += meta["num_classes"]
    merged = dict(metas[0], num_classes=offset, n_sources=sum(m["n_sources"] for m in metas),
                  sources=[k for m in metas for k in m["sources"]])
    if len(feats) == 1:
        return feats[0], labels[0], views[0], merged
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(views), merged
