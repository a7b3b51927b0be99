"""An encoder followed by a linear head: the classifier of linear evaluation and fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ..layout import ENCODER_DIR
from .encoder import RoCLEncoder
from .pretrained import PretrainedMixin, load_state_dict_strict

_C = TypeVar("_C", bound="Classifier")


class Classifier(PretrainedMixin):
    """An encoder f_theta followed by a linear head, ``head = nn.Linear(feature_dim, K)``.

    Subclasses set ``model_type`` and a ``config`` dataclass holding ``num_classes``,
    ``feature_dim`` (the encoder's) and other keyword arguments of their ``__init__``.
    ``Classifier.from_pretrained(dir)`` returns whichever classifier a folder holds.

    Args:
        encoder: the encoder.
        num_classes: number of classes K of the linear head.
        head_like_encoder: create the head on the encoder's device and dtype (default: PyTorch's
            default device and dtype).

    Shapes:
        ``forward(images)``: images (B, 3, H, W) float in [0, 1] -> logits (B, K).
    """

    encoder: RoCLEncoder
    head: nn.Linear

    def __init__(
        self,
        encoder: RoCLEncoder,
        num_classes: int,
        *,
        head_like_encoder: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, RoCLEncoder):
            raise TypeError(
                f"encoder must be a RoCLEncoder, got {type(encoder).__name__}: load one with "
                "RoCLEncoder.from_pretrained(path)."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.encoder = encoder
        reference = next(iter(encoder.parameters())) if head_like_encoder else None
        self.head = nn.Linear(
            encoder.feature_dim,
            num_classes,
            device=None if reference is None else reference.device,
            dtype=None if reference is None else reference.dtype,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``head(encoder(images))``: images (B, 3, H, W) float in [0, 1] -> (B, K) logits."""
        logits: torch.Tensor = self.head(self.encoder(images))
        return logits

    @classmethod
    def from_config(cls: type[_C], config: dict[str, Any], **submodels: nn.Module) -> _C:
        """Build a classifier with a freshly initialised head from the fields of ``config.json``
        and ``encoder=`` the [`RoCLEncoder`][robust_contrastive.RoCLEncoder].

        Raises:
            TypeError: no encoder.
            ValueError: unknown or missing fields, or a ``feature_dim`` that is not the
                encoder's.
        """
        encoder = submodels.get("encoder")
        if not isinstance(encoder, RoCLEncoder):
            raise TypeError(
                f"a {cls.__name__} is not built from its config alone: pass encoder=..., or "
                f"load a saved one with {cls.__name__}.from_pretrained(path)."
            )
        missing = sorted({"num_classes", "feature_dim"} - set(config))
        if missing:
            raise ValueError(f"the {cls.model_type} config lacks the fields {missing}.")
        if config["feature_dim"] != encoder.feature_dim:
            raise ValueError(
                f"the {cls.model_type} head was built for {config['feature_dim']} features but "
                f"the encoder has {encoder.feature_dim}: load the encoder that was saved with it."
            )
        head = {k: v for k, v in config.items() if k != "feature_dim"}
        return super().from_config(head, encoder=encoder)

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The head's tensors, written to ``model.safetensors``: ``weight`` (num_classes,
        feature_dim) and ``bias`` (num_classes,); the encoder goes to ``encoder/``."""
        return dict(self.head.state_dict())

    def load_pretrained_state(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Load the head's ``weight`` and ``bias`` strictly."""
        load_state_dict_strict(self.head, state, source=source)

    def save_submodels(self, directory: Path) -> None:
        """Write the encoder into ``directory/encoder``."""
        self.encoder.save_pretrained(directory / ENCODER_DIR)

    @classmethod
    def load_submodels(
        cls, directory: Path, map_location: str | torch.device
    ) -> dict[str, nn.Module]:
        """Read the encoder from ``directory/encoder``."""
        encoder = RoCLEncoder.from_pretrained(directory / ENCODER_DIR, map_location=map_location)
        return {"encoder": encoder}


@dataclass(frozen=True)
class RobustClassifierConfig:
    """What a [`RobustClassifier`][robust_contrastive.models.classifier.RobustClassifier] stores
    in its ``config.json`` (the head's part)."""

    feature_dim: int = 512  # the encoder's feature_dim (512 for resnet18 at width 64)
    num_classes: int = 10  # outputs of the linear head (CIFAR-10)


class RobustClassifier(Classifier):
    """The fine-tuned classifier of Table 1: a
    [`Classifier`][robust_contrastive.models.classifier.Classifier] whose encoder is trained with
    its head, by [`finetune`][robust_contrastive.evaluation.finetuning.finetune].
    """

    model_type: ClassVar[str] = "rocl-robust-classifier"
    config: RobustClassifierConfig

    def __init__(self, encoder: RoCLEncoder, num_classes: int = 10) -> None:
        super().__init__(encoder, num_classes)
        self.config = RobustClassifierConfig(
            feature_dim=encoder.feature_dim, num_classes=num_classes
        )

    @classmethod
    def default_config(cls) -> RobustClassifierConfig:
        return RobustClassifierConfig()
