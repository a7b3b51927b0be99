"""``evaluate_robustness``: clean and adversarial accuracy under a list of threats, as a report.

The headline is l-inf PGD-20 with step 2/255 (4/255 at eps 16/255) and AutoAttack; the original
RoCL evaluation (step eps/10) is kept as the ``legacy`` protocol because it is much weaker.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..attacks import EOTPGD, PGD, autoattack
from ..data import ImageDataset
from ..modes import eval_mode
from ..validation import (
    check_budget,
    check_classes,
    check_images,
    check_labels,
    check_number,
    check_positive_int,
    model_device,
)
from .checks import (
    UnreliableEvaluationWarning,
    class_counts,
    evaluation_set_warnings,
    figure_warnings,
    steps_warnings,
    zero_gradient_warnings,
)

logger = logging.getLogger(__name__)

ATTACKS: tuple[str, ...] = ("pgd", "autoattack")
CHECK_IMAGES = 100  # images used by the sanity checks that attack the model again
MORE_STEPS = 100  # steps of the sanity checks' re-run of the headline attack


@dataclass(frozen=True)
class Threat:
    """One evaluation setting: an attack, its norm, radius and steps."""

    name: str  # unique label in the report, e.g. "linf-8/255"
    norm: str  # "linf", "l2" or "l1"
    eps: float  # radius of the threat model
    alpha: float = 0.0  # PGD step size (unused by AutoAttack)
    steps: int = 20  # PGD steps (20 = the headline PGD-20)
    attack: str = "pgd"  # "pgd" (EOT-PGD on randomised models) or "autoattack"
    protocol: str = "headline"  # "headline" (today's convention) or "legacy" (the original's)


def _pgd(name: str, norm: str, eps: float, alpha: float, protocol: str = "headline") -> Threat:
    return Threat(name=name, norm=norm, eps=eps, alpha=alpha, steps=20, protocol=protocol)


# The threats of the paper's Table 1, with today's step sizes as the headline.
THREATS: dict[str, Threat] = {
    t.name: t
    for t in (
        _pgd("linf-8/255", "linf", 8 / 255, 2 / 255),
        _pgd("linf-16/255", "linf", 16 / 255, 4 / 255),
        _pgd("linf-8/255-legacy", "linf", 8 / 255, 0.00314, "legacy"),
        _pgd("linf-16/255-legacy", "linf", 16 / 255, 0.00627, "legacy"),
        _pgd("l2-0.25", "l2", 0.25, 2.5 * 0.25 / 20),
        _pgd("l2-0.5", "l2", 0.5, 2.5 * 0.5 / 20),
        _pgd("l1-7.84", "l1", 7.84, 2.5 * 7.84 / 20),
        _pgd("l1-12", "l1", 12.0, 2.5 * 12.0 / 20),
        Threat(name="autoattack-linf-8/255", norm="linf", eps=8 / 255, attack="autoattack"),
    )
}
DEFAULT_THREATS: tuple[str, ...] = tuple(THREATS)


@dataclass
class ThreatResult:
    """The accuracy under one threat, with everything needed to reproduce it."""

    name: str
    norm: str
    eps: float
    alpha: float
    steps: int
    attack: str  # the attack actually run ("pgd", "eot-pgd", "autoattack", "autoattack-rand")
    protocol: str
    accuracy: float  # in [0, 1]
    n_images: int
    seed: int
    seconds: float
    eot_samples: int = 1


@dataclass
class RobustnessReport:
    """What [`evaluate_robustness`][robust_contrastive.evaluation.suite.evaluate_robustness]
    returns; ``to_json`` / ``to_markdown`` for sharing."""

    clean_accuracy: float
    n_images: int
    seed: int
    randomized: bool  # the model's outputs vary between calls (then attacks use EOT)
    results: list[ThreatResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # images per class of the evaluated set (index = label): model cards refuse a single class
    class_counts: list[int] = field(default_factory=list)

    def accuracy(self, name: str) -> float:
        """The accuracy under the threat called ``name`` (``"clean"`` for clean accuracy)."""
        if name == "clean":
            return self.clean_accuracy
        for result in self.results:
            if result.name == name:
                return result.accuracy
        raise KeyError(
            f"no threat {name!r} in this report; it has {[r.name for r in self.results]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON (atomically) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(target, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_markdown(self) -> str:
        """A markdown table: one row per threat, clean first."""
        lines = [
            "| threat | attack | protocol | eps | step | steps | accuracy (%) | images |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| clean | - | - | - | - | - | {100 * self.clean_accuracy:.2f} | {self.n_images} |",
        ]
        for r in self.results:
            step = f"{r.alpha:.5g}" if r.attack.endswith("pgd") else "-"
            steps = str(r.steps) if r.attack.endswith("pgd") else "-"
            lines.append(
                f"| {r.name} | {r.attack} | {r.protocol} | {r.eps:.5g} | {step} | {steps} | "
                f"{100 * r.accuracy:.2f} | {r.n_images} |"
            )
        lines += [f"\n> warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def is_randomized(model: nn.Module, images: torch.Tensor) -> bool:
    """Whether two eval-mode forward passes on the same images give different logits."""
    with eval_mode(model), torch.no_grad():
        return not torch.allclose(model(images), model(images))


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
    """Run every check against gradient masking and weak attacks on ``report``'s figures.

    Measures the zero-gradient fraction and re-runs the headline PGD with ``MORE_STEPS`` steps
    on ``CHECK_IMAGES`` images spread over the data; the verdicts are pure functions of those
    numbers ([`figure_warnings`][robust_contrastive.evaluation.checks.figure_warnings],
    [`steps_warnings`][robust_contrastive.evaluation.checks.steps_warnings]).

    Args:
        images: (N, 3, H, W) float in [0, 1], on the model's device.
        labels: (N,) int64.
        seed: seed of the re-run attacks.
    """
    stride = max(1, images.shape[0] // CHECK_IMAGES)  # spread over the data (often class-sorted)
    subset_x, subset_y = images[::stride][:CHECK_IMAGES], labels[::stride][:CHECK_IMAGES]
    warnings = zero_gradient_warnings(zero_gradient_fraction(model, subset_x, subset_y))
    warnings += figure_warnings(report.clean_accuracy, report.results)
    headline = next(
        (r for r in report.results if r.attack in ("pgd", "eot-pgd") and r.protocol == "headline"),
        None,
    )
    if headline is not None:
        accuracies = []
        eot_samples = headline.eot_samples if headline.attack == "eot-pgd" else None
        for steps in (headline.steps, MORE_STEPS):
            attack = _pgd_attack(model, headline, steps, eot_samples)
            generator = torch.Generator(device=images.device).manual_seed(seed)
            adv = attack.perturb(subset_x, subset_y, generator)
            with torch.no_grad():
                accuracies.append(float((model(adv).argmax(1) == subset_y).float().mean()))
        few, many = accuracies
        warnings += steps_warnings(
            headline.name, headline.steps, few, MORE_STEPS, many, subset_x.shape[0]
        )
    return warnings


def _pgd_attack(
    model: nn.Module, threat: Threat | ThreatResult, steps: int, eot_samples: int | None
) -> PGD:
    """PGD with ``threat``'s radius, step and norm; EOT-PGD with ``eot_samples`` if given."""
    if eot_samples is None:
        return PGD(model, threat.eps, threat.alpha, steps, threat.norm)
    return EOTPGD(model, threat.eps, threat.alpha, steps, threat.norm, eot_samples=eot_samples)


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Number of correctly classified images, as a 0-dim tensor (no host synchronisation)."""
    with torch.no_grad():
        logits: torch.Tensor = model(images)
    return (logits.argmax(dim=1) == labels).sum()


def evaluate_robustness(
    model: nn.Module,
    data: ImageDataset | tuple[torch.Tensor, torch.Tensor],
    threats: tuple[str | Threat, ...] | list[str | Threat] = DEFAULT_THREATS,
    *,
    n_images: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    eot_samples: int = 10,
    num_classes: int | None = None,
    sanity_checks: bool = True,
    progress: bool = True,
) -> RobustnessReport:
    """Clean accuracy and accuracy under each threat, with sanity checks, as a report.

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits. A model
            with random inference (detected automatically) is attacked with EOT-PGD
            (``eot_samples`` gradient samples per step) and AutoAttack ``version="rand"``.
        data: an [`ImageDataset`][robust_contrastive.ImageDataset] (uint8) or (images, labels)
            with images float in [0, 1]. Use held-out data the model never trained or selected on.
        threats: names from [`THREATS`][robust_contrastive.evaluation.suite.THREATS] (default: all
            of them) or [`Threat`][robust_contrastive.evaluation.suite.Threat] objects. AutoAttack
            threats are skipped, with a warning, when torchattacks is not installed.
        n_images: evaluate a random subset of ``n_images`` drawn with ``seed`` (default: all).
        batch_size: images per attack batch.
        seed: seeds every attack's random start; the same seed gives the same report.
        eot_samples: EOT samples per step for randomised models.
        num_classes: for AutoAttack (default: inferred from the model's output).
        sanity_checks: run the gradient-masking checks
            ([`sanity_warnings`][robust_contrastive.evaluation.suite.sanity_warnings]) and add
            warnings.

    The evaluation images are checked before any attack runs
    ([`evaluation_set_warnings`][robust_contrastive.evaluation.checks.evaluation_set_warnings]):
    each warning goes to ``report.warnings``, the log and an
    [`UnreliableEvaluationWarning`][robust_contrastive.evaluation.checks.UnreliableEvaluationWarning].

    Returns:
        A [`RobustnessReport`][robust_contrastive.evaluation.suite.RobustnessReport].

    Raises:
        TypeError / ValueError: ``data`` is not an ImageDataset or an (images, labels) pair,
            bad images (NaN, inf, outside [0, 1], wrong shape or dtype, empty) or labels (not
            integers, wrong length, negative, or a class the model has no output for), an
            unknown, invalid or repeated threat, ``threats`` given as one string, a
            ``num_classes`` that is not the model's, or a non-positive ``batch_size``,
            ``n_images`` or ``eot_samples``.
    """
    if isinstance(data, ImageDataset):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(
            f"data must be an ImageDataset or a pair (images, labels), got {type(data).__name__}."
        )
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        images = images.float() / 255.0
    check_images(images, "images")
    check_labels(labels, images.shape[0], None, "labels")
    for name, value in (("batch_size", batch_size), ("eot_samples", eot_samples)):
        check_positive_int(name, value)
    if n_images is not None:
        check_positive_int("n_images", n_images)
        if n_images < images.shape[0]:  # a seeded random subset: data is often sorted by class
            pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
            pick = pick[:n_images].sort().values
            images, labels = images[pick], labels[pick]
    if isinstance(threats, str):
        raise TypeError(
            f"threats must be a list of threat names or Threat objects, got the string "
            f"{threats!r}: pass [{threats!r}]."
        )
    resolved = [_resolve(t) for t in threats]
    repeated = sorted({t.name for t in resolved if [r.name for r in resolved].count(t.name) > 1})
    if repeated:
        raise ValueError(f"threats {repeated} are listed more than once: the report keys by name.")
    device = model_device(model, images.device)
    images, labels = images.to(device), labels.long().to(device)
    n = images.shape[0]
    randomized = is_randomized(model, images[: min(n, 16)])
    outputs = check_classes(model, images, labels)
    if num_classes is not None and num_classes != outputs:
        raise ValueError(
            f"num_classes={num_classes!r} but the model outputs {outputs} classes: pass "
            f"num_classes={outputs} (or leave it out)."
        )
    num_classes = outputs

    counts = class_counts(labels, num_classes)
    report = RobustnessReport(
        clean_accuracy=0.0, n_images=n, seed=seed, randomized=randomized, class_counts=counts
    )
    for message in evaluation_set_warnings(counts, num_classes):
        logger.warning(message)
        warnings.warn(message, UnreliableEvaluationWarning, stacklevel=2)
        report.warnings.append(message)
    if randomized:
        report.warnings.append(
            "the model's outputs are random: attacks use EOT-PGD "
            f"({eot_samples} samples per step) and AutoAttack version='rand'."
        )
    batches = _batches(n, batch_size)
    with eval_mode(model):
        correct = sum(int(_correct(model, images[b], labels[b])) for b in batches)
        report.clean_accuracy = correct / n
        bar = tqdm(total=len(resolved) * n, desc="evaluate", unit="img", disable=not progress)
        with bar:
            for threat in resolved:
                result = _run_threat(
                    model,
                    images,
                    labels,
                    threat,
                    batches,
                    seed,
                    randomized,
                    eot_samples,
                    num_classes,
                    bar,
                )
                if result is None:
                    report.warnings.append(
                        f"{threat.name} skipped: AutoAttack needs torchattacks "
                        '(pip install "robust-contrastive[eval]").'
                    )
                    continue
                report.results.append(result)
                logger.info("%s: %.2f %%", threat.name, 100 * result.accuracy)
    if sanity_checks:
        report.warnings += sanity_warnings(model, images, labels, report, seed=seed)
    return report


def _resolve(threat: str | Threat) -> Threat:
    if isinstance(threat, Threat):
        if threat.attack not in ATTACKS:
            raise ValueError(f"unknown attack {threat.attack!r}; choose one of {list(ATTACKS)}.")
        # Checked before any attack runs, not after minutes of the other threats.
        if threat.attack == "pgd":
            check_budget(threat.eps, threat.alpha, threat.steps, threat.norm)
        elif threat.norm not in ("linf", "l2"):
            raise ValueError(f"AutoAttack supports norm 'linf' or 'l2', got {threat.norm!r}.")
        else:
            check_number("eps", threat.eps, positive=False, example="8/255 for l-inf")
        return threat
    if not isinstance(threat, str):
        raise TypeError(f"a threat is a name or a Threat, got {type(threat).__name__}.")
    if threat not in THREATS:
        raise ValueError(f"unknown threat {threat!r}; choose from {list(THREATS)}.")
    return THREATS[threat]


def _run_threat(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    threat: Threat,
    batches: list[slice],
    seed: int,
    randomized: bool,
    eot_samples: int,
    num_classes: int,
    bar: Any,
) -> ThreatResult | None:
    start = time.perf_counter()
    correct = 0
    if threat.attack == "autoattack":
        version = "rand" if randomized else "standard"
        for b in batches:
            try:
                adv = autoattack(
                    model,
                    images[b],
                    labels[b],
                    eps=threat.eps,
                    norm=threat.norm,
                    version=version,
                    num_classes=num_classes,
                    seed=seed,
                )
            except ImportError:
                return None
            correct += int(_correct(model, adv, labels[b]))
            bar.update(b.stop - b.start)
        name, samples = f"autoattack-{version}" if randomized else "autoattack", 1
    else:
        attack = _pgd_attack(model, threat, threat.steps, eot_samples if randomized else None)
        generator = torch.Generator(device=images.device).manual_seed(seed)
        for b in batches:
            adv = attack.perturb(images[b], labels[b], generator)
            correct += int(_correct(model, adv, labels[b]))
            bar.update(b.stop - b.start)
        name, samples = ("eot-pgd", eot_samples) if randomized else ("pgd", 1)
    return ThreatResult(
        name=threat.name,
        norm=threat.norm,
        eps=threat.eps,
        alpha=threat.alpha,
        steps=threat.steps,
        attack=name,
        protocol=threat.protocol,
        accuracy=correct / images.shape[0],
        n_images=images.shape[0],
        seed=seed,
        seconds=time.perf_counter() - start,
        eot_samples=samples,
    )
