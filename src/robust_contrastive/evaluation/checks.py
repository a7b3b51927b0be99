"""Checks on the figures of an evaluation, in the spirit of AutoAttack's flags.

Pure functions from accuracies, class counts or radii to human-readable warnings (or a rate): none
runs a model or an attack, and the module imports neither torch nor the rest of the evaluation.
[`evaluate_robustness`][robust_contrastive.evaluation.suite.evaluate_robustness] measures the
figures and adds these warnings to its report: look before quoting a number that has one.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .._names import MIN_EVAL_IMAGES as MIN_EVAL_IMAGES

if TYPE_CHECKING:
    import torch

MIN_IMAGES_PER_CLASS = 10  # below this, a class present in the evaluation set is too thin
UNCONVERGED_GAP = 0.02  # PGD has not converged when more steps take this much more accuracy


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


class ThreatFigure(Protocol):
    """What the checks read of one figure of a report (a
    [`ThreatResult`][robust_contrastive.evaluation.suite.ThreatResult] is one)."""

    name: str
    norm: str
    attack: str
    protocol: str
    eps: float
    accuracy: float


def class_counts(labels: torch.Tensor | Sequence[int], num_classes: int | None = None) -> list[int]:
    """Number of images of each class: ``counts[c]`` for labels ``c`` in ``[0, num_classes)``.

    Args:
        labels: (N,) non-negative integer class indices (a tensor or a sequence).
        num_classes: length of the result (default: the largest label + 1).

    Raises:
        ValueError: a negative label.
    """
    values = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
    if values and min(values) < 0:
        raise ValueError(f"class labels must be >= 0, got {min(values)}.")
    tally = Counter(values)
    size = max(max(values, default=-1) + 1, num_classes or 0)
    return [tally[c] for c in range(size)]


def majority_rate(counts: Sequence[int]) -> float:
    """The chance level: the accuracy of always answering the most frequent class.

    Args:
        counts: images per class, e.g. from
            [`class_counts`][robust_contrastive.evaluation.checks.class_counts].

    Returns:
        ``max(counts) / sum(counts)``; 0 for no images.
    """
    total = sum(counts)
    return max(counts) / total if total else 0.0


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


def zero_gradient_warnings(fraction: float) -> list[str]:
    """A warning when a ``fraction`` > 0 of the images have an exactly zero input gradient."""
    if fraction <= 0:
        return []
    return [
        f"{100 * fraction:.1f} % of images have an exactly zero input gradient: possible "
        "gradient masking; gradient-based robust accuracies may be overestimated."
    ]


def figure_warnings(clean_accuracy: float, results: Sequence[ThreatFigure]) -> list[str]:
    """Warnings on a report's figures: a robust accuracy above the clean one (the attack fails),
    or an accuracy that rises with the radius of the same attack and norm (gradient masking)."""
    warnings = [
        f"{r.name}: robust accuracy {100 * r.accuracy:.2f} % exceeds the clean accuracy "
        f"{100 * clean_accuracy:.2f} %: the attack is failing."
        for r in results
        if r.accuracy > clean_accuracy
    ]
    groups: dict[tuple[str, str, str], list[tuple[float, float, str]]] = {}
    for r in results:
        groups.setdefault((r.norm, r.attack, r.protocol), []).append((r.eps, r.accuracy, r.name))
    for entries in groups.values():
        entries.sort()
        for (_, acc_small, small), (_, acc_large, large) in itertools.pairwise(entries):
            if acc_large > acc_small:
                warnings.append(
                    f"accuracy rises with a larger radius ({small}: {100 * acc_small:.2f} %, "
                    f"{large}: {100 * acc_large:.2f} %): possible gradient masking."
                )
    return warnings


def steps_warnings(
    name: str, steps: int, accuracy: float, more_steps: int, more_accuracy: float, n_images: int
) -> list[str]:
    """Warnings from re-running an attack with more steps on ``n_images`` images.

    More steps must not raise the accuracy (randomised or masked gradients) and should not lower
    it by more than ``UNCONVERGED_GAP`` (the attack has not converged at ``steps``).
    """
    if more_accuracy > accuracy:
        return [
            f"{name}: accuracy rises with more steps ({steps}: {100 * accuracy:.1f} %, "
            f"{more_steps}: {100 * more_accuracy:.1f} % on {n_images} images): randomised or "
            "masked gradients; use EOT / AutoAttack rand."
        ]
    if accuracy - more_accuracy > UNCONVERGED_GAP:
        return [
            f"{name}: PGD-{steps} has not converged ({100 * accuracy:.1f} % vs "
            f"{100 * more_accuracy:.1f} % with {more_steps} steps on {n_images} images): report "
            "more steps."
        ]
    return []
