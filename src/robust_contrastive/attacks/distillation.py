"""DeACL's training attack: PGD that moves a student's features away from given target features
(a frozen teacher's), by cosine similarity. Label-free, like RoCL's instance-wise attack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, Target

__all__ = ["FeatureDistanceAttack"]


class FeatureDistanceAttack(Attack[torch.Tensor]):
    """PGD away from target features (DeACL, Zhang et al. 2022, stage 2).

    Each image x is perturbed within the eps-ball to minimise the cosine similarity between the
    student's features of the perturbed image and the target features of x (the frozen
    teacher's, computed by the caller):

        x^{i+1} = Pi_{B(x, eps)}( x^i + alpha * sign(grad_x [-sum_b CS(f_S(x^i)_b, t_b)]) )

    The ascended objective is the official code's ``-cosine_similarity(f_S(x'), t).sum()``
    without its constant factor 256 (a float16 guard that a sign step ignores).

    Args:
        encoder: the student f_S, (B, 3, H, W) in [0, 1] -> (B, D), run in eval mode.
        projector: an optional head applied after the encoder (DeACL has none: ``None``).
        eps: radius of the ball (8/255, DeACL's training budget).
        alpha: step size (2/255, DeACL's).
        steps: number of PGD steps (5, DeACL's).
        norm: ``"linf"`` (DeACL's), ``"l2"`` or ``"l1"``.
        random_start: start from a uniformly random point of the ball (DeACL's code does; this
            library's start is clamped to [0, 1], the official one is not clamped before the
            first step).

    Call:
        ``attack(images, targets, generator=None)``: the call of
        [`Attack`][robust_contrastive.attacks.base.Attack], whose target is the target
        features (B, D) float (the teacher's features of ``images``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module | None = None,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 5,
        norm: str = "linf",
        random_start: bool = True,
    ) -> None:
        super().__init__(eps, alpha, steps, norm, random_start)
        self.encoder = encoder
        self.projector = projector

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.encoder,) if self.projector is None else (self.encoder, self.projector)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The student's features (through the projector if any): (B, 3, H, W) -> (B, D)."""
        out: torch.Tensor = self.encoder(images)
        if self.projector is not None:
            out = self.projector(out)
        return out

    def objective(self, adversarial: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``-sum_b CS(f_S(adversarial)_b, targets_b)``: adversarial (B, 3, H, W), targets (B, D);
        ascending it lowers the similarity to the targets."""
        return -F.cosine_similarity(self.embed(adversarial), targets, dim=1).sum()

    def check_target(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        if not isinstance(target, torch.Tensor) or not target.is_floating_point():
            raise TypeError(
                "targets must be a float tensor (B, D) of target features (the teacher's "
                f"features of the images), got {type(target).__name__}."
            )
        if target.dim() != 2 or target.shape[0] != images.shape[0]:
            raise ValueError(
                f"targets must be (B, D) with B = {images.shape[0]} images, got shape "
                f"{tuple(target.shape)}: pass teacher(images)."
            )
        if target.device != images.device:
            raise ValueError(
                f"targets are on {target.device}, the images on {images.device}: move one of "
                "them with .to(other)."
            )
        return target

    def prepare(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """The target features, detached: (B, D)."""
        return self.required(target, "the target features (B, D)").detach()
