"""Linear evaluation of a frozen encoder: the clean probe and robust linear evaluation (r-LE).

A [`RobustLinearProbe`][robust_contrastive.evaluation.probe.RobustLinearProbe] is a linear layer
l_psi on a frozen encoder f_theta, the classifier ``l_psi(f_theta(x))`` of Section 3.3 of the
paper, trained on clean images or, for r-LE (eq. 7), on class-wise PGD examples against itself.
[`accuracy`][robust_contrastive.evaluation.probe.accuracy] and
[`adversarial_accuracy`][robust_contrastive.evaluation.probe.adversarial_accuracy] score any
classifier.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..attacks import PGD
from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..layout import ENCODER_DIR
from ..models.classifier import Classifier
from ..models.encoder import RoCLEncoder
from ..modes import eval_mode
from ..training.config import check_milestones
from ..training.loop import FitResult, Objective, TrainingLoop
from ..validation import (
    check_budget,
    check_images,
    check_labels,
    check_number,
    check_positive_int,
    model_device,
)
from .checks import ProbeNotLearningWarning, class_counts, majority_rate

__all__ = ["ENCODER_DIR", "ProbeConfig", "RobustLinearProbe", "accuracy", "adversarial_accuracy"]

logger = logging.getLogger(__name__)

SCHEDULES: tuple[str, ...] = ("step", "cosine")
SELECTIONS: tuple[str, ...] = ("clean", "robust")  # what fit(val=...) picks the epoch on
# The original linear evaluation divides the lr by 10 after epochs 30, 50 and 100 of 150; for
# another number of epochs the milestones keep the same fractions of the run.
STEP_MILESTONES: tuple[float, ...] = (30 / 150, 50 / 150, 100 / 150)
STEP_GAMMA = 0.1
# fit's chance-level check: the kept head's clean accuracy on (at most) this many of its own
# training images must beat the majority-class rate p by CHANCE_MARGIN * (1 - p) plus two
# standard errors.
CHANCE_CHECK_IMAGES = 2000
CHANCE_MARGIN = 0.02

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Augmentation = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


@dataclass(frozen=True)
class ProbeConfig:
    """Everything needed to rebuild a
    [`RobustLinearProbe`][robust_contrastive.evaluation.probe.RobustLinearProbe] (stored in
    ``config.json``).

    The defaults are the original RoCL linear evaluation (``reference-settings.md``): 150 epochs,
    SGD with momentum 0.9 and weight decay 5e-4, batch 1024, lr 0.1 divided by 10 after epochs
    30, 50 and 100; r-LE attacks with l-inf PGD, eps 8/255, step 0.007, 10 steps.
    """

    num_classes: int  # outputs of the linear layer
    feature_dim: int  # the encoder's feature_dim (512 for resnet18 at width 64)
    adversarial: bool = False  # True = robust linear evaluation (r-LE), eq. (7)
    eps: float = 8 / 255  # r-LE: l-inf radius of the class-wise PGD attack
    alpha: float = 0.007  # r-LE: PGD step size (the original's 0.007)
    attack_steps: int = 10  # r-LE: PGD steps
    epochs: int = 150
    batch_size: int = 1024  # capped at the data set size
    lr: float = 0.1  # the original README's learning rate for linear evaluation
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # "step" (the original's 10x decays) or "cosine" (to 0 at the end)
    milestones: tuple[int, ...] | None = None  # "step" only: lr / 10 from each of these 0-based
    # epochs, instead of the original's fractions of the run (None: 30, 50, 100 of 150)
    augment: bool = True  # train on SimCLR-augmented images (clean probe and r-LE)


def _check_milestones(
    milestones: tuple[int, ...] | list[int] | None, schedule: str
) -> tuple[int, ...] | None:
    """``milestones`` as a tuple of increasing non-negative epochs (None stays None)."""
    if milestones is None:
        return None
    if schedule != "step":
        raise ValueError(
            f"milestones apply to schedule='step' only, got schedule={schedule!r}: drop them or "
            "use the step schedule."
        )
    return check_milestones(milestones)


def _as_images_and_labels(
    data: object, labels: torch.Tensor | None, num_classes: int | None, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``data`` (+ ``labels``) and return (images, labels).

    Returns:
        images: (N, 3, H, W), uint8 in [0, 255] (from an ImageDataset) or float in [0, 1];
        labels: (N,) int64.
    """
    if isinstance(data, ImageDataset):
        if labels is not None:
            raise ValueError(
                f"{name} is an ImageDataset, which carries its own labels: do not pass labels."
            )
        images, labels = data.images, data.labels
        if images.shape[0] == 0:
            raise ValueError(f"{name} is empty: it holds no images.")
    elif isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError(
                f"{name} is an image tensor: pass its labels too, or pass an ImageDataset."
            )
        if not data.is_floating_point():
            raise TypeError(
                f"{name} images must be float in [0, 1], got dtype {data.dtype}: convert uint8 "
                "with images.float() / 255, or wrap them in an ImageDataset."
            )
        check_images(data, name)
        images = data
    else:
        raise TypeError(
            f"{name} must be an ImageDataset or a float image tensor (N, 3, H, W) in [0, 1], got "
            f"{type(data).__name__}."
        )
    check_labels(labels, images.shape[0], num_classes, f"{name} labels")
    return images, labels.long()


