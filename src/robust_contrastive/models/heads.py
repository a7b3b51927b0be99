"""Heads on top of the encoder: the projector g_pi of SimCLR / RoCL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .pretrained import PretrainedMixin


@dataclass(frozen=True)
class ProjectionHeadConfig:
    """Everything needed to rebuild a :class:`ProjectionHead` (stored in ``config.json``)."""

    in_dim: int = 512  # the encoder's feature_dim (512 for resnet18 at width 64)
    hidden_dim: int = 2048  # RoCL's projector: Linear(512, 2048) - ReLU - Linear(2048, 128)
    out_dim: int = 128  # the latent z in which the contrastive loss is computed (paper: 128)


class ProjectionHead(PretrainedMixin):
    """The projector g_pi: ``Linear(in_dim, hidden_dim) - ReLU - Linear(hidden_dim, out_dim)``.

    z = g_pi(f_theta(x)) is the 128-dimensional latent of eq. (3) in which the contrastive loss
    and the instance-wise attack are computed. It is discarded for linear evaluation.

    Shapes:
        ``forward(features)``: (B, in_dim) -> (B, out_dim).
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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project (B, in_dim) features to (B, out_dim) latents."""
        if features.dim() != 2 or features.shape[1] != self.config.in_dim:
            raise ValueError(
                f"features must be (B, {self.config.in_dim}), got {tuple(features.shape)}: "
                "build the head with in_dim=encoder.feature_dim."
            )
        out: torch.Tensor = self.linear_2(F.relu(self.linear_1(features)))
        return out
