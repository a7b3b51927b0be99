"""Sanity checks against gradient masking and weak attacks, in the spirit of AutoAttack's flags.

Each check returns human-readable warnings that :func:`evaluate_robustness` adds to its report.
A warning means the robust accuracy may be overestimated: look before quoting the number.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import EOTPGD, PGD

if TYPE_CHECKING:
    from .suite import RobustnessReport

CHECK_IMAGES = 100  # images used by the checks that run attacks of their own
MORE_STEPS = 100  # steps of the re-run of the headline attack


def zero_gradient_fraction(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose input gradient of the cross-entropy is exactly zero.

    A non-zero fraction is a classic sign of gradient masking (saturated softmax, quantisation,
    non-differentiable pre-processing): gradient attacks then learn nothing on those images.
    """
    was_training = model.training
    model.eval()
    try:
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return float((grad.flatten(1).abs().amax(dim=1) == 0).float().mean())
    finally:
        model.train(was_training)


def sanity_warnings(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    report: RobustnessReport,
    *,
    seed: int = 0,
) -> list[str]:
    """Run every check.

    Args:
        images: (N, 3, H, W) float in [0, 1], on the model's device.
        labels: (N,) int64.
        report: the report whose figures are checked.
        seed: seed of the re-run attacks.
    """
    warnings: list[str] = []
    stride = max(1, images.shape[0] // CHECK_IMAGES)  # spread over the data (often class-sorted)
    subset_x, subset_y = images[::stride][:CHECK_IMAGES], labels[::stride][:CHECK_IMAGES]

    zero = zero_gradient_fraction(model, subset_x, subset_y)
    if zero > 0:
        warnings.append(
            f"{100 * zero:.1f} % of images have an exactly zero input gradient: possible "
            "gradient masking; gradient-based robust accuracies may be overestimated."
        )

    for result in report.results:
        if result.accuracy > report.clean_accuracy:
            warnings.append(
                f"{result.name}: robust accuracy {100 * result.accuracy:.2f} % exceeds the clean "
                f"accuracy {100 * report.clean_accuracy:.2f} %: the attack is failing."
            )
    groups: dict[tuple[str, str, str], list[tuple[float, float, str]]] = {}
    for r in report.results:
        groups.setdefault((r.norm, r.attack, r.protocol), []).append((r.eps, r.accuracy, r.name))
    for entries in groups.values():
        entries.sort()
        for (_, acc_small, small), (_, acc_large, large) in itertools.pairwise(entries):
            if acc_large > acc_small:
                warnings.append(
                    f"accuracy rises with a larger radius ({small}: {100 * acc_small:.2f} %, "
                    f"{large}: {100 * acc_large:.2f} %): possible gradient masking."
                )

    headline = next(
        (r for r in report.results if r.attack in ("pgd", "eot-pgd") and r.protocol == "headline"),
        None,
    )
    if headline is not None:
        n = subset_x.shape[0]
        accuracies = []
        for steps in (headline.steps, MORE_STEPS):
            attack: PGD = (
                EOTPGD(
                    model,
                    headline.eps,
                    headline.alpha,
                    steps,
                    headline.norm,
                    eot_samples=headline.eot_samples,
                )
                if headline.attack == "eot-pgd"
                else PGD(model, headline.eps, headline.alpha, steps, headline.norm)
            )
            generator = torch.Generator(device=images.device).manual_seed(seed)
            adv = attack.perturb(subset_x, subset_y, generator)
            with torch.no_grad():
                accuracies.append(float((model(adv).argmax(1) == subset_y).float().mean()))
        few, many = accuracies
        if many > few:
            warnings.append(
                f"{headline.name}: accuracy rises with more steps ({headline.steps}: "
                f"{100 * few:.1f} %, {MORE_STEPS}: {100 * many:.1f} % on {n} images): "
                "randomised or masked gradients; use EOT / AutoAttack rand."
            )
        elif few - many > 0.02:
            warnings.append(
                f"{headline.name}: PGD-{headline.steps} has not converged ({100 * few:.1f} % vs "
                f"{100 * many:.1f} % with {MORE_STEPS} steps on {n} images): report more steps."
            )
    return warnings
