"""The instance-wise attack of RoCL (eq. 4): PGD on a label-free contrastive objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._names import ATTACK_LOSSES as ATTACK_LOSSES
from ..losses import nt_xent_loss
from ..validation import check_images, check_number
from .base import Attack, Target


def _cosine_distance(z: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(z_i, p_i) over the batch."""
    return (1 - F.cosine_similarity(z, positives, dim=1)).mean()


class InstanceWiseAttack(Attack[torch.Tensor]):
    """Instance-wise PGD attack (eq. 4 of RoCL): needs no labels.

    Each image t(x) is perturbed within the eps-ball to maximise the contrastive loss
    L_con(t(x)^i, {t'(x)}, {t(x)_neg}) computed in the projector's latent space, so that the
    model mistakes the perturbed image for another instance:

        t(x)^{i+1} = Pi_{B(t(x), eps)}( t(x)^i + alpha * sign(grad L_con) )

    ``positives`` is the other view t'(x); the negatives are the other images of the batch (both
    the adversarial and the positive rows, as in the original implementation). The positives'
    embeddings are computed once per call.

    Args:
        encoder: f_theta, (B, 3, H, W) in [0, 1] -> (B, F).
        projector: g_pi, (B, F) -> (B, D).
        eps: radius of the ball (8/255 in the paper, l-inf).
        alpha: step size (0.007 in the paper's training attack).
        steps: number of PGD steps (7 in the paper's training attack).
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        random_start: start from a uniformly random point of the ball (as in the paper).
        temperature: tau of the contrastive loss (0.5).
        loss: the objective ascended: ``"contrastive"`` (the paper's), or the ablations of
            Table 7: ``"mse"``, ``"l1"`` (Manhattan distance) and ``"cosine"`` (cosine distance
            1 - cos, maximised) between z(t(x)^i) and z(t'(x)).

    Call:
        ``attack(images, positives, generator=None)``: the call of
        [`Attack`][robust_contrastive.attacks.base.Attack], whose target is the positives
        t'(x), (B, 3, H, W) float in [0, 1] like the images.
    """

    repr_fields = (*Attack.repr_fields, "loss")

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 0.007,
        steps: int = 7,
        norm: str = "linf",
        random_start: bool = True,
        temperature: float = 0.5,
        loss: str = "contrastive",
    ) -> None:
        super().__init__(eps, alpha, steps, norm, random_start)
        if loss not in ATTACK_LOSSES:
            raise ValueError(f"unknown attack loss {loss!r}; choose one of {list(ATTACK_LOSSES)}.")
        check_number("temperature", temperature, positive=True, example="0.5")
        self.encoder = encoder
        self.projector = projector
        self.temperature = float(temperature)
        self.loss = loss

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.encoder, self.projector)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """z = g_pi(f_theta(images)): (B, 3, H, W) -> (B, D)."""
        out: torch.Tensor = self.projector(self.encoder(images))
        return out

    def objective(self, adversarial: torch.Tensor, z_positives: torch.Tensor) -> torch.Tensor:
        """The loss ascended at ``adversarial`` (B, 3, H, W), given the positives' z (B, D)."""
        z = self.embed(adversarial)  # (B, D)
        if self.loss == "contrastive":
            return nt_xent_loss(z, z_positives, temperature=self.temperature)
        if self.loss == "mse":
            return F.mse_loss(z, z_positives)
        if self.loss == "l1":
            return F.l1_loss(z, z_positives)
        return _cosine_distance(z, z_positives)

    def check_target(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        positives = check_images(target, "positives")
        if positives.shape != images.shape:
            raise ValueError(
                f"positives must have the images' shape {tuple(images.shape)}, got "
                f"{tuple(positives.shape)}: pass the other augmented view t'(x) of each image."
            )
        if positives.dtype != images.dtype or positives.device != images.device:
            raise ValueError(
                f"positives ({positives.dtype} on {positives.device}) must have the images' "
                f"dtype and device ({images.dtype} on {images.device}): convert one of them with "
                ".to(other)."
            )
        if self.loss == "contrastive" and images.shape[0] < 2:
            raise ValueError(
                "the contrastive attack needs at least 2 images (the others are its negatives)."
            )
        return positives

    def prepare(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """The positives' latents z(t'(x)), (B, D): they do not depend on the perturbation."""
        positives = self.required(target, "the positives t'(x), (B, 3, H, W),")
        with torch.no_grad():
            return self.embed(positives.detach())
