"""Training-side capture tools: the capture simulator (re-exported from :mod:`encoders.capture`,
where inference can reach it without the training stack) and the reference project's view
augmentation (albumentations 2.x; arrays in, arrays out; used for in-memory training views)."""
from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from encoders.capture import (EVAL, PRESETS, TRAIN, TRAIN_WIDE, CaptureParams, Rng,  # noqa: F401 (re-exports)
                              simulate_capture, simulate_capture_array)

__all__ = ["CaptureParams", "TRAIN", "TRAIN_WIDE", "EVAL", "PRESETS", "simulate_capture", "simulate_capture_array",
           "augment_view"]


# ---------------------------------------------------------------------------------------------
# reference-project view augmentation (albumentations 2.x)
# ---------------------------------------------------------------------------------------------

_AUG: list[list[Any]] | None = None


def _build_augment() -> list[list[Any]]:
    """The four groups; each transform has p=1 and is picked uniformly within its group."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home
    import albumentations as A

    geometry = [
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=cv2.BORDER_REPLICATE, p=1.0),
    ]
    blur = [
        A.MotionBlur(blur_limit=(3, 7), p=1.0),
        A.MedianBlur(blur_limit=(3, 5), p=1.0),
        A.GaussianBlur(blur_limit=(3, 7), p=1.0),
        A.ZoomBlur(max_factor=(1.0, 1.1), p=1.0),
        A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3), p=1.0),
        A.ImageCompression(quality_range=(1, 50), p=1.0),
    ]
    noise = [
        A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5), p=1.0),
        A.GaussNoise(std_range=(0.02, 0.1), p=1.0),
        A.MultiplicativeNoise(multiplier=(0.9, 1.1), per_channel=True, elementwise=True, p=1.0),
    ]
    colour = [
        A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.7, 1.3), saturation=(0.7, 1.3),
                      hue=(-0.1, 0.1), p=1.0),
        A.ToGray(p=1.0),
        A.ToSepia(p=1.0),
        A.ChannelShuffle(p=1.0),
        A.ChannelDropout(channel_drop_range=(1, 1), fill=0, p=1.0),
        A.RGBShift(r_shift_limit=(-20, 20), g_shift_limit=(-20, 20), b_shift_limit=(-20, 20), p=1.0),
        A.InvertImg(p=1.0),
    ]
    return [geometry, blur, noise, colour]


def augment_view(img_bgr: np.ndarray, rng: Rng) -> np.ndarray:
    """Reference-project view augmentation: geometry / blur+JPEG / noise / colour, each OneOf
    with p=0.5.  No flips or large rotations: a flipped or upside-down document is a different
    class in this project.  Deterministic given ``rng`` (the pipeline is reseeded from it)."""
    global _AUG
    if _AUG is None:
        _AUG = _build_augment()
    # The OneOf choices are drawn here rather than by albumentations: reseeding a Compose seeds
    # every child with the same value, which makes the four groups fire all-or-nothing.
    # albumentations' colour ops (gray weights, sepia, hue) assume RGB.
    img = np.ascontiguousarray(img_bgr[:, :, ::-1])
    for group in _AUG:
        if rng.random() < 0.5:
            t = group[int(rng.integers(len(group)))]
            t.set_random_seed(int(rng.integers(0, 2**31 - 1)))
            img = t(image=img)["image"]
    return np.ascontiguousarray(img[:, :, ::-1])
