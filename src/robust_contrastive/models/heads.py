"""Heads on top of the encoder: the projector g_pi of SimCLR / RoCL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..layout import CONFIG_NAME, PROJECTOR_DIR
from .pretrained import PretrainedMixin


@dataclass(frozen=True)
class ProjectionHeadConfig:
    """Everything needed to rebuild a [`ProjectionHead`][robust_contrastive.models.ProjectionHead]
    (stored in ``config.json``)."""

    in_dim: int = 512  # the encoder's feature_dim (512 for resnet18 at width 64)
    hidden_dim: int = 2048  # RoCL's projector: Linear(512, 2048) - ReLU - Linear(2048, 128)
    out_dim: int = 128  # the latent z in which the contrastive loss is computed (paper: 128)


class ProjectionHead(PretrainedMixin):
    """The projector g_pi: ``Linear(in_dim, hidden_dim) - ReLU - Linear(hidden_dim, out_dim)``.

    z = g_pi(f_theta(x)) is the 128-dimensional latent of eq. (3) in which the contrastive loss
    and the instance-wise attack are computed. It is discarded for linear evaluation.

    Shapes:
        ``forward(features)``: (B, in_dim) -> (B, out_dim).

    Loading: ``ProjectionHead.from_pretrained`` accepts the projector's own folder, or an
    encoder's folder, Hub repo id or registered name whose ``projector/`` sub-folder holds it
    (the trainer saves it there; see ``locate_pretrained``), so
    ``ProjectionHead.from_pretrained("rocl-resnet18-w16-cifar10-cpu")`` returns the projector
    trained with that encoder, checksum-verified like the encoder.
    """

    model_type: ClassVar[str] = "rocl-projection-head"

    def __init__(self, in_dim: int = 512, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.config = ProjectionHeadConfig(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.linear_2 = nn.Linear(hidden_dim, out_dim)

    @classmethod
    def default_config(cls) -> ProjectionHeadConfig:
        return ProjectionHeadConfig()

    @classmethod
    def locate_pretrained(cls, directory: Path) -> Path:
        """``directory`` itself if it holds a projector, else its ``projector/`` sub-folder.

        Raises:
            FileNotFoundError: ``directory`` holds another model type and no ``projector/``
                (it was saved without one: only the trainer writes it).
        """
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            return directory  # reported by the loader
        try:
            found = json.loads(config_path.read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            return directory  # reported by the loader
        if found is None or found == cls.model_type:
            return directory
        projector = directory / PROJECTOR_DIR
        if not (projector / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{directory} holds a {found!r} model without a {PROJECTOR_DIR}/ sub-folder: "
                "there is no projector to load (RoCLTrainer saves it as "
                f"OUT/{PROJECTOR_DIR}; an encoder saved alone has none)."
            )
        return projector

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project (B, in_dim) features to (B, out_dim) latents."""
        if features.dim() != 2 or features.shape[1] != self.config.in_dim:
            raise ValueError(
                f"features must be (B, {self.config.in_dim}), got {tuple(features.shape)}: "
                "build the head with in_dim=encoder.feature_dim."
            )
        out: torch.Tensor = self.linear_2(F.relu(self.linear_1(features)))
        return out
