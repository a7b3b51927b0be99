"""Class-wise attacks on classifiers (logits from images): PGD and EOT-PGD on the cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_attack_labels, check_classes, check_positive_int
from .base import Attack, Target

__all__ = ["EOTPGD", "PGD"]


@dataclass
class _FirstSuccess:
    """The labels of one call, and for each image the first iterate that fooled the model."""

    labels: torch.Tensor  # (B,) int64
    best: torch.Tensor  # (B, 3, H, W)
    fooled: torch.Tensor  # (B,) bool

    def view(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.view(-1, *([1] * (self.best.dim() - 1)))  # (B,) -> (B, 1, 1, 1)


class PGD(Attack[_FirstSuccess]):
    """Projected gradient descent (Madry et al. 2018) maximising the cross-entropy, eq. (1).

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits.
        eps: radius of the ball (8/255 l-inf; 0.25 / 0.5 l2; 7.84 / 12 l1 in the paper).
        alpha: step size. Today's l-inf convention is 2/255 for eps 8/255 (the original RoCL
            evaluation used eps/10, a weaker attack: see the evaluation guide).
        steps: number of steps (20 for the headline evaluation).
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (sparse l1 steps, SLIDE).
        random_start: start from a random point of the ball.
        keep_first_success: return, for every image, the first iterate that fools the model
            (else the last iterate), so that with a fixed seed (the same trajectory, extended)
            more steps never raise the robust accuracy. ``False`` returns the last iterate (as
            torchattacks does).

    Call:
        ``attack(images, labels, generator=None)``: the call of
        [`Attack`][robust_contrastive.attacks.base.Attack], whose target is the labels (B,)
        int64 or int32 in [0, num_classes). The call validates them with one extra forward of a
        single image (labels against the model's outputs);
        [`perturb`][robust_contrastive.attacks.base.Attack.perturb] skips the checks.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 20,
        norm: str = "linf",
        random_start: bool = True,
        keep_first_success: bool = True,
    ) -> None:
        super().__init__(eps, alpha, steps, norm, random_start)
        self.model = model
        self.keep_first_success = keep_first_success

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.model,)

    def check_target(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        labels = check_attack_labels(target, images)
        check_classes(self.model, images, labels)
        return labels.long()

    def loss_gradient(
        self, x_adv: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed cross-entropy with respect to ``x_adv`` (B, 3, H, W), and the
        logits (B, num_classes) it was computed from (detached)."""
        x_adv = x_adv.detach().requires_grad_(True)
        logits = self.model(x_adv)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        return grad, logits.detach()

    def prepare(self, images: torch.Tensor, target: Target) -> _FirstSuccess:
        labels = self.required(target, "the labels (B,)")
        fooled = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        return _FirstSuccess(labels, images, fooled)

    def gradient(self, x_adv: torch.Tensor, context: _FirstSuccess) -> torch.Tensor:
        grad, logits = self.loss_gradient(x_adv, context.labels)
        if self.keep_first_success:
            newly = (logits.argmax(dim=1) != context.labels) & ~context.fooled
            context.best = torch.where(context.view(newly), x_adv, context.best)
            context.fooled |= newly
        return grad

    def finish(self, x_adv: torch.Tensor, context: _FirstSuccess) -> torch.Tensor:
        return torch.where(context.view(context.fooled), context.best, x_adv)


class EOTPGD(PGD):
    """PGD with Expectation over Transformation (Athalye et al. 2018) for randomised models.

    Each step averages the gradient over ``eot_samples`` forward passes, each drawing fresh
    randomness inside the model (for example the random transformations of a
    [`TransformationSmoothedClassifier`][robust_contrastive.evaluation.smoothing.TransformationSmoothedClassifier]).
    Attacking a randomised model with plain PGD overestimates its robustness: use this (or
    AutoAttack ``version="rand"``).

    It returns the last iterate: keeping the first iterate that fools one random draw of the
    model (as [`PGD`][robust_contrastive.attacks.PGD] does for deterministic models) would weaken
    the attack.

    Args:
        model: a classifier with random inference (the other arguments are PGD's).
        eot_samples: gradient samples per step (the paper's EoT attack: see its Table 3).
    """

    repr_fields = (*PGD.repr_fields, "eot_samples")

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 20,
        norm: str = "linf",
        random_start: bool = True,
        eot_samples: int = 10,
    ) -> None:
        super().__init__(model, eps, alpha, steps, norm, random_start, keep_first_success=False)
        check_positive_int("eot_samples", eot_samples)
        self.eot_samples = eot_samples

    def loss_gradient(
        self, x_adv: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        grad_sum, logit_sum = super().loss_gradient(x_adv, labels)
        for _ in range(self.eot_samples - 1):
            grad, logits = super().loss_gradient(x_adv, labels)
            grad_sum += grad
            logit_sum += logits
        return grad_sum / self.eot_samples, logit_sum / self.eot_samples
