"""Static int8 quantisation (QDQ, per-channel) with ONNX Runtime, calibrated on real images.

Dynamic quantisation turns convolutions into ConvInteger, measured 10-12x *slower* on this
CPU; MatMul-only dynamic quantisation gained nothing.  Static QDQ made EfficientNet-Lite0 2.3x
faster but PP-LCNet slower (its tiny depthwise convs drown in Q/DQ overhead), so whether an
int8 model ships is decided by measurement (scripts/evaluate.py), per model.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..contract import ModelContract, write_contract
from ..decode import read_image
from ..preprocess import preprocess


class _Reader:
    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self._it = iter(batches)
        self.input_name = input_name

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {self.input_name: b}


def quantize_model(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration_images: Iterable[str],
                   batch: int = 16, activations: str = "s8") -> Path:
    """Write a static-QDQ int8 copy of a docretriever model, keeping (and renaming) its contract.

    ``activations`` "s8" (S8S8, ONNX Runtime's recommended CPU default) or "u8" (U8S8: can saturate
    on x86 CPUs without VNNI unless the range is reduced).  The copy keeps the fp32 model's threshold
    table: re-measure it on the int8 model (``scripts/evaluate.py --write-thresholds``)."""
    if activations not in ("s8", "u8"):
        raise ValueError(f"activations must be 's8' or 'u8', not {activations!r}")
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..contract import read_contract_from_onnx_bytes

    sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    contract: ModelContract = read_contract_from_onnx_bytes(sess.get_modelmeta().custom_metadata_map, str(fp32_path))
    xs = [preprocess(read_image(p, target_hw=contract.input_size), contract) for p in calibration_images]
    if not xs:
        raise ValueError("no calibration images")
    batches = [np.stack(xs[i:i + batch]) for i in range(0, len(xs), batch)]
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(fp32_path), pre)
        q = os.path.join(tmp, "q.onnx")
        quantize_static(pre, q, _Reader(batches, contract.input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True,
                        activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        int8 = ModelContract.from_json(contract.to_json())
        int8 = int8.with_info(quantization=f"static QDQ int8 (per-channel S8 weights, {activations.upper()} activations)",
                              calibration_images=len(xs), fp32_parent=contract.name)
        import dataclasses
        int8 = dataclasses.replace(int8, name=f"{contract.name}-int8")
        write_contract(q, int8, str(out_path))
    return out_path
