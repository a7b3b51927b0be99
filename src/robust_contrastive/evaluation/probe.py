"""Linear evaluation of a frozen encoder: the clean probe and robust linear evaluation (r-LE).

A [`RobustLinearProbe`][robust_contrastive.evaluation.probe.RobustLinearProbe] is a linear layer
l_psi on top of a frozen encoder f_theta, the classifier ``l_psi(f_theta(x))`` of Section 3.3 of the
paper. Only psi is trained:

* standard linear evaluation (``adversarial=False``) trains it on clean, optionally augmented,
  images;
* robust linear evaluation (r-LE, ``adversarial=True``), eq. (7),
  ``argmin_psi E_(x,y) [max_{delta in B(x, eps)} L_CE(psi, x + delta, y)]``, trains it on
  class-wise l-inf PGD examples made against the current probe (encoder + linear layer).

The encoder is never updated: its parameters do not require gradients, it always runs in eval
mode (BatchNorm uses and keeps its running statistics) and the probe's ``train()`` leaves it
there.

[`accuracy`][robust_contrastive.evaluation.probe.accuracy] measures the clean accuracy of any
classifier.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from ..attacks._steps import check_budget, check_images, check_number
from ..attacks.classwise import PGD
from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..hub import resolve_model_folder
from ..models.encoder import RoCLEncoder
from ..models.pretrained import (
    FORMAT_VERSION,
    PretrainedMixin,
    load_state_dict_strict,
    read_pretrained_config,
)
from ..modes import eval_mode
from ..training.trainer import NonFiniteLossError
from .checks import ProbeNotLearningWarning

__all__ = ["ENCODER_DIR", "ProbeConfig", "RobustLinearProbe", "accuracy"]

logger = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
"""Sub-folder of a saved probe that holds its encoder (``RoCLEncoder.save_pretrained``)."""

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
    augment: bool = True  # train on SimCLR-augmented images (clean probe and r-LE)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer), else ``fallback``."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback


def _check_labels(labels: object, num_images: int, num_classes: int | None, name: str) -> None:
    """Validate (N,) integer class labels in [0, num_classes)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}."
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {labels.dtype}: use labels.long()."
        )
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(labels.shape)}.")
    if labels.shape[0] != num_images:
        raise ValueError(
            f"{name} has {labels.shape[0]} entries but there are {num_images} images: pass one "
            "label per image."
        )
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a minimum of {low}.")
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"{name} go up to {high} but the probe has num_classes={num_classes}: build it with "
            f"num_classes >= {high + 1} (e.g. len(dataset.classes))."
        )


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
    _check_labels(labels, images.shape[0], num_classes, f"{name} labels")
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
    _check_positive_int("batch_size", batch_size)
    data, targets = _as_images_and_labels(images, labels, None, "images")
    high = int(targets.max())  # checked against the model's outputs at the first batch
    device = _model_device(model, data.device)
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