def _float_batch(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 3, H, W) uint8 or float -> float in [0, 1] on ``device``."""
    batch = images.to(device, non_blocking=True)
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor | ImageDataset,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> float:
    """Clean accuracy of a classifier: the fraction of images whose argmax logit is the label.

    The model runs in eval mode, without gradients, on the device of its parameters; its
    previous mode is restored afterwards.

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits.
        images: (N, 3, H, W) float in [0, 1], or an ImageDataset (which carries the labels).
        labels: (N,) integer class indices (omit with an ImageDataset).
        batch_size: images per forward pass.
        progress: show a progress bar over the batches.

    Returns:
        The accuracy, a float in [0, 1].

    Raises:
        TypeError / ValueError: bad images or labels (non-float tensor, values outside [0, 1],
            mismatched lengths, negative labels or labels the model has no output for, empty
            data), or a model that does not return (B, num_classes) logits.
    """
    check_positive_int("batch_size", batch_size)
    data, targets = _as_images_and_labels(images, labels, None, "images")
    high = int(targets.max())  # checked against the model's outputs at the first batch
    device = model_device(model, data.device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model):
        starts = range(0, data.shape[0], batch_size)
        disable = None if progress else True
        for start in tqdm(starts, desc="accuracy", unit="batch", disable=disable):
            batch = _float_batch(data[start : start + batch_size], device)
            logits = model(batch)
            if logits.dim() != 2 or logits.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"the model must return (B, num_classes) logits, got {tuple(logits.shape)}."
                )
            if high >= logits.shape[1]:
                raise ValueError(
                    f"labels go up to {high} but the model outputs {logits.shape[1]} classes: "
                    f"labels must be class indices in [0, {logits.shape[1]})."
                )
            target = targets[start : start + batch_size].to(device)
            correct += (logits.argmax(dim=1) == target).sum()
    return int(correct) / data.shape[0]


def adversarial_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    *,
    batch_size: int,
) -> float:
    """Accuracy of ``model`` (in eval mode) on ``attack(images, labels)``, batch by batch: how
    training runs score a validation split every epoch (pass an attack whose random starts come
    from a freshly seeded generator, so that every epoch meets the same attack).

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, K) logits.
        images: (N, 3, H, W) uint8 or float in [0, 1], on any device.
        labels: (N,) int64 class indices.
        attack: ``attack(images, labels)`` -> adversarial images, on the model's device.
        batch_size: images per attack call.
    """
    device = model_device(model, images.device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            batch = _float_batch(images[start : start + batch_size], device)
            target = labels[start : start + batch_size].to(device)
            adversarial = attack(batch, target)
            with torch.no_grad():
                correct += (model(adversarial).argmax(dim=1) == target).sum()
    return int(correct) / images.shape[0]


class _LinearEvaluation(Objective):
    """Clean linear evaluation or r-LE (eq. 7) as an objective: the cross-entropy of the head on
    a batch's (augmented, attacked) frozen features, or on cached features (the fast path)."""

    def __init__(self, probe: RobustLinearProbe, attack: Attack, cached: bool) -> None:
        self.probe = probe
        self.attack = attack
        self.cached = cached  # batches hold cached features, not images
        adversarial = probe.config.adversarial
        self.name = "r-LE" if adversarial else "linear eval"
        self.metrics = ("loss", "train_adv_acc" if adversarial else "train_clean_acc")

    def modules(self) -> dict[str, nn.Module | None]:
        return {"head": self.probe.head}

    def train(self) -> None:
        self.probe.train()  # the head; the encoder stays in eval mode

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        probe = self.probe
        if self.cached:
            features = inputs
        else:
            images = _float_batch(inputs, probe.device)
            features = probe._training_features(images, targets, self.attack, generator)
        logits = probe.head(features)  # (B, K)
        loss = F.cross_entropy(logits, targets)
        correct = (logits.detach().argmax(dim=1) == targets).float().mean()
        return loss, torch.stack((loss.detach(), correct))


