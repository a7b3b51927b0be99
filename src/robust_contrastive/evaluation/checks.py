"""Sanity checks against gradient masking and weak attacks, in the spirit of AutoAttack's flags.

Each check returns human-readable warnings that
[`evaluate_robustness`][robust_contrastive.evaluation.suite.evaluate_robustness] adds to its report.
A warning means the robust accuracy may be overestimated: look before quoting the number.

[`evaluation_set_warnings`][robust_contrastive.evaluation.checks.evaluation_set_warnings] checks the
evaluation images themselves (too few, a single class, missing or thin classes): a figure measured
on such a set means little whatever the attack. ``evaluate_robustness`` runs it on every call
(before any attack), records its warnings in the report and raises them as
[`UnreliableEvaluationWarning`][robust_contrastive.evaluation.checks.UnreliableEvaluationWarning].
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .._names import MIN_EVAL_IMAGES as MIN_EVAL_IMAGES
from ..attacks import EOTPGD, PGD
from ..modes import eval_mode

if TYPE_CHECKING:
    from .suite import RobustnessReport

CHECK_IMAGES = 100  # images used by the checks that run attacks of their own
MORE_STEPS = 100  # steps of the re-run of the headline attack
MIN_IMAGES_PER_CLASS = 10  # below this, a class present in the evaluation set is too thin


class UnreliableEvaluationWarning(UserWarning):
    """An evaluation set too small or too one-sided for its accuracy to mean anything.

    Raised by [`evaluate_robustness`][robust_contrastive.evaluation.suite.evaluate_robustness]
    (see [`evaluation_set_warnings`][robust_contrastive.evaluation.checks.evaluation_set_warnings]
    for the rules). Turn it into an error with
    ``warnings.simplefilter("error", UnreliableEvaluationWarning)``.
    """


class ProbeNotLearningWarning(UserWarning):
    """A linear probe whose kept head classifies its own training images at chance level.

    Raised by [`RobustLinearProbe.fit`][robust_contrastive.evaluation.probe.RobustLinearProbe.fit]:
    the features carry no usable class information (an untrained or collapsed encoder), or the
    probe's learning rate or epochs are wrong. Its accuracies are then meaningless.
    """


def class_counts(labels: torch.Tensor, num_classes: int | None = None) -> list[int]:
    """Number of images of each class: ``counts[c]`` for labels ``c`` in ``[0, num_classes)``.

    Args:
        labels: (N,) integer class indices.
        num_classes: length of the result (default: the largest label + 1).
    """
    flat = labels.detach().flatten().long().cpu()
    size = int(flat.max()) + 1 if flat.numel() else 0
    if num_classes is not None:
        size = max(size, num_classes)
    return [int(c) for c in torch.bincount(flat, minlength=size).tolist()]


def evaluation_set_warnings(counts: list[int], num_classes: int | None = None) -> list[str]:
    """Why an evaluation on images with these class counts may be meaningless.

    The rules (every one that applies gives a warning):

    * **a single class**: every image has the same label, so a classifier that always predicts
      that label scores 100 %; the accuracy says nothing about the classifier;
    * **fewer than ``MIN_EVAL_IMAGES`` (100) images**: each image moves the accuracy by more
      than one point; the warning gives the largest standard error of an accuracy on that many
      images (at 50 %);
    * **missing classes** (more than one class present, but fewer than ``num_classes``): the
      figure is not the accuracy over the task;
    * **thin classes**: a class present with fewer than ``MIN_IMAGES_PER_CLASS`` (10) images.

    The last two are not reported for a single-class set (the first says it all).

    Args:
        counts: images per class, e.g. from
            [`class_counts`][robust_contrastive.evaluation.checks.class_counts].
        num_classes: the classifier's number of classes (default: ``len(counts)``).

    Returns:
        Human-readable warnings, each saying what to do; empty when the set looks sound.
    """
    total = sum(counts)
    present = [c for c, n in enumerate(counts) if n > 0]
    expected = len(counts) if num_classes is None else num_classes
    fix = (
        "evaluate on a held-out set with every class, e.g. load_sample(held_out=True) "
        "(2,000 CIFAR-10 images, 200 per class) or a stratified split (train_val_split)"
    )
    warnings: list[str] = []
    if len(present) == 1:
        warnings.append(
            f"all {total} evaluation images are of class {present[0]}: a classifier that always "
            f"predicts it scores 100 %, so these accuracies say nothing; {fix}."
        )
    if 0 < total < MIN_EVAL_IMAGES:
        error = 100 * math.sqrt(0.25 / total)
        warnings.append(
            f"only {total} evaluation images (fewer than {MIN_EVAL_IMAGES}): each image moves "
            f"an accuracy by {100 / total:.1f} points (standard error up to {error:.1f} points); "
            f"{fix}."
        )
    if len(present) > 1:
        if len(present) < expected:
            missing = sorted(set(range(expected)) - set(present))
            warnings.append(
                f"the evaluation images cover {len(present)} of {expected} classes (missing "
                f"{missing}): the figures are not accuracies over the task; {fix}."
            )
        thin = [c for c in present if counts[c] < MIN_IMAGES_PER_CLASS]
        if thin:
            warnings.append(
                f"classes {thin} have fewer than {MIN_IMAGES_PER_CLASS} evaluation images "
                f"({[counts[c] for c in thin]}): per-class errors dominate; {fix}."
            )
    return warnings


def zero_gradient_fraction(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose input gradient of the cross-entropy is exactly zero.

    A non-zero fraction is a classic sign of gradient masking (saturated softmax, quantisation,
    non-differentiable pre-processing): gradient attacks then learn nothing on those images.
    """
    with eval_mode(model):
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return float((grad.flatten(1).abs().amax(dim=1) == 0).float().mean())


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
