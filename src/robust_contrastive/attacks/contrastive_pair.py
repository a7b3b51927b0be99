"""ACL's training attack: PGD on both views of a pair at once, ascending their NT-Xent loss
(Jiang et al. 2020; also DynACL's and AIR's). Label-free, like RoCL's instance-wise attack."""

from __future__ import annotations

import torch
from torch import nn

from ..losses import nt_xent_loss
from ..validation import check_number
from .base import Attack, Target

__all__ = ["PairContrastiveAttack"]


class PairContrastiveAttack(Attack[None]):
    """PGD that perturbs two augmented views of each image jointly to maximise the NT-Xent
    loss between them (the official ``PGD_contrastive``):

        (t1', t2')^{i+1} = Pi( (t1', t2')^i + alpha * sign(grad NT-Xent(g(f(t1'^i)), g(f(t2'^i)))) )

    with Pi the projection onto the eps-balls around (t1, t2) and onto [0, 1]. Every image of
    the batch is a negative of every other (2B - 2 negatives per anchor), as in the official
    ``nt_xent``.

    Args:
        first: maps the first views to latents, (B, 3, H, W) in [0, 1] -> (B, D): for ACL the
            encoder + projector through their adversarial BatchNorm branch (a
            [`BranchView`][robust_contrastive.models.dual_bn.BranchView]).
        second: the same for the second views (DynACL's momentum encoder), or ``None``: the
            first model embeds both.
        eps: radius of the l-inf ball (8/255 in ACL, DynACL and AIR).
        alpha: step size (2/255).
        steps: number of PGD steps (5).
        norm: ``"linf"`` (the official attack's), ``"l2"`` or ``"l1"``.
        random_start: start from a uniformly random point of the ball (the official code does;
            this library's start is clamped to [0, 1], the official one is not clamped before
            the first step).
        temperature: tau of the NT-Xent (0.5).

    Call:
        ``attack(views, None, generator=None)``: ``views`` (2B, 3, H, W) float in [0, 1], the
        first views of the B images then their second views (``torch.cat((t1, t2))``);
        returns both perturbed, in the same order.
    """

    repr_fields = (*Attack.repr_fields, "temperature")

    def __init__(
        self,
        first: nn.Module,
        second: nn.Module | None = None,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 5,
        norm: str = "linf",
        random_start: bool = True,
        temperature: float = 0.5,
    ) -> None:
        super().__init__(eps, alpha, steps, norm, random_start)
        check_number("temperature", temperature, positive=True, example="0.5")
        self.first = first
        self.second = second
        self.temperature = float(temperature)

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.first,) if self.second is None else (self.first, self.second)

    def embed(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents of the first and the second views: (2B, 3, H, W) -> 2 x (B, D)."""
        if self.second is None:
            z1, z2 = self.first(views).chunk(2)  # one forward (eval mode: no batch statistics)
            return z1, z2
        v1, v2 = views.chunk(2)
        return self.first(v1), self.second(v2)

    def objective(self, adversarial: torch.Tensor, context: None) -> torch.Tensor:
        """NT-Xent of the adversarial pair: ``adversarial`` (2B, 3, H, W) -> scalar."""
        z1, z2 = self.embed(adversarial)
        return nt_xent_loss(z1, z2, temperature=self.temperature)

    def check_target(self, images: torch.Tensor, target: Target) -> None:
        if target is not None:
            raise TypeError(
                "this attack takes no target: pass torch.cat((t1, t2)), both views, as images."
            )
        if images.shape[0] % 2 or images.shape[0] < 4:
            raise ValueError(
                f"images must hold the two views of B >= 2 images, torch.cat((t1, t2)): an even "
                f"number >= 4 of rows, got {images.shape[0]}."
            )
        return None

    def prepare(self, images: torch.Tensor, target: Target) -> None:
        """Nothing to precompute: both views move."""
        return None