class RobustLinearProbe(PretrainedMixin):
    """A linear classifier on a frozen encoder: clean linear evaluation or r-LE (eq. 7).

    ``forward(images) = head(encoder(images))`` maps images (B, 3, H, W) float in [0, 1] to
    logits (B, num_classes). Only ``head = nn.Linear(feature_dim, num_classes)`` is trained.

    Construction freezes the encoder in place (``requires_grad_(False)`` and eval mode); the
    probe's ``train()`` never puts it back in training mode, so BatchNorm running statistics are
    never updated. The head is put on the encoder's device and dtype.

    Training ([`fit`][robust_contrastive.evaluation.probe.RobustLinearProbe.fit]):

    * optimiser: SGD (momentum, weight decay) on the head's parameters only;
    * schedule (``schedule="step"``, the original's): lr divided by 10 after 20 %, 33 % and 67 %
      of the epochs (epochs 30, 50 and 100 of 150), set once per epoch; ``"cosine"`` decays the
      lr from ``lr`` towards 0 along a half cosine, also per epoch;
    * batches: ``min(batch_size, N)`` images, reshuffled every epoch, the last one smaller;
    * ``augment=True``: each batch is augmented with ``SimCLRAugmentation(size=None)`` (RoCL's
      augmentation; ``size=None`` keeps the input size, i.e. ``RandomResizedCrop(32)`` on
      CIFAR) or the ``augmentation`` given;
    * ``adversarial=True`` (r-LE, eq. 7): each (augmented) batch is replaced by class-wise PGD
      examples against the current probe, ``PGD(self, eps, alpha, attack_steps)`` l-inf with a
      random start, or by ``attack(images, labels)`` when an attack is given;
    * fast path (``augment=False`` and ``adversarial=False``): the encoder's features are
      computed once, in batches and without gradients, and the head trains on the cached
      features: the result equals the slow path's up to floating-point rounding;
    * model selection: with ``val``, the head of the epoch with the best validation accuracy
      (the earliest among ties) is kept; without it, the last epoch's head. ``fit(...,
      select="clean")`` scores clean accuracy (validation features are computed once: the
      encoder is frozen); ``select="robust"`` scores accuracy under the probe's own r-LE attack
      (l-inf PGD, ``eps``, ``alpha``, ``attack_steps``, the same random start every epoch), the
      choice for r-LE, whose aim is robustness. Nothing else (no test data) is used.

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
        augment: augment training images (see above).
        attack: optional replacement of the r-LE attack, called ``attack(images, labels)`` with
            images (B, 3, H, W) float in [0, 1] and labels (B,) int64 on the probe's device, and
            returning (B, 3, H', W') float images to train on. Not saved by ``save_pretrained``.
        augmentation: optional replacement of the augmentation, called
            ``augmentation(images, generator)`` -> (B, 3, H', W') float in [0, 1]. Not saved.

    Example:
        >>> probe = RobustLinearProbe(encoder, num_classes=10, epochs=150)
        >>> history = probe.fit(train_set, val=val_set, seed=0)
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
        augment: bool = True,
        attack: Attack | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, RoCLEncoder):
            raise TypeError(
                f"encoder must be a RoCLEncoder, got {type(encoder).__name__}: load one with "
                "RoCLEncoder.from_pretrained(path)."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        check_budget(eps, alpha, attack_steps, "linf")
        _check_positive_int("epochs", epochs)
        _check_positive_int("batch_size", batch_size)
        check_number("lr", lr, positive=True, example="0.1, the original's")
        check_number("momentum", momentum, positive=False, example="0.9")
        if not momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        check_number("weight_decay", weight_decay, positive=False, example="5e-4")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}.")
        if attack is not None and not callable(attack):
            raise TypeError("attack must be callable as attack(images, labels) -> images.")
        if augmentation is not None and not callable(augmentation):
            raise TypeError(
                "augmentation must be callable as augmentation(images, generator) -> images."
            )
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
            augment=bool(augment),
        )
        encoder.requires_grad_(False)
        encoder.eval()
        self.encoder = encoder
        reference = next(iter(encoder.parameters()))
        self.head = nn.Linear(
            encoder.feature_dim, num_classes, device=reference.device, dtype=reference.dtype
        )
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classify images: ``head(encoder(images))``.

        Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            (B, num_classes) logits.
        """
        logits: torch.Tensor = self.head(self.encoder(images))
        return logits

    # ------------------------------------------------------------------ training
    def learning_rate(self, epoch: int) -> float:
        """The learning rate of the (0-based) ``epoch`` under the configured schedule."""
        cfg = self.config
        if cfg.schedule == "cosine":
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
        milestones = [round(fraction * cfg.epochs) for fraction in STEP_MILESTONES]
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
    ) -> list[dict[str, Any]]:
        """Train the head (clean linear evaluation, or r-LE, eq. 7, with ``adversarial=True``).

        The head is re-initialised from ``seed`` (weights N(0, 0.01^2), bias 0), so ``fit`` always
        starts afresh and the same seed gives the same result; with ``warm_start=True`` it starts
        from its current weights instead (e.g. a short r-LE from a clean probe's head, copied
        with ``probe.head.load_state_dict(clean.head.state_dict())``). ``seed`` also drives the
        shuffling, the augmentation and the PGD random starts. Afterwards the probe is in eval
        mode and ``best_epoch`` names the epoch whose head was kept.

        A probe that never learned is flagged: after training, the kept head's clean accuracy on
        (a seeded subset of at most 2,000 of) its own training images, un-augmented, is compared
        with chance, the rate of the most frequent class among those images (1/num_classes when
        balanced, more when not: always predicting that class scores it). If it is not above
        chance + 0.02 (1 - chance) + two standard errors of that rate (``sqrt(p (1 - p) / n)``;
        0.131 for 2,000 balanced CIFAR-10 images; the margin shrinks with the room above chance,
        so a probe at 97 % on 95 %-majority data is not flagged), ``fit`` logs and raises a
        [`ProbeNotLearningWarning`][robust_contrastive.evaluation.checks.ProbeNotLearningWarning]:
        the encoder's features carry no usable class information (untrained or collapsed), or
        ``lr`` / ``epochs`` are wrong. Clean images are used for r-LE too, whose training
        accuracy on adversarial examples may legitimately be near chance. Training images of a
        single class are not checked (there is nothing to learn).

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
            One dict per epoch: ``epoch`` (1-based), ``lr``, ``loss`` (mean training
            cross-entropy), ``train_accuracy`` (on the images trained on: adversarial ones for
            r-LE), ``val_accuracy`` (clean, with ``val``), ``val_robust_accuracy`` (with ``val``
            and ``select="robust"``) and ``seconds``.

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
        steps = math.ceil(num_images / batch_size)
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
            steps,
            batch_size,
            ", on cached features" if fast else "",
        )

        features = self.encode(images, progress=progress) if fast else None
        val_features = (
            self.encode(val_images, progress=progress) if val_images is not None else None
        )
        targets = targets.to(device)
        best_accuracy = -1.0
        best_state: dict[str, torch.Tensor] | None = None
        history: list[dict[str, Any]] = []
        self.best_epoch = None
        # Counts finished epochs: "3/50" once epoch 3 (metrics' numbering, from 1) is done.
        bar = tqdm(
            total=cfg.epochs,
            desc="r-LE" if cfg.adversarial else "linear eval",
            unit="epoch",
            disable=None if progress else True,
        )
        try:
            for epoch in range(cfg.epochs):
                start_time = time.perf_counter()
                lr = self.learning_rate(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                self.train()
                order = torch.randperm(num_images, generator=order_generator)
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), dtype=torch.int64, device=device)
                for step in range(steps):
                    index = order[step * batch_size : (step + 1) * batch_size]
                    batch_targets = targets[index.to(device)]
                    if features is not None:
                        batch_features = features[index.to(device)]
                    else:
                        batch = _float_batch(images[index.to(images.device)], device)
                        batch_features = self._training_features(
                            batch, batch_targets, attack, generator
                        )
                    logits = self.head(batch_features)
                    loss = F.cross_entropy(logits, batch_targets)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    loss_sum += loss.detach() * batch_targets.shape[0]
                    correct += (logits.detach().argmax(dim=1) == batch_targets).sum()
                mean_loss = float(loss_sum) / num_images
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(
                        f"non-finite loss in epoch {epoch + 1} of the linear probe: lower lr "
                        f"(now {cfg.lr})."
                    )
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "loss": mean_loss,
                    "train_accuracy": int(correct) / num_images,
                }
                if val_features is not None and val_images is not None and val_targets is not None:
                    val_accuracy = self._feature_accuracy(val_features, val_targets)
                    record["val_accuracy"] = val_accuracy
                    if select == "robust":
                        val_accuracy = self._robust_accuracy(val_images, val_targets, seed)
                        record["val_robust_accuracy"] = val_accuracy
                    if val_accuracy > best_accuracy:
                        best_accuracy = val_accuracy
                        best_state = {
                            k: v.detach().clone() for k, v in self.head.state_dict().items()
                        }
                        self.best_epoch = epoch + 1
                record["seconds"] = time.perf_counter() - start_time
                history.append(record)
                logger.info(json.dumps(record))
                postfix = {
                    "epoch": str(epoch + 1),
                    "loss": f"{mean_loss:.4f}",
                    "acc": f"{record['train_accuracy']:.3f}",
                }
                if "val_accuracy" in record:
                    postfix["val"] = f"{record['val_accuracy']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        finally:
            bar.close()
            self.eval()
        if best_state is not None:
            self.head.load_state_dict(best_state)
            logger.info(
                "kept the head of epoch %d (best %s validation accuracy %.4f)",
                self.best_epoch,
                select,
                best_accuracy,
            )
        else:
            self.best_epoch = cfg.epochs
        self._warn_if_chance(images, targets, features, seed)
        return history

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
        counts = torch.bincount(labels.cpu(), minlength=self.config.num_classes)
        chance = float(counts.max()) / len(labels)
        if int((counts > 0).sum()) < 2:
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

        def attack(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return pgd.perturb(images, labels, generator)

        return attack

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

    def _robust_accuracy(self, images: torch.Tensor, targets: torch.Tensor, seed: int) -> float:
        """Accuracy on ``images`` (N, 3, H, W) under the r-LE attack, the same starts each call."""
        cfg = self.config
        pgd = PGD(self, eps=cfg.eps, alpha=cfg.alpha, steps=cfg.attack_steps, norm="linf")
        generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        size = min(cfg.batch_size, 512)  # the attack's activations: keep batches moderate
        correct = 0
        for start in range(0, images.shape[0], size):
            batch = _float_batch(images[start : start + size], self.device)
            batch_targets = targets[start : start + size].to(self.device)
            adversarial = pgd.perturb(batch, batch_targets, generator)
            with torch.no_grad():
                correct += int((self(adversarial).argmax(dim=1) == batch_targets).sum())
        return correct / images.shape[0]

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

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, encoder: RoCLEncoder | None = None
    ) -> RobustLinearProbe:
        """Build a probe with a freshly initialised head from a config dict and an encoder.

        Raises:
            ValueError: no encoder, unknown or missing fields, or a ``feature_dim`` that is not
                the encoder's.
        """
        if encoder is None:
            raise ValueError(
                "a RobustLinearProbe needs its encoder: pass encoder=..., or load a saved probe "
                "with RobustLinearProbe.from_pretrained(path)."
            )
        known = {f.name for f in fields(ProbeConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.model_type} config fields {unknown}; known fields: {sorted(known)}."
            )
        missing = sorted({"num_classes", "feature_dim"} - set(config))
        if missing:
            raise ValueError(f"the {cls.model_type} config lacks the fields {missing}.")
        kwargs = dict(config)
        feature_dim = kwargs.pop("feature_dim")
        if feature_dim != encoder.feature_dim:
            raise ValueError(
                f"the probe was built for {feature_dim} features but the encoder has "
                f"{encoder.feature_dim}: load the encoder that was saved with it."
            )
        num_classes = kwargs.pop("num_classes")
        adversarial = kwargs.pop("adversarial", False)
        return cls(encoder, num_classes, adversarial, **kwargs)

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The head's tensors: ``weight`` (num_classes, feature_dim) and ``bias`` (num_classes,).

        ``save_pretrained(dir)`` writes them to ``dir/model.safetensors`` with the head's
        ``config.json`` and the model card, and the encoder (its own ``save_pretrained``
        layout) to ``dir/encoder``. Every file is written atomically (temp + rename).
        """
        return dict(self.head.state_dict())

    def save_submodels(self, directory: Path) -> None:
        """Write the encoder into ``directory/encoder``."""
        self.encoder.save_pretrained(directory / ENCODER_DIR)

    def config_dict(self) -> dict[str, Any]:
        """The JSON-serialisable configuration stored in ``config.json``."""
        return {
            "model_type": self.model_type,
            "format_version": FORMAT_VERSION,
            **asdict(self.config),
        }

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> RobustLinearProbe:
        """Rebuild a probe saved by
        [`save_pretrained`][robust_contrastive.models.PretrainedMixin.save_pretrained]: encoder and
        head, loaded strictly.

        The probe is returned in eval mode, with its encoder frozen.

        Raises:
            FileNotFoundError: the folder, one of its files or the ``encoder/`` folder is missing.
            ValueError: the config is for another model type, has unknown fields or does not
                match the encoder, or the weights do not match (missing, unexpected or
                mis-shaped keys).
        """
        folder = resolve_model_folder(
            directory,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        raw, weights_path = read_pretrained_config(folder, cls.model_type, cls.__name__)
        encoder = RoCLEncoder.from_pretrained(folder / ENCODER_DIR, map_location=map_location)
        probe = cls.from_config(raw, encoder=encoder)
        state = load_file(str(weights_path), device=str(map_location))
        load_state_dict_strict(probe.head, state, source=str(weights_path))
        probe.eval()
        return probe