class RobustLinearProbe(Classifier):
    """A linear classifier on a frozen encoder: clean linear evaluation or r-LE (eq. 7).

    A [`Classifier`][robust_contrastive.models.Classifier] (its save / load path):
    ``forward(images) = head(encoder(images))`` maps images (B, 3, H, W) float in [0, 1] to
    logits (B, num_classes). Only ``head = nn.Linear(feature_dim, num_classes)`` is trained.

    Construction freezes the encoder in place (``requires_grad_(False)`` and eval mode); the
    probe's ``train()`` never puts it back in training mode, so BatchNorm running statistics are
    never updated. The head is put on the encoder's device and dtype.

    Training ([`fit`][robust_contrastive.evaluation.probe.RobustLinearProbe.fit]): SGD
    (momentum, weight decay) on the head only; ``schedule="step"`` (the original's) divides the
    lr by 10 after 20 %, 33 % and 67 % of the epochs (30, 50 and 100 of 150; or from each of
    ``milestones`` when given), ``"cosine"`` decays it towards 0, both set once per epoch;
    batches of ``min(batch_size, N)`` images, reshuffled every epoch. ``augment=True`` applies
    ``SimCLRAugmentation(size=None)`` (RoCL's, at the input size) or the ``augmentation`` given;
    ``adversarial=True`` (r-LE) replaces each batch by l-inf PGD examples against the current
    probe, ``PGD(self, eps, alpha, attack_steps)``, or ``attack(images, labels)``. Without
    either, the features are computed once and the head trains on them (the same result up to
    rounding). With ``val``, the epoch with the best validation accuracy (clean, or under the
    r-LE attack with ``select="robust"``; the earliest among ties) is kept.

    Args:
        encoder: the pretrained encoder f_theta (frozen in place).
        num_classes: number of classes (outputs of the head).
        adversarial: train with r-LE (eq. 7) instead of clean linear evaluation.
        eps: r-LE l-inf radius (8/255).
        alpha: r-LE PGD step size (0.007, as the original).
        attack_steps: r-LE PGD steps (10).
        epochs: training epochs (150).
        batch_size: training batch size (1024), capped at the data set size.
        lr: initial learning rate (0.1).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (5e-4).
        schedule: ``"step"`` or ``"cosine"`` (see above).
        milestones: with ``schedule="step"``, the epochs (0-based, increasing) from which the lr
            is divided by 10 once more, e.g. ``(15, 20)`` (the RobustSSL benchmark's); default
            ``None``: 20 %, 33 % and 67 % of the epochs, as the original.
        augment: augment training images (see above).
        attack: optional replacement of the r-LE attack, called ``attack(images, labels)`` with
            images (B, 3, H, W) float in [0, 1] and labels (B,) int64 on the probe's device, and
            returning (B, 3, H', W') float images to train on. Not saved by ``save_pretrained``.
        augmentation: optional replacement of the augmentation, called
            ``augmentation(images, generator)`` -> (B, 3, H', W') float in [0, 1]. Not saved.

    Example:
        >>> probe = RobustLinearProbe(encoder, num_classes=10, epochs=150)
        >>> result = probe.fit(train_set, val=val_set, seed=0)  # result.history, best_epoch
        >>> accuracy(probe, test_images, test_labels)
    """

    model_type: ClassVar[str] = "rocl-linear-probe"
    config: ProbeConfig

    def __init__(
        self,
        encoder: RoCLEncoder,
        num_classes: int,
        adversarial: bool = False,
        *,
        eps: float = 8 / 255,
        alpha: float = 0.007,
        attack_steps: int = 10,
        epochs: int = 150,
        batch_size: int = 1024,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: str = "step",
        milestones: tuple[int, ...] | None = None,
        augment: bool = True,
        attack: Attack | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        check_budget(eps, alpha, attack_steps, "linf")
        check_positive_int("epochs", epochs)
        check_positive_int("batch_size", batch_size)
        check_number("lr", lr, positive=True, example="0.1, the original's")
        check_number("momentum", momentum, positive=False, example="0.9")
        if not momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        check_number("weight_decay", weight_decay, positive=False, example="5e-4")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}.")
        milestones = _check_milestones(milestones, schedule)
        if attack is not None and not callable(attack):
            raise TypeError("attack must be callable as attack(images, labels) -> images.")
        if augmentation is not None and not callable(augmentation):
            raise TypeError(
                "augmentation must be callable as augmentation(images, generator) -> images."
            )
        super().__init__(encoder, num_classes, head_like_encoder=True)
        self.config = ProbeConfig(
            num_classes=num_classes,
            feature_dim=encoder.feature_dim,
            adversarial=bool(adversarial),
            eps=float(eps),
            alpha=float(alpha),
            attack_steps=attack_steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=float(lr),
            momentum=float(momentum),
            weight_decay=float(weight_decay),
            schedule=schedule,
            milestones=milestones,
            augment=bool(augment),
        )
        encoder.requires_grad_(False)
        encoder.eval()
        self.attack = attack
        self.augmentation: Augmentation = (
            augmentation if augmentation is not None else SimCLRAugmentation(size=None)
        )
        self.best_epoch: int | None = None  # the (1-based) epoch whose head was kept by fit()

    # ------------------------------------------------------------------ module behaviour
    @property
    def device(self) -> torch.device:
        """The device of the encoder's (and head's) parameters."""
        return self.head.weight.device

    def train(self, mode: bool = True) -> RobustLinearProbe:
        """Set the head's mode; the frozen encoder always stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    # ------------------------------------------------------------------ training
    def learning_rate(self, epoch: int) -> float:
        """The learning rate of the (0-based) ``epoch`` under the configured schedule."""
        cfg = self.config
        if cfg.schedule == "cosine":
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
        milestones = cfg.milestones
        if milestones is None:
            milestones = tuple(round(fraction * cfg.epochs) for fraction in STEP_MILESTONES)
        return cfg.lr * STEP_GAMMA ** sum(epoch >= m for m in milestones)

    @torch.no_grad()
    def encode(
        self, images: torch.Tensor, *, batch_size: int | None = None, progress: bool = False
    ) -> torch.Tensor:
        """Frozen-encoder features of many images, in batches, without gradients.

        Args:
            images: (N, 3, H, W) uint8 in [0, 255] or float in [0, 1], on any device.
            batch_size: images per forward pass (default: ``config.batch_size``).
            progress: show a progress bar.

        Returns:
            (N, feature_dim) features on the probe's device.
        """
        size = batch_size if batch_size is not None else self.config.batch_size
        chunks = []
        starts = range(0, images.shape[0], size)
        for start in tqdm(
            starts, desc="features", unit="batch", disable=None if progress else True
        ):
            chunks.append(self.encoder(_float_batch(images[start : start + size], self.device)))
        return torch.cat(chunks)

    def fit(
        self,
        data: ImageDataset | torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        val: ImageDataset | tuple[torch.Tensor, torch.Tensor] | None = None,
        seed: int = 0,
        progress: bool = True,
        warm_start: bool = False,
        select: str = "clean",
    ) -> FitResult:
        """Train the head (clean linear evaluation, or r-LE, eq. 7, with ``adversarial=True``).

        The head is re-initialised from ``seed`` (weights N(0, 0.01^2), bias 0), so ``fit`` always
        starts afresh and the same seed gives the same result; with ``warm_start=True`` it starts
        from its current weights instead (e.g. a short r-LE from a clean probe's head, copied
        with ``probe.head.load_state_dict(clean.head.state_dict())``). ``seed`` also drives the
        shuffling, the augmentation and the PGD random starts. Afterwards the probe is in eval
        mode and ``best_epoch`` names the epoch whose head was kept.

        A probe that never learned is flagged with a
        [`ProbeNotLearningWarning`][robust_contrastive.evaluation.checks.ProbeNotLearningWarning]
        (also logged): the kept head's clean accuracy on (a seeded subset of at most 2,000 of)
        its own un-augmented training images is not above chance p, the rate of their most
        frequent class, + 0.02 (1 - p) + two standard errors ``sqrt(p (1 - p) / n)`` (0.131 for
        2,000 balanced CIFAR-10 images). Clean images are used for r-LE too. A single class is
        not checked.

        Args:
            data: an ImageDataset (uint8 images and labels), or images (N, 3, H, W) float in
                [0, 1] with ``labels``.
            labels: (N,) integer class indices in [0, num_classes) when ``data`` is a tensor.
            val: validation data, an ImageDataset or ``(images, labels)``; used only to pick the
                epoch (never for training). Never pass test data.
            seed: seed of every random draw of the run.
            progress: show progress bars.
            warm_start: start from the head's current weights instead of re-initialising it.
            select: what ``val`` scores each epoch on: ``"clean"`` accuracy, or ``"robust"``
                accuracy under the r-LE attack (l-inf PGD with this probe's ``eps``, ``alpha``
                and ``attack_steps``; one PGD run over ``val`` per epoch).

        Returns:
            A [`FitResult`][robust_contrastive.training.loop.FitResult]: ``best_epoch`` and
            ``history``, one record per epoch: ``epoch`` (1-based), ``lr``, ``loss`` (mean
            training cross-entropy), ``train_clean_acc`` (clean probe) or ``train_adv_acc``
            (r-LE: on the adversarial images trained on), ``val_clean_acc`` (with ``val``),
            ``val_adv_acc`` (with ``val`` and ``select="robust"``), ``best``, ``images_per_s``
            and ``seconds``.

        Raises:
            TypeError / ValueError: bad data or labels (non-float tensors, values outside
                [0, 1], mismatched lengths, labels outside [0, num_classes), empty data).
            NonFiniteLossError: the loss became NaN or infinite (lower ``lr``).
        """
        cfg = self.config
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__}.")
        images, targets = _as_images_and_labels(data, labels, cfg.num_classes, "data")
        val_images: torch.Tensor | None = None
        val_targets: torch.Tensor | None = None
        if val is not None:
            if isinstance(val, (tuple, list)):
                if len(val) != 2:
                    raise ValueError("val must be an ImageDataset or a tuple (images, labels).")
                val_images, val_targets = _as_images_and_labels(
                    val[0], val[1], cfg.num_classes, "val"
                )
            else:
                val_images, val_targets = _as_images_and_labels(val, None, cfg.num_classes, "val")

        device = self.device
        num_images = images.shape[0]
        batch_size = min(cfg.batch_size, num_images)
        fast = not cfg.augment and not cfg.adversarial
        order_generator = torch.Generator().manual_seed(seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start must be True or False, got {warm_start!r}.")
        if select not in SELECTIONS:
            raise ValueError(
                f"select must be one of {list(SELECTIONS)}, got {select!r}: 'robust' picks the "
                "epoch on PGD accuracy over val (for r-LE)."
            )
        if not warm_start:
            self._reset_head(seed)
        self.best_epoch = None  # until this fit has kept a head
        attack = self.attack if self.attack is not None else self._default_attack(generator)
        optimizer = torch.optim.SGD(
            self.head.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        logger.info(
            "%s linear evaluation: %d images, %d epochs of %d steps (batch %d)%s",
            "robust (r-LE)" if cfg.adversarial else "clean",
            num_images,
            cfg.epochs,
            math.ceil(num_images / batch_size),
            batch_size,
            ", on cached features" if fast else "",
        )
        features = self.encode(images, progress=progress) if fast else None
        targets = targets.to(device)
        validate = None
        if val_images is not None and val_targets is not None:
            scored_images, scored_targets = val_images, val_targets
            val_features = self.encode(val_images, progress=progress)  # the encoder is frozen

            def validate() -> dict[str, float]:
                scores = {"val_clean_acc": self._feature_accuracy(val_features, scored_targets)}
                if select == "robust":  # the r-LE attack, the same random starts every epoch
                    attack = self._default_attack(torch.Generator(device).manual_seed(seed + 1))
                    scores["val_adv_acc"] = adversarial_accuracy(
                        self,
                        scored_images,
                        scored_targets,
                        attack,
                        batch_size=min(cfg.batch_size, 512),
                    )
                return scores

        loop = TrainingLoop(
            _LinearEvaluation(self, attack, fast),
            optimizer,
            epochs=cfg.epochs,
            batch_size=batch_size,
            lr_at=lambda epoch: self.learning_rate(math.floor(epoch)),  # set once per epoch
            order_generator=order_generator,
            generator=generator,
            min_last_batch=1,
            progress=progress,
            nonfinite_hint=f"Lower lr (now {cfg.lr}).",
        )
        try:
            result = loop.run(
                (images if features is None else features, targets),
                validate=validate,
                select="val_adv_acc" if select == "robust" else "val_clean_acc",
            )
        finally:
            self.eval()
        self.best_epoch = cfg.epochs if result.best_epoch is None else result.best_epoch
        result.best_epoch = self.best_epoch
        self._warn_if_chance(images, targets, features, seed)
        return result

    def _warn_if_chance(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        features: torch.Tensor | None,
        seed: int,
    ) -> None:
        """Warn when the kept head is at chance on its own (clean) training images (see fit)."""
        n = targets.shape[0]
        pick = torch.arange(n)
        if n > CHANCE_CHECK_IMAGES:
            generator = torch.Generator().manual_seed(seed)
            pick = torch.randperm(n, generator=generator)[:CHANCE_CHECK_IMAGES].sort().values
        with torch.no_grad():
            if features is not None:
                chosen = features[pick.to(features.device)]
            else:
                chosen = self.encode(images[pick.to(images.device)], progress=False)
            labels = targets[pick.to(targets.device)]
            accuracy = self._feature_accuracy(chosen, labels)
        counts = class_counts(labels, self.config.num_classes)
        chance = majority_rate(counts)
        if sum(1 for count in counts if count) < 2:
            return  # a single class: nothing to learn, so nothing to flag
        se = math.sqrt(chance * (1 - chance) / len(labels))
        threshold = chance + CHANCE_MARGIN * (1 - chance) + 2 * se
        if accuracy <= threshold:
            message = (
                f"the linear probe is at chance: its head (epoch {self.best_epoch}) classifies "
                f"{100 * accuracy:.1f} % of {len(labels)} of its own clean training images "
                f"correctly, not above {100 * threshold:.1f} % (chance {100 * chance:.1f} %, the "
                "rate of the most frequent class, plus a margin). Either the encoder's features "
                "carry no usable class information (an untrained or collapsed encoder: try a "
                "trained one, e.g. one of robust_contrastive.list_pretrained()) or lr / epochs "
                "are too small for this data; as it stands, this probe's accuracies mean nothing."
            )
            logger.warning(message)
            warnings.warn(message, ProbeNotLearningWarning, stacklevel=3)

    def _reset_head(self, seed: int) -> None:
        """Re-initialise the head from ``seed``: weight N(0, 0.01^2), bias 0."""
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(self.head.weight.shape, generator=generator) * 0.01
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.zero_()

    def _default_attack(self, generator: torch.Generator) -> Attack:
        """r-LE's class-wise l-inf PGD against this probe, random starts from ``generator``."""
        cfg = self.config
        pgd = PGD(self, eps=cfg.eps, alpha=cfg.alpha, steps=cfg.attack_steps, norm="linf")
        return lambda images, labels: pgd.perturb(images, labels, generator)

    def _training_features(
        self,
        batch: torch.Tensor,
        targets: torch.Tensor,
        attack: Attack,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Features of one training batch: augmented, then attacked for r-LE (B, feature_dim)."""
        cfg = self.config
        if cfg.augment:
            batch = self.augmentation(batch, generator)
        if cfg.adversarial:
            batch = attack(batch, targets)
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
                raise ValueError("the attack must return a (B, 3, H, W) tensor of images.")
        with torch.no_grad():
            features: torch.Tensor = self.encoder(batch.detach())
        return features

    @torch.no_grad()
    def _feature_accuracy(self, features: torch.Tensor, targets: torch.Tensor) -> float:
        """Clean accuracy of the head on cached (N, feature_dim) features."""
        predictions = self.head(features).argmax(dim=1)
        return float((predictions == targets.to(predictions.device)).float().mean())

    # ------------------------------------------------------------------ save / load
    @classmethod
    def default_config(cls) -> ProbeConfig:
        """CIFAR-10 on the paper's ResNet18 (10 classes, 512 features), original settings."""
        return ProbeConfig(num_classes=10, feature_dim=512)
