"""The inner maximisation of TRADES (Zhang et al. 2019): PGD on the KL divergence, no labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._steps import project
from .base import Attack, OptionalGenerator, Target

__all__ = ["TRADES_START_STD", "TradesAttack"]

TRADES_START_STD = 0.001  # TRADES' random start: x + 0.001 * N(0, 1) (Zhang et al.'s code)


class TradesAttack(Attack[torch.Tensor]):
    """The inner maximisation of TRADES (Zhang et al. 2019): PGD on the KL divergence.

    From a small Gaussian start x + 0.001 * N(0, I) (projected onto the ball), the projected
    steps of every attack (the gradient's sign in l-inf) ascend

        KL( softmax(f(x)) || softmax(f(x_adv)) )

    The clean distribution softmax(f(x)) is computed once per call. No labels are needed.

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, K) logits.
        eps: radius of the ball (8/255 l-inf in TRADES and RoCL).
        alpha: step size (2/255 here; TRADES' CIFAR code uses 0.007).
        steps: number of steps (10 for training).
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.

    Call:
        ``attack(images, generator=generator)``: the call of
        [`Attack`][robust_contrastive.attacks.base.Attack] without a target; pass the generator
        by keyword (the second positional argument is the target).
    """

    repr_fields = ("eps", "alpha", "steps", "norm")

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        norm: str = "linf",
    ) -> None:
        super().__init__(eps, alpha, steps, norm, random_start=True)  # always the Gaussian start
        self.model = model

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.model,)

    def kl(self, images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        """Per-image KL(softmax(f(images)) || softmax(f(adversarial))): (B,), with the model in
        its current mode and gradients on."""
        log_p_clean = F.log_softmax(self.model(images), dim=1)  # (B, K)
        log_p_adv = F.log_softmax(self.model(adversarial), dim=1)  # (B, K)
        return (log_p_clean.exp() * (log_p_clean - log_p_adv)).sum(dim=1)

    def check_target(self, images: torch.Tensor, target: Target) -> None:
        if target is not None:
            raise TypeError(
                "TradesAttack takes no target (the model's clean prediction is its target): call "
                "attack(images, generator=generator)."
            )

    def prepare(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """The clean distribution softmax(f(images)), (B, K), fixed for every step."""
        with torch.no_grad():
            return F.softmax(self.model(images), dim=1)

    def start(self, images: torch.Tensor, generator: OptionalGenerator) -> torch.Tensor:
        noise = torch.randn(
            images.shape, generator=generator, device=images.device, dtype=images.dtype
        )
        return project(images + TRADES_START_STD * noise, images, self.eps, self.norm)

    def objective(self, adversarial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The summed KL(p_clean || softmax(f(adversarial))), ``context`` being p_clean."""
        return F.kl_div(F.log_softmax(self.model(adversarial), dim=1), context, reduction="sum")
