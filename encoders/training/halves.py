"""A "precise" encoder from any docretriever encoder: the full page and its two halves, in one ONNX model.

Why: the models are trained with the top and bottom halves of every source as classes of their own,
so they embed a half page at twice the resolution of a whole one, and a sibling type that differs in
one small element differs more in the half that holds it.  Scoring with the mean of the full-image,
top-half and bottom-half cosines lifted top-1 on the benchmark's test split from 0.945 to 0.964 and on
its look-alike split from 0.753 to 0.811 with the shipped model (scripts/ablate_halves.py), at three
encodes per image.

The composed model takes the page squashed to twice the base height, ``(n, 3, 2H, W)``; inside the
graph the full view is that image averaged over row pairs (``H x W``), the halves are its top and
bottom ``H`` rows; the base network runs on the three as one batch; the output is the three unit
features concatenated and divided by sqrt(3), so the cosine of two outputs is exactly the mean of the
three cosines.  It is an ordinary docretriever model (contract in its metadata, ``dim`` 3x the
base's, its own fingerprint, threshold table and galleries): nothing else in the product changes.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..contract import read_contract_from_onnx_bytes, write_contract

__all__ = ["compose_halves"]


def compose_halves(base_path: str | Path, out_path: str | Path, name: str | None = None) -> Path:
    """Write the full + halves model of ``base_path`` to ``out_path`` (threshold table left empty:
    measure it with scripts/evaluate.py --write-thresholds, as for any new model)."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    base = onnx.load(str(base_path))
    meta = {p.key: p.value for p in base.metadata_props}
    contract = read_contract_from_onnx_bytes(meta, str(base_path))
    h, w = contract.input_size
    dim = int(contract.dim)
    inp, out = contract.input_name, contract.output_name

    pre = helper.make_graph(
        [helper.make_node("Slice", [inp, "zero", "h", "axis2"], ["top"]),
         helper.make_node("Slice", [inp, "h", "h2", "axis2"], ["bottom"]),
         helper.make_node("AveragePool", [inp], ["full"], kernel_shape=[2, 1], strides=[2, 1]),
         helper.make_node("Concat", ["full", "top", "bottom"], ["views"], axis=0)],
        "halves_pre", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["batch", 3, 2 * h, w])],
        [helper.make_tensor_value_info("views", TensorProto.FLOAT, ["views_batch", 3, h, w])],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array([h], np.int64), "h"),
         numpy_helper.from_array(np.array([2 * h], np.int64), "h2"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2")])
    post = helper.make_graph(
        [helper.make_node("Reshape", ["base_feats", "shape3"], ["per_view"]),      # (3, n, d)
         helper.make_node("Transpose", ["per_view"], ["per_image"], perm=[1, 0, 2]),  # (n, 3, d)
         helper.make_node("Reshape", ["per_image", "shape_out"], ["joined"]),     # (n, 3d)
         helper.make_node("Mul", ["joined", "inv_sqrt3"], [out])],
        "halves_post", [helper.make_tensor_value_info("base_feats", TensorProto.FLOAT, ["views_batch", dim])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 3 * dim])],
        [numpy_helper.from_array(np.array([3, -1, dim], np.int64), "shape3"),
         numpy_helper.from_array(np.array([-1, 3 * dim], np.int64), "shape_out"),
         numpy_helper.from_array(np.array(1.0 / math.sqrt(3.0), np.float32), "inv_sqrt3")])
    opset = [helper.make_opsetid("", max(17, next((o.version for o in base.opset_import if o.domain in ("", "ai.onnx")),
                                                  17)))]
    pre_m = helper.make_model(pre, opset_imports=opset)
    post_m = helper.make_model(post, opset_imports=opset)
    base_only = onnx.ModelProto()
    base_only.CopyFrom(base)
    del base_only.metadata_props[:]
    for m in (pre_m, post_m):
        m.ir_version = base_only.ir_version
    body = compose.merge_models(pre_m, base_only, io_map=[("views", inp)], prefix2="base/")
    full = compose.merge_models(body, post_m, io_map=[(f"base/{out}", "base_feats")])
    full.graph.name = "docretriever_halves"
    onnx.checker.check_model(full)
    out_path = Path(out_path)
    onnx.save(full, str(out_path))
    info = dict(contract.info or {})
    info.update({"views": "full + top half + bottom half (encoders/training/halves.py)",
                 "base_model": Path(base_path).name})
    write_contract(str(out_path), replace(contract, name=name or f"{contract.name}-halves", input_size=(2 * h, w),
                                          dim=3 * dim, threshold_table=(), threshold_source="", info=info))
    return out_path
