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
    """Input-size BGR uint8 -> (3, H, W) float32 normalised as the contract says."""
    img = resized_bgr if contract.colour == "BGR" else resized_bgr[:, :, ::-1]
    x = img.astype(np.float32) * np.float32(contract.scale)
    x -= np.asarray(contract.mean, dtype=np.float32)
    x /= np.asarray(contract.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


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
