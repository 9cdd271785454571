"""Feature distillation from any teacher: a torch module, an ONNX file, or a trained docretriever model.

PP-LCNet has no offline ImageNet weights; from scratch it collapsed in the reference
(TPR@1e-4 0.141).  A teacher supplies what pretraining would: its features on the same views
are computed once (forward only, cached) and the student is pulled towards them with an
explicit cosine loss through a bias-free linear projector (student dim -> teacher dim).  The
reference's KL on softmaxed unit vectors is ~(1 - cos)/512, numerically negligible next to a
s=64 CosFace loss; a cosine term with a tuned weight is not.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..contract import ModelContract
from ..preprocess import preprocess


class Teacher(Protocol):
    dim: int

    def __call__(self, images_bgr: list[np.ndarray]) -> np.ndarray:  # (n, dim) unit rows
        ...


class OnnxTeacher:
    """An ONNX image encoder (e.g. a CLIP image tower exported by the user, or a docretriever model).

    A docretriever model brings its own contract; any other ONNX file needs ``contract`` to say
    its input size, colour order and normalisation (CLIP: 224x224 RGB, its mean/std).
    """

    def __init__(self, path: str | os.PathLike, contract: ModelContract | None = None) -> None:
        import onnxruntime as ort

        from ..contract import METADATA_KEY, read_contract_from_onnx_bytes

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if contract is None:
            if METADATA_KEY not in meta:
                raise ValueError(f"{path}: not a docretriever model; pass contract= describing its input")
            contract = read_contract_from_onnx_bytes(meta, str(path))
        self.contract = contract
        self.input_name = self.session.get_inputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1]) if isinstance(
            self.session.get_outputs()[0].shape[-1], int) else contract.dim

    def __call__(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        x = np.stack([preprocess(im, self.contract) for im in images_bgr])
        (out,) = self.session.run(None, {self.input_name: x})
        out = np.asarray(out, np.float32).reshape(len(x), -1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class TorchTeacher:
    """A torch module with its own preprocessing: ``prep(bgr uint8) -> (3, H, W) float32``."""

    def __init__(self, module: nn.Module, prep: Callable[[np.ndarray], np.ndarray], dim: int) -> None:
        self.module, self.prep, self.dim = module.eval(), prep, dim

    @torch.no_grad()
    def __call__(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        out = self.module(torch.from_numpy(np.stack([self.prep(im) for im in images_bgr])))
        return F.normalize(out.float().reshape(len(images_bgr), -1), dim=1).numpy()


def teacher_features(teacher: Teacher, pixels: np.ndarray, batch: int = 128) -> np.ndarray:
    """Run the teacher once over cached views (``(n, H, W, 3)`` BGR uint8) -> ``(n, dim)`` float16."""
    out = np.empty((len(pixels), teacher.dim), np.float16)
    for i in range(0, len(pixels), batch):
        out[i:i + batch] = teacher(list(pixels[i:i + batch]))
    return out


class CosineDistillLoss(nn.Module):
    """1 - cos(project(student), teacher), averaged; the projector is dropped at export."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim else nn.Identity()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(self.proj(student), teacher.float(), dim=1)).mean()


def trunk_output_name(model, trunk_prefix: str = "/model/backbone/trunk/") -> str:
    """The value where a docretriever export's frozen trunk ends and its trained top begins: the one
    trunk value read by a node outside the trunk (the local-map output's Identity aside)."""
    made_by = {o: n.name for n in model.graph.node for o in n.output}
    found = {i for n in model.graph.node if not n.name.startswith(trunk_prefix) and n.op_type != "Identity"
             for i in n.input if made_by.get(i, "").startswith(trunk_prefix)}
    if len(found) != 1:
        raise ValueError(f"cannot tell where the trunk ends: trunk values read outside it: {sorted(found)}")
    return found.pop()


class OnnxTopTeacher:
    """The trained top of an ONNX docretriever model, fed its own cached trunk maps.

    Why: a teacher at another resolution than its student (the default at 192 px teaching a 96 px
    fast tier) needs its own view of each training capture.  The caches already hold those views as
    trunk maps (same sources, same seeded captures); running only the top over them costs seconds
    per shard, where re-rendering and a full forward pass would cost the cache build again."""

    def __init__(self, path: str | os.PathLike, trunk_output: str | None = None) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))  # the extractor needs value infos
        start = trunk_output or trunk_output_name(model)
        feats = model.graph.output[0].name
        top = onnx.utils.Extractor(model).extract_model([start], [feats])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(top.SerializeToString(), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, maps: np.ndarray, batch: int = 512) -> np.ndarray:
        """``(n, C, h, w)`` trunk maps -> ``(n, dim)`` unit rows, float16."""
        out = []
        for i in range(0, len(maps), batch):
            (f,) = self.session.run(None, {self.input_name: np.asarray(maps[i:i + batch], np.float32)})
            f = f.reshape(len(f), -1)
            out.append((f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float16))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float16)


def top_features_of_caches(onnx_path: str | os.PathLike, student_caches: list[Path], teacher_caches: list[Path],
                           out_root: Path, trunk_output: str | None = None, partial: bool = False,
                           log: Callable[[str], None] = print) -> np.ndarray | None:
    """The teacher's feature of every view of ``student_caches``, computed from ``teacher_caches``:
    the same sources and seeded captures, cache for cache and shard for shard, made at the teacher's
    input size with its trunk (checked: sources, views, captures, and each shard's labels and view ids).

    Each shard's features are saved under ``out_root/<teacher cache>/`` as they are made, so an
    interrupted run resumes.  ``partial`` does only the shards both sides have finished (ahead of
    training, while a cache is still being built) and returns None."""
    import json

    if len(student_caches) != len(teacher_caches):
        raise ValueError(f"the teacher has {len(teacher_caches)} caches, the student {len(student_caches)}")
    teacher = None
    parts = []
    for a, b in zip(student_caches, teacher_caches):
        ma, mb = (json.loads((Path(d) / "cache.json").read_text()) for d in (a, b))
        for key in ("sources", "views", "captures"):
            if ma.get(key) != mb.get(key):
                raise ValueError(f"{b} and {a} differ in {key!r}: not the same training views")
        sa, sb = sorted(Path(a).glob("shard-*.npz")), sorted(Path(b).glob("shard-*.npz"))
        if partial:
            common = {p.name for p in sa} & {p.name for p in sb}
            sa, sb = [p for p in sa if p.name in common], [p for p in sb if p.name in common]
        elif [p.name for p in sa] != [p.name for p in sb]:
            raise ValueError(f"{b} has {len(sb)} finished shards, {a} has {len(sa)}: finish both caches first")
        out = Path(out_root) / Path(b).name
        out.mkdir(parents=True, exist_ok=True)
        for pa, pb in zip(sa, sb):
            dest = out / (pb.stem + ".npy")
            if not dest.exists():
                with np.load(pa) as za, np.load(pb) as zb:
                    if not (np.array_equal(za["labels"], zb["labels"]) and np.array_equal(za["views"], zb["views"])):
                        raise ValueError(f"{pb} and {pa} list different views")
                    teacher = teacher or OnnxTopTeacher(onnx_path, trunk_output)
                    feats = teacher(zb["feats"])
                tmp = dest.with_suffix(".tmp.npy")
                np.save(tmp, feats)
                os.replace(tmp, dest)
                log(f"teacher features: {dest}")
            if not partial:
                parts.append(np.load(dest))
    return None if partial else np.concatenate(parts)
