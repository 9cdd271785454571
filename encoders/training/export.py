"""Export a trained embedding model to a self-describing ONNX file (and optionally int8)."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..contract import ModelContract, write_contract
from .model import ExportWrapper

LOG = logging.getLogger(__name__)
OPSET = 17


def contract_for(model: nn.Module, name: str = "docretriever-encoder", version: str = "1") -> ModelContract:
    """The contract of a training-side :class:`EmbeddingModel`: its input size, the backbone's
    normalisation (RGB, the pretrained weights' mean/std) and feature dim."""
    spec = model.backbone.spec
    return ModelContract(name=name, version=version, input_size=tuple(model.input_size), colour="RGB",
                         mean=spec.mean, std=spec.std, dim=model.dim)


def export_onnx(model: nn.Module, contract: ModelContract, out: str | os.PathLike,
                normalize: bool = True) -> Path:
    """Write ``model`` (+ L2 normalisation) as ONNX with a dynamic batch axis and the contract.

    Input ``img`` (n, 3, H, W) float32, output ``feats`` (n, dim) float32 unit rows.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model) if normalize else model
    wrapper = wrapper.eval().to(memory_format=torch.contiguous_format)
    h, w = contract.input_size
    dummy = torch.zeros(2, 3, h, w)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (dummy,), tmp, input_names=[contract.input_name],
                              output_names=[contract.output_name], opset_version=OPSET, dynamo=False,
                              dynamic_axes={contract.input_name: {0: "batch"}, contract.output_name: {0: "batch"}},
                              do_constant_folding=True)
        write_contract(tmp, contract)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    LOG.info("exported %s (%.2f MB)", out, out.stat().st_size / 1e6)
    return out


def check_parity(model: nn.Module, onnx_path: str | os.PathLike, batch: np.ndarray) -> float:
    """Max absolute difference between torch (normalised) and ONNX Runtime features on ``batch``."""
    import onnxruntime as ort

    wrapper = ExportWrapper(model).eval()
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(batch)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: batch})
    return float(np.abs(ref - got).max())
