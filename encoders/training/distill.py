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
