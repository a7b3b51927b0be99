"""[`RoCLEncoder`][robust_contrastive.RoCLEncoder], the encoder f_theta of RoCL: a CIFAR ResNet
(He et al. 2016) with a 3x3 stride-1 stem convolution, no max-pool, four stages of residual
blocks and global average pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .pretrained import PretrainedMixin

Arch = Literal["resnet18", "resnet34", "resnet50"]

# arch -> (block type, blocks per stage)
_ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Identity when shapes match, else a strided 1x1 convolution + BatchNorm projection."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck block with expansion 4."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild a [`RoCLEncoder`][robust_contrastive.RoCLEncoder] (stored in
    ``config.json``)."""

    arch: str = "resnet18"  # CIFAR ResNet depth: resnet18 (the paper's), resnet34, resnet50
    width: int = 64  # channels of the first stage; 64 = the paper's network, 16 trains on a CPU
    mean: tuple[float, float, float] | None = None  # per-channel normalisation inside the model;
    std: tuple[float, float, float] | None = None  # None = none, as in the paper (inputs in [0, 1])
    stem_padding: int = 1  # zero padding of the 3x3 stem convolution; 2 in solo-learn (DeACL)


class RoCLEncoder(PretrainedMixin):
    """The encoder f_theta: a CIFAR ResNet mapping images to a feature vector.

    Args:
        arch: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        width: channels of the first stage (the paper uses 64); stages have
            ``(1, 2, 4, 8) * width`` channels (times 4 for resnet50's bottlenecks).
        mean: optional per-channel mean subtracted inside the model (with ``std``). Off by
            default, as in the paper: inputs stay in [0, 1] and attacks work in pixel space.
        std: optional per-channel standard deviation, given together with ``mean``.
        stem_padding: zero padding of the 3x3 stride-1 stem convolution: 1 (the paper's, and
            the default) keeps an H x W map; 2, as solo-learn's CIFAR ResNet (DeACL) has it, gives
            (H + 2) x (W + 2) maps. The pooled features keep their shape either way (adaptive
            average pooling). Written to ``config.json`` only when it is not 1, so folders saved
            before the field existed load unchanged and default models save the same files.

    Shapes:
        ``forward(images)``: images (B, 3, H, W) float in [0, 1] -> features (B, feature_dim),
        ``feature_dim = 8 * width * expansion`` (512 for resnet18 at width 64, 2048 for resnet50).

    Example:
        >>> encoder = RoCLEncoder("resnet18", width=16)
        >>> encoder(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 128])
    """

    model_type: ClassVar[str] = "rocl-encoder"
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        arch: str = "resnet18",
        width: int = 64,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        stem_padding: int = 1,
    ) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(_ARCHS)}.")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer (64 = the paper's), got {width!r}.")
        if (mean is None) != (std is None):
            raise ValueError("give mean and std together (or neither, as in the paper).")
        if mean is not None and std is not None:
            if len(mean) != 3 or len(std) != 3:
                raise ValueError("mean and std take one value per RGB channel (3 values each).")
            if any(s <= 0 for s in std):
                raise ValueError(f"std values must be positive, got {tuple(std)}.")
        if isinstance(stem_padding, bool) or not isinstance(stem_padding, int) or stem_padding < 0:
            raise ValueError(
                "stem_padding must be a non-negative integer (1 = the paper's, 2 = solo-learn's "
                f"DeACL), got {stem_padding!r}."
            )
        self.config = EncoderConfig(
            arch=arch,
            width=width,
            mean=None if mean is None else (float(mean[0]), float(mean[1]), float(mean[2])),
            std=None if std is None else (float(std[0]), float(std[1]), float(std[2])),
            stem_padding=stem_padding,
        )
        block_kind, num_blocks = _ARCHS[arch]
        block: type[BasicBlock] | type[Bottleneck] = (
            BasicBlock if block_kind == "basic" else Bottleneck
        )
        # Normalisation constants come from the config: non-persistent, so weights stay pure.
        self.register_buffer(
            "mean", torch.tensor(mean or (0.0, 0.0, 0.0)).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std or (1.0, 1.0, 1.0)).view(1, 3, 1, 1), persistent=False
        )
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=stem_padding, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_planes = width
        stages = []
        for i, (blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = width * 2**i
            layers = []
            for s in [stride] + [1] * (blocks - 1):
                layers.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim: int = in_planes

    @classmethod
    def default_config(cls) -> EncoderConfig:
        return EncoderConfig()

    def config_dict(self) -> dict[str, Any]:
        """The ``config.json`` fields; ``stem_padding`` only when it is not the default 1."""
        values = super().config_dict()
        if values["stem_padding"] == EncoderConfig.stem_padding:
            del values["stem_padding"]
        return values

    @property
    def normalizes(self) -> bool:
        """Whether the model normalises its inputs internally."""
        return self.config.mean is not None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images (B, 3, H, W) float in [0, 1] into (B, feature_dim) pooled features."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be (B, 3, H, W) float in [0, 1], got shape {tuple(images.shape)}."
            )
        if not images.is_floating_point():
            raise TypeError(
                f"images must be float in [0, 1], got {images.dtype}; convert uint8 with "
                "images.float() / 255."
            )
        x = (images - self.mean) / self.std if self.normalizes else images
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C, 1, 1) -> (B, C)
