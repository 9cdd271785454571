"""A model's spatial feature map as a second output, for re-ranking look-alike types.

Why: the 256-d feature is one vector for the whole page; two types that differ in one small element
(a count of marks, a moved block) land within a hair of each other.  A mid-level map of the same
forward pass (for the Lite0 models, the 80 x 12 x 12 output of ``blocks.3``, frozen ImageNet layers)
still says where things are, and comparing it cell by cell among the top candidates separates them
(scripts/results/local_rerank/: test top-1 0.944 -> 0.963, TPR@1e-4 0.595 -> 0.862).  The map costs
nothing extra to compute; it is exposed by naming it an output of the graph.

:func:`add_local_output` writes such a model (needs the ``onnx`` package); the runtime reads maps with
``Encoder.encode_batch(x, local=True)`` and :func:`cells` turns them into unit cell vectors.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .contract import METADATA_KEY, LocalMap, ModelContract, save_model, set_contract

__all__ = ["Encoded", "LOCAL_OUTPUT", "LITE0_BLOCKS2", "LITE0_BLOCKS3", "LITE0_MAPS", "add_local_output", "cells"]

LOCAL_OUTPUT = "local"
# The blocks.3 output of timm's efficientnet_lite0 as torch.onnx names it in this project's exports.
LITE0_BLOCKS3 = "/model/backbone/trunk/trunk.4/trunk.4.2/Add_output_0"
# The blocks.2 output (40 channels at stride 8): the fast tier's map, 12 x 12 at 96 px, the same grid as the
# default's blocks.3 map at 192 px (its own blocks.3 map, 6 x 6, re-ranked worse on val: 0.723 vs 0.815
# TPR@1e-4, scripts/results/lite0_b6_wide_r96_x2_distill/).
LITE0_BLOCKS2 = "/model/backbone/trunk/trunk.3/trunk.3.1/Add_output_0"
LITE0_MAPS = {"blocks.2": LITE0_BLOCKS2, "blocks.3": LITE0_BLOCKS3}
# The same names serve the static int8 (QDQ) copies: there it is the float Add output before its
# QuantizeLinear, and exposing it leaves the features bit-identical (exposing the DequantizeLinear
# output instead changed ONNX Runtime's fusions and moved features by up to 0.013).


def add_local_output(onnx_path: str | os.PathLike, tensor: str, out_path: str | os.PathLike,
                     k: int = 5, weight: float = 2.4) -> ModelContract:
    """Copy the model at ``onnx_path`` to ``out_path`` with ``tensor`` (an intermediate (N, C, H, W)
    value) as a second output named :data:`LOCAL_OUTPUT`, recorded in its contract with ``k`` and
    ``weight``.  The feature output is unchanged.  Written atomically; returns the new contract."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    if tensor not in produced:
        raise ValueError(f"{onnx_path}: no value named {tensor!r} in the graph")
    if any(o.name == LOCAL_OUTPUT for o in model.graph.output):
        raise ValueError(f"{onnx_path}: already has an output named {LOCAL_OUTPUT!r}")
    model.graph.node.append(helper.make_node("Identity", [tensor], [LOCAL_OUTPUT], name="docretriever_local"))
    model.graph.output.append(helper.make_tensor_value_info(LOCAL_OUTPUT, TensorProto.FLOAT, ["batch", "C", "H", "W"]))
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ValueError(f"{onnx_path}: not a docretriever model (no {METADATA_KEY!r} metadata)")
    contract = ModelContract.from_json(meta[METADATA_KEY], str(onnx_path)).with_local(
        LocalMap(LOCAL_OUTPUT, int(k), float(weight)))
    set_contract(model, contract)
    onnx.checker.check_model(model)
    save_model(model, str(out_path))
    return contract


def cells(maps: np.ndarray) -> np.ndarray:
    """(N, C, H, W) maps -> (N, H*W, C) float16 cell vectors of unit length (a blank cell stays 0)."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim != 4:
        raise ValueError(f"a local map is (N, C, H, W), got shape {m.shape}")
    m = m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1)
    norms = np.linalg.norm(m, axis=2, keepdims=True)
    return (m / np.maximum(norms, 1e-6)).astype(np.float16)


class Encoded:
    """Features, and with ``local`` the local maps, of preprocessed batches gathered in order: what a
    gallery that re-ranks needs from one forward pass (``encoder.encode_batch(x, local=True)``)."""

    def __init__(self, encoder: Any, local: bool) -> None:
        self.encoder = encoder
        self.local = bool(local)
        self._feats: list[np.ndarray] = []
        self._maps: list[np.ndarray] = []

    def add(self, batch: np.ndarray) -> None:
        """Encode one ``(n, 3, H, W)`` batch."""
        if self.local:
            feats, maps = self.encoder.encode_batch(batch, local=True)
            self._maps.append(maps)
        else:
            feats = self.encoder.encode_batch(batch)
        self._feats.append(feats)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(features (n, dim) float32, maps (n, cells, C) float16 or None without ``local``)."""
        feats = np.concatenate(self._feats).astype(np.float32, copy=False) if self._feats else \
            np.zeros((0, int(self.encoder.dim)), np.float32)
        if not self.local:
            return feats, None
        maps = np.concatenate(self._maps) if self._maps else np.zeros((0, *self.encoder.local_shape), np.float16)
        return feats, maps
