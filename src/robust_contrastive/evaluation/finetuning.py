"""Adversarial full fine-tuning of a (RoCL) encoder with a new linear head (Table 1 of RoCL).

Table 1 of the paper compares, on CIFAR-10, supervised adversarial training from scratch ("AT",
Madry et al. 2018) with RoCL encoders fine-tuned end to end with a class-wise adversarial loss:

* ``"at"``: PGD adversarial training (Madry et al.), eq. (1) of the paper,
  ``min E[ max_{||delta|| <= eps} CE(f(x + delta), y) ]`` ("RoCL + AT");
* ``"trades"``: TRADES (Zhang et al. 2019),
  ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` with x_adv maximising the KL ("RoCL + TRADES");
* ``"at+ss"``: the AT loss plus RoCL's self-supervised loss of the same batch (eq. 3 / 6 over the
  views t(x), t'(x), t(x)^adv with the instance-wise adversary of eq. 4), through the pretrained
  projector ("RoCL + AT + SS").

[`finetune`][robust_contrastive.evaluation.finetuning.finetune] with ``encoder=None`` trains a fresh
encoder from scratch with the same budget: the supervised "AT" (or "TRADES") baseline rows of the
table.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..attacks import PGD, InstanceWiseAttack
from ..attacks._steps import (
    NORMS,
    ascent_step,
    check_budget,
    check_generator,
    check_images,
    project,
)
from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..hub import resolve_model_folder
from ..layout import (
    CHECKPOINT_DIR,
    FINETUNE_CONFIG_NAME,
    LAST_CHECKPOINT,
    METRICS_NAME,
    PROJECTOR_DIR,
)
from ..losses import nt_xent_loss
from ..models import ProjectionHead, RoCLEncoder
from ..models.encoder import _ARCHS
from ..models.pretrained import (
    CONFIG_NAME,
    PretrainedMixin,
    load_state_dict_strict,
    read_pretrained_config,
)
from ..modes import eval_mode
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.config import check_device
from ..training.trainer import NonFiniteLossError, resolve_device

__all__ = [
    "AUGMENTATIONS",
    "FINETUNE_METHODS",
    "LR_SCHEDULES",
    "FinetuneConfig",
    "FinetuneResult",
    "RobustClassifier",
    "RobustClassifierConfig",
    "TradesAttack",
    "finetune",
    "finetune_lr",
    "random_crop_flip",
]

logger = logging.getLogger(__name__)

FINETUNE_METHODS: tuple[str, ...] = ("at", "trades", "at+ss")
AUGMENTATIONS: tuple[str, ...] = ("crop_flip", "none")
LR_SCHEDULES: tuple[str, ...] = ("step", "cosine", "constant")
ENCODER_DIR = "encoder"
TRADES_START_STD = 0.001  # TRADES' random start: x + 0.001 * N(0, 1) (Zhang et al.'s code)
STEP_MILESTONES = (0.5, 0.75)  # "step" schedule: lr x 0.1 after 50 % and 75 % of the epochs
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")

_RC = TypeVar("_RC", bound="RobustClassifier")


# ---------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class RobustClassifierConfig:
    """The head's part of a
    [`RobustClassifier`][robust_contrastive.evaluation.finetuning.RobustClassifier] (stored in its
    ``config.json``).
    """

    feature_dim: int = 512  # the encoder's feature_dim (512 for resnet18 at width 64)
    num_classes: int = 10  # outputs of the linear head (CIFAR-10)


class RobustClassifier(PretrainedMixin):
    """An encoder f_theta followed by a linear head: the fine-tuned classifier of Table 1.

    Args:
        encoder: the encoder (fine-tuned together with the head by
            [`finetune`][robust_contrastive.evaluation.finetuning.finetune]).
        num_classes: number of classes K of the linear head.

    Shapes:
        ``forward(images)``: images (B, 3, H, W) float in [0, 1] -> logits (B, K).

    Saving:
        ``save_pretrained(dir)`` writes the head's ``config.json`` and ``model.safetensors`` at
        ``dir`` and the encoder (its own ``save_pretrained`` layout) at ``dir/encoder``.
        ``from_pretrained(dir)`` rebuilds both strictly and returns the model in eval mode.
    """

    model_type: ClassVar[str] = "rocl-robust-classifier"

    def __init__(self, encoder: RoCLEncoder, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(encoder, RoCLEncoder):
            raise TypeError(
                f"encoder must be a RoCLEncoder, got {type(encoder).__name__}: load one with "
                "RoCLEncoder.from_pretrained(run_dir)."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.config = RobustClassifierConfig(
            feature_dim=encoder.feature_dim, num_classes=num_classes
        )
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)

    @classmethod
    def default_config(cls) -> RobustClassifierConfig:
        return RobustClassifierConfig()

    @classmethod
    def from_config(cls: type[_RC], config: dict[str, Any]) -> _RC:
        """Not available: the head's config does not describe the encoder.

        Raises:
            TypeError: always; build ``RobustClassifier(encoder, num_classes)`` or load a saved
                model with
                [`from_pretrained`][robust_contrastive.evaluation.finetuning.RobustClassifier.from_pretrained].
        """
        raise TypeError(
            "a RobustClassifier is not built from its config alone: use "
            "RobustClassifier(encoder, num_classes) or RobustClassifier.from_pretrained(dir)."
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classify images.

        Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            (B, num_classes) logits.
        """
        logits: torch.Tensor = self.head(self.encoder(images))
        return logits

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

    @classmethod
    def from_pretrained(
        cls: type[_RC],
        directory: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> _RC:
        """Rebuild a classifier saved by
        [`save_pretrained`][robust_contrastive.models.PretrainedMixin.save_pretrained]; weights
        matched strictly.

        Returns:
            The classifier in eval mode.

        Raises:
            FileNotFoundError: the folder, its ``config.json`` / ``model.safetensors`` or its
                ``encoder`` sub-folder is missing.
            ValueError: the folder holds another model type, an unknown format or config field,
                weights that do not match (missing, unexpected or mis-shaped keys), or a head
                whose ``feature_dim`` differs from the saved encoder's.
        """
        folder = resolve_model_folder(
            directory,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        config_path = folder / CONFIG_NAME
        raw, weights_path = read_pretrained_config(folder, cls.model_type, cls.__name__)
        known = {f.name for f in dataclasses.fields(RobustClassifierConfig)}
        if set(raw) != known:
            raise ValueError(
                f"{config_path} must hold exactly the fields {sorted(known)} (besides model_type "
                f"and format_version), got {sorted(raw)}."
            )
        encoder = RoCLEncoder.from_pretrained(folder / ENCODER_DIR, map_location=map_location)
        if raw["feature_dim"] != encoder.feature_dim:
            raise ValueError(
                f"{config_path} has feature_dim {raw['feature_dim']} but the encoder in "
                f"{folder / ENCODER_DIR} outputs {encoder.feature_dim} features: the folder "
                "mixes files of different models."
            )
        model = cls(encoder, num_classes=raw["num_classes"])
        state = load_file(str(weights_path), device=str(map_location))
        load_state_dict_strict(model.head, state, source=str(weights_path))
        model.to(map_location)
        model.eval()
        return model


# ------------------------------------------------------------------------ the TRADES attack
class TradesAttack:
    """The inner maximisation of TRADES (Zhang et al. 2019): PGD on the KL divergence.

    From a small Gaussian start x + 0.001 * N(0, I) (projected onto the ball), each step ascends

        KL( softmax(f(x)) || softmax(f(x_adv)) )

    with the projected step shared by every attack of the library:

        x_adv <- Pi_{B(x, eps)}( x_adv + alpha * sign(grad KL) )     (l-inf; l2 / l1 analogous)

    The clean distribution softmax(f(x)) is computed once per call. No labels are needed.

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, K) logits.
        eps: radius of the ball (8/255 l-inf in TRADES and RoCL).
        alpha: step size (2/255 here; TRADES' CIFAR code uses 0.007).
        steps: number of steps (10 for training).
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.

    Call:
        ``attack(images, generator=None)``: images (B, 3, H, W) float in [0, 1] -> adversarial
        images (B, 3, H, W), detached, within eps of ``images`` and in [0, 1]. The model runs in
        eval mode and gets its previous mode back; parameters' ``.grad`` are left untouched
        (gradients come from ``torch.autograd.grad``).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        norm: str = "linf",
    ) -> None:
        check_budget(eps, alpha, steps, norm)
        self.model = model
        self.eps = float(eps)
        self.alpha = float(alpha)
        self.steps = steps
        self.norm = norm

    def __repr__(self) -> str:
        return (
            f"TradesAttack(eps={self.eps:.5g}, alpha={self.alpha:.5g}, steps={self.steps}, "
            f"norm={self.norm!r})"
        )

    def kl(self, images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        """Per-image KL(softmax(f(images)) || softmax(f(adversarial))): (B,), with the model in
        its current mode and gradients on."""
        log_p_clean = F.log_softmax(self.model(images), dim=1)  # (B, K)
        log_p_adv = F.log_softmax(self.model(adversarial), dim=1)  # (B, K)
        return (log_p_clean.exp() * (log_p_clean - log_p_adv)).sum(dim=1)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_images(images, "images")
        check_generator(generator, images.device)
        return self.perturb(images, generator)

    def perturb(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The attack without input validation (no host synchronisation), for trusted callers
        such as the fine-tuning loop. Same contract as ``__call__``."""
        if self.eps == 0:
            return images.detach().clone()
        with eval_mode(self.model):
            images = images.detach()
            with torch.no_grad():
                p_clean = F.softmax(self.model(images), dim=1)  # (B, K), fixed for every step
            noise = torch.randn(
                images.shape, generator=generator, device=images.device, dtype=images.dtype
            )
            x_adv = project(images + TRADES_START_STD * noise, images, self.eps, self.norm)
            with torch.enable_grad():
                for _ in range(self.steps):
                    x_adv.requires_grad_(True)
                    log_p_adv = F.log_softmax(self.model(x_adv), dim=1)  # (B, K)
                    loss = F.kl_div(log_p_adv, p_clean, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, x_adv)
                    x_adv = ascent_step(x_adv.detach(), grad, self.alpha, self.norm)
                    x_adv = project(x_adv, images, self.eps, self.norm)
            return x_adv.detach()


# ------------------------------------------------------------------------- augmentation
def random_crop_flip(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The standard adversarial-training augmentation, batched on the images' device.

    Equivalent to torchvision's ``RandomCrop(size, padding=padding)`` (zero padding) followed by
    ``RandomHorizontalFlip()``, with each image's own offsets and flip drawn in one batched call.

    Args:
        images: (B, 3, H, W) uint8 in [0, 255] or float in [0, 1].
        padding: zero padding on every side before the H x W crop (4 for CIFAR).
        generator: optional generator on the images' device, for reproducible draws.

    Returns:
        (B, 3, H, W) float in [0, 1], on the images' device.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}.")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    batch, channels, height, width = x.shape
    device = x.device
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5  # (B,)
    rows = top[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = left[:, None] + torch.arange(width, device=device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # reversed columns = crop, then flip
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    c = torch.arange(channels, device=device).view(1, channels, 1, 1)  # (C,) -> (1, C, 1, 1)
    # (B, H) -> (B, 1, H, 1) and (B, W) -> (B, 1, 1, W): broadcast gather to (B, C, H, W)
    return padded[b, c, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]


# ------------------------------------------------------------------------------- config
@dataclass
class FinetuneConfig:
    """A flat fine-tuning configuration; defaults are the standard CIFAR-10 adversarial-training
    settings (Madry et al. 2018; Rice et al. 2020): SGD lr 0.1, momentum 0.9, weight decay 5e-4,
    batch 128, PGD-10 with eps 8/255 and step 2/255, random crop + flip.

    The paper gives no fine-tuning schedule: ``epochs`` and ``lr_schedule`` are this library's
    choice, and the from-scratch baseline (``finetune(None, ...)``) gets the same budget.
    """

    # objective
    method: str = "at"  # "at" (PGD-AT, Madry), "trades" (Zhang et al.), "at+ss" (RoCL+AT+SS)
    trades_beta: float = 6.0  # TRADES' beta (1/lambda): 6 for CIFAR-10 in Zhang et al.
    ss_weight: float = 1.0  # weight of RoCL's self-supervised loss in "at+ss"
    temperature: float = 0.5  # tau of NT-Xent in the SS loss and its attack (as TrainConfig)
    # class-wise training attack (PGD-10 for "at"; the KL attack for "trades")
    eps: float = 8 / 255  # l-inf radius, the paper's threat model
    alpha: float = 2 / 255  # step size, the standard PGD-AT step for eps 8/255
    attack_steps: int = 10  # PGD-10, the standard training attack
    attack_norm: str = "linf"  # "linf" (the paper's Table 1), "l2" or "l1"
    # instance-wise attack of the SS term (eq. 4), as TrainConfig's
    ss_eps: float = 8 / 255  # RoCL's training radius
    ss_alpha: float = 0.007  # RoCL's training step
    ss_attack_steps: int = 7  # RoCL's training steps
    # model selection on validation data (only when finetune(..., val=...) is given)
    val_attack_steps: int = 10  # PGD-10 (eps, alpha, norm as above) on the validation split
    # optimisation
    epochs: int = 100  # one budget for fine-tuning and the scratch baseline (Madry-AT: ~200)
    batch_size: int = 128  # the standard AT batch
    lr: float = 0.1  # SGD learning rate of standard AT
    lr_schedule: str = "step"  # "step": x0.1 at 50 % and 75 % of epochs; "cosine"; "constant"
    momentum: float = 0.9  # SGD momentum of standard AT
    weight_decay: float = 5e-4  # SGD weight decay of standard AT (all parameters)
    # data
    augment: str = "crop_flip"  # random 4-pixel-padded crop + horizontal flip; "none"
    crop_padding: int = 4  # zero padding of the random crop (4 for CIFAR's 32 x 32)
    # run
    seed: int = 0  # seeds head / scratch init, data order, augmentation and attack starts
    device: str = "auto"  # "auto" = cuda if available else cpu; or any torch device string
    progress: bool = True  # tqdm progress bar
    checkpoint_every: int = 10  # epochs between checkpoints (and one at the end)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        if self.method not in FINETUNE_METHODS:
            raise ValueError(
                f"method must be one of {list(FINETUNE_METHODS)}, got {self.method!r}."
            )
        for name in ("epochs", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (BatchNorm statistics, contrastive negatives), got "
                f"{self.batch_size}."
            )
        for name in ("attack_steps", "ss_attack_steps", "val_attack_steps", "crop_padding", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in ("eps", "ss_eps", "trades_beta", "ss_weight", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        for name in ("alpha", "ss_alpha", "lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        if self.attack_norm not in NORMS:
            raise ValueError(f"attack_norm must be one of {list(NORMS)}, got {self.attack_norm!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}."
            )
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {self.augment!r}.")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        """Rebuild from ``to_dict`` output, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown FinetuneConfig fields {unknown}; known: {sorted(known)}.")
        return cls(**values)

    def differences(self, other: FinetuneConfig, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def finetune_lr(epoch: float, config: FinetuneConfig) -> float:
    """Learning rate at a (fractional) epoch.

    ``"step"``: ``lr``, times 0.1 from 50 % and again from 75 % of the epochs (the usual
    adversarial-training staircase, applied at epoch boundaries); ``"cosine"``: cosine decay from
    ``lr`` to 0, evaluated every step; ``"constant"``: ``lr``.
    """
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        progress = min(max(epoch / config.epochs, 0.0), 1.0)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    whole = math.floor(epoch)
    drops = sum(whole >= m * config.epochs for m in STEP_MILESTONES)
    return config.lr * 0.1**drops


# ------------------------------------------------------------------------------ one step
class _Objective:
    """The loss of one batch for the configured method (models in their current mode)."""

    def __init__(
        self, model: RobustClassifier, projector: ProjectionHead | None, config: FinetuneConfig
    ) -> None:
        self.model = model
        self.projector = projector
        self.config = config
        self.pgd = PGD(
            model, config.eps, config.alpha, config.attack_steps, config.attack_norm, True
        )
        self.trades = TradesAttack(
            model, config.eps, config.alpha, config.attack_steps, config.attack_norm
        )
        self.views = SimCLRAugmentation(size=None)  # RoCL's views, at the input size
        self.instance = (
            None
            if projector is None
            else InstanceWiseAttack(
                model.encoder,
                projector,
                eps=config.ss_eps,
                alpha=config.ss_alpha,
                steps=config.ss_attack_steps,
                norm=config.attack_norm,
                temperature=config.temperature,
            )
        )

    def __call__(
        self, batch: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch.

        Args:
            batch: (B, 3, H, W) uint8 on the training device.
            labels: (B,) int64 class indices.
            generator: generator on the training device (augmentation, attack starts).

        Returns:
            ``(loss, stats)``: the scalar loss to minimise and a detached (5,) tensor
            ``(loss, cross-entropy term, second term before weighting, clean correct, adversarial
            correct)``; the second term is TRADES' KL or the SS loss (0 for "at").
        """
        cfg = self.config
        model = self.model
        if cfg.augment == "crop_flip":
            x = random_crop_flip(batch, cfg.crop_padding, generator)  # (B, 3, H, W) in [0, 1]
        else:
            x = batch.float() / 255.0
        # clean accuracy as at inference: eval mode, BatchNorm statistics untouched
        with eval_mode(model), torch.no_grad():
            clean_logits = model(x)  # (B, K)
        if cfg.method == "trades":
            x_adv = self.trades.perturb(x, generator)
            logits = model(x)  # (B, K), separate forwards as in TRADES' code (BatchNorm)
            logits_adv = model(x_adv)
            ce = F.cross_entropy(logits, labels)
            second = F.kl_div(
                F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean"
            )
            loss = ce + cfg.trades_beta * second
        else:
            x_adv = self.pgd.perturb(x, labels, generator)  # eq. (1)
            logits_adv = model(x_adv)
            ce = F.cross_entropy(logits_adv, labels)
            loss, second = ce, torch.zeros((), device=x.device)
            if cfg.method == "at+ss":
                second = self._self_supervised(batch, generator)
                loss = ce + cfg.ss_weight * second
        clean_correct = (clean_logits.argmax(dim=1) == labels).sum().float()
        adv_correct = (logits_adv.detach().argmax(dim=1) == labels).sum().float()
        stats = torch.stack((loss.detach(), ce.detach(), second.detach()))
        return loss, torch.cat((stats, torch.stack((clean_correct, adv_correct))))

    def _self_supervised(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """RoCL's loss of the batch: NT-Xent over (t(x), t'(x), t(x)^adv), eq. (3) / (6)."""
        if self.instance is None or self.projector is None:
            raise ValueError('method="at+ss" needs a projector.')
        t1 = self.views(batch, generator)  # t(x): (B, 3, H, W) in [0, 1]
        t2 = self.views(batch, generator)  # t'(x)
        adv = self.instance.perturb(t1, t2, generator)  # t(x)^adv, eq. (4)
        features = self.model.encoder(torch.cat((t1, t2, adv)))  # (3B, F)
        z1, z2, z_adv = self.projector(features).chunk(3)  # (3B, D) -> 3 x (B, D)
        return nt_xent_loss(z1, z2, z_adv, temperature=self.config.temperature)


# ------------------------------------------------------------------------------ the loop
@dataclass
class FinetuneResult:
    """What [`finetune`][robust_contrastive.evaluation.finetuning.finetune] returns."""

    model: RobustClassifier  # the fine-tuned classifier (best on validation if val given), eval
    history: list[dict[str, Any]]  # one metrics dict per epoch
    out_dir: Path | None  # where the model, metrics and checkpoints were written
    projector: ProjectionHead | None = None  # the jointly trained projector ("at+ss"), eval
    best_epoch: int | None = None  # the epoch whose weights were kept (None without val)


def finetune(
    encoder: RoCLEncoder | None,
    data: ImageDataset,
    config: FinetuneConfig,
    *,
    projector: ProjectionHead | None = None,
    num_classes: int | None = None,
    val: ImageDataset | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    arch: str = "resnet18",
    width: int = 64,
    resume: bool = False,
) -> FinetuneResult:
    """Adversarially fine-tune ``encoder`` and a new linear head end to end (Table 1 of RoCL).

    Per step: a batch x (augmented with ``config.augment``) with labels y and

    * ``"at"``: ``CE(f(PGD(x)), y)`` (eq. 1, Madry et al.);
    * ``"trades"``: ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``, x_adv from
      [`TradesAttack`][robust_contrastive.evaluation.finetuning.TradesAttack] (Zhang et al.);
    * ``"at+ss"``: ``CE(f(PGD(x)), y) + ss_weight * L_RoCL``, with L_RoCL the NT-Xent loss over
      two SimCLR views t(x), t'(x) of the batch and the instance-wise adversary t(x)^adv (eq. 4,
      eq. 6 without the 1/lambda regulariser), through ``projector``, trained jointly;

    minimised by SGD with momentum and weight decay on every parameter.

    Args:
        encoder: the pretrained encoder (copied: the argument is not modified), or ``None`` to
            train a fresh ``RoCLEncoder(arch, width)`` from scratch, seeded by ``config.seed``,
            with the same budget: the supervised AT / TRADES baselines of Table 1.
        data: labelled training images, (N, 3, H, W) uint8.
        config: the settings (defaults: standard AT on CIFAR-10).
        projector: the pretrained projector g_pi (copied), required by ``"at+ss"``.
        num_classes: outputs of the head; default ``len(data.classes)``.
        val: labelled validation images for model selection: after every epoch the model is
            evaluated with PGD (``val_attack_steps`` steps, ``eps``, ``alpha``, ``attack_norm``,
            fixed random starts), and the weights with the best PGD accuracy are returned. Use a
            split of the training data (``train_val_split``), never the test set.
        out_dir: folder for the final classifier (``RobustClassifier.save_pretrained`` layout),
            the projector in ``out_dir/projector`` ("at+ss"), ``finetune_config.json``,
            ``metrics.jsonl`` (one JSON line per epoch) and atomic checkpoints in
            ``out_dir/checkpoints``. ``None`` keeps everything in memory.
        arch: architecture of the scratch encoder (only with ``encoder=None``).
        width: width of the scratch encoder (only with ``encoder=None``).
        resume: continue from ``out_dir/checkpoints/last.pt`` if it exists; the result equals
            an uninterrupted run with the same config.

    Returns:
        A [`FinetuneResult`][robust_contrastive.evaluation.finetuning.FinetuneResult]; its history
        holds per epoch ``loss``, ``loss_ce``, ``loss_second`` (TRADES' KL or the SS loss,
        unweighted; 0 for "at"), ``clean_acc`` (an extra no-grad eval-mode forward of each clean
        augmented batch before its update: the accuracy at inference, which lags while BatchNorm's
        running statistics settle in the first few dozen steps), ``adv_acc`` (the training forward
        on the training attack's images, train mode), ``lr``, ``images_per_s``, ``seconds`` and,
        with ``val``, ``val_clean_acc``, ``val_adv_acc`` and ``best``.

    Raises:
        ValueError: bad config, data, labels out of ``[0, num_classes)``, a missing or
            mismatched projector, or a checkpoint made with a different config.
        TypeError: ``encoder``, ``data`` or ``projector`` of the wrong type.
        NonFiniteLossError: a loss became NaN or infinite (nothing is saved after it).
    """
    if not isinstance(config, FinetuneConfig):
        raise TypeError(
            f"config must be a FinetuneConfig, got {type(config).__name__}: build it with "
            "FinetuneConfig(...) (or FinetuneConfig.from_dict(values))."
        )
    config.validate()
    classes = _check_data(data, "data", num_classes)
    num_classes = classes if num_classes is None else num_classes
    if val is not None:
        _check_data(val, "val", num_classes)
    folder = Path(out_dir) if out_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs the out_dir holding the run's checkpoints.")
    device = resolve_device(config.device)
    model, projector = _build_models(encoder, projector, num_classes, config, arch, width)
    model.to(device)
    if projector is not None:
        projector.to(device)
    params = [*model.parameters(), *(projector.parameters() if projector is not None else [])]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    objective = _Objective(model, projector, config)
    val_attack = PGD(model, config.eps, config.alpha, config.val_attack_steps, config.attack_norm)
    # Data order on the CPU; augmentation and attack starts on the training device.
    order_generator = torch.Generator().manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    images, labels = data.images.to(device), data.labels.to(device)
    num_images, batch_size = images.shape[0], config.batch_size
    # Every full batch, plus a last smaller one unless it holds a single image (BatchNorm).
    steps = num_images // batch_size + (1 if num_images % batch_size >= 2 else 0)
    run = _RunState(model, projector, optimizer, order_generator, generator)
    if resume and folder is not None:
        _resume(run, folder, config, num_classes)
    _write_config(folder, config)

    # Counts every step of the run (a resumed run starts at its done steps); the description
    # names the epoch running, from 1 as metrics.jsonl counts them.
    bar = tqdm(
        total=steps * config.epochs,
        initial=steps * run.epoch,
        desc=f"finetune {config.method} epoch {min(run.epoch + 1, config.epochs)}/{config.epochs}",
        unit="step",
        disable=not config.progress,
    )
    with bar:
        while run.epoch < config.epochs:
            epoch = run.epoch
            bar.set_description(
                f"finetune {config.method} epoch {epoch + 1}/{config.epochs}", refresh=False
            )
            model.train()
            if projector is not None:
                projector.train()
            order = torch.randperm(num_images, generator=order_generator).to(device)
            stats = torch.zeros(steps, 5, device=device)  # per-step (loss, ce, 2nd, correct x2)
            start = time.perf_counter()
            lr = config.lr
            for step in range(steps):
                lr = finetune_lr(epoch + step / steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                index = order[step * batch_size : (step + 1) * batch_size]
                loss, stats[step] = objective(images[index], labels[index], generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                bar.update(1)
                if (step + 1) % 10 == 0 or step + 1 == steps:  # one host sync per 10 steps
                    _check_finite(stats[: step + 1], epoch, folder)
                    bar.set_postfix(loss=f"{float(stats[step, 0]):.4f}")
            seconds = time.perf_counter() - start
            seen = min(steps * batch_size, num_images)
            sums = stats.sum(dim=0).tolist()
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": sums[0] / steps,
                "loss_ce": sums[1] / steps,
                "loss_second": sums[2] / steps,
                "clean_acc": sums[3] / seen,
                "adv_acc": sums[4] / seen,
                "lr": lr,
                "images_per_s": seen / seconds,
                "seconds": seconds,
            }
            if val is not None:
                val_clean, val_adv = _evaluate(model, val, val_attack, batch_size, config.seed)
                record.update(val_clean_acc=val_clean, val_adv_acc=val_adv, best=False)
                if run.best is None or val_adv > run.best["val_adv_acc"]:
                    record["best"] = True
                    run.best = {
                        "epoch": epoch + 1,
                        "val_adv_acc": val_adv,
                        "model": _cpu_copy(model.state_dict()),
                        "projector": (
                            None if projector is None else _cpu_copy(projector.state_dict())
                        ),
                    }
            run.history.append(record)
            run.epoch = epoch + 1
            logger.info(json.dumps(record))
            _write_metrics(folder, run.history)
            due = run.epoch % config.checkpoint_every == 0 or run.epoch == config.epochs
            if due and folder is not None:
                checkpoint = folder / CHECKPOINT_DIR / LAST_CHECKPOINT
                save_checkpoint(run.state_dict(config, num_classes), checkpoint)
                logger.info("checkpoint at epoch %d written to %s", run.epoch, folder)

    best_epoch = None
    if run.best is not None:
        best_epoch = int(run.best["epoch"])
        model.load_state_dict(run.best["model"])
        if projector is not None and run.best["projector"] is not None:
            projector.load_state_dict(run.best["projector"])
        logger.info("kept the weights of epoch %d (best validation PGD accuracy)", best_epoch)
    model.eval()
    if projector is not None:
        projector.eval()
    if folder is not None:
        model.save_pretrained(folder)
        if projector is not None:
            projector.save_pretrained(folder / PROJECTOR_DIR)
        logger.info("saved the fine-tuned classifier to %s", folder)
    return FinetuneResult(model, list(run.history), folder, projector, best_epoch)


# ------------------------------------------------------------------------------ helpers
@dataclass
class _RunState:
    """What a checkpoint holds besides the config: weights, optimiser, RNGs, history, best."""

    model: RobustClassifier
    projector: ProjectionHead | None
    optimizer: torch.optim.Optimizer
    order_generator: torch.Generator  # data order, on the CPU
    generator: torch.Generator  # augmentation and attack starts, on the training device
    epoch: int = 0  # completed epochs
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: dict[str, Any] | None = None  # epoch, val_adv_acc, model and projector weights

    def state_dict(self, config: FinetuneConfig, num_classes: int) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "num_classes": num_classes,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "projector": None if self.projector is None else self.projector.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self.order_generator.get_state(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "best": self.best,
        }


def _check_data(data: ImageDataset, name: str, num_classes: int | None) -> int:
    """Validate a labelled set; return its number of classes (``len(data.classes)``)."""
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"{name} must be an ImageDataset (images + labels), got {type(data).__name__}: load "
            "it with robust_contrastive.load_dataset(...)."
        )
    if len(data) < 2:
        raise ValueError(f"{name} has {len(data)} image(s): fine-tuning needs at least 2.")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    limit = len(data.classes) if num_classes is None else num_classes
    if limit < 2:
        raise ValueError(
            f"{name} has {limit} class(es): a classifier needs at least 2 (pass num_classes)."
        )
    low, high = int(data.labels.min()), int(data.labels.max())
    if low < 0 or high >= limit:
        raise ValueError(
            f"{name} labels must lie in [0, {limit}) for num_classes={limit}, got values in "
            f"[{low}, {high}]: pass num_classes={high + 1} or fix the labels."
        )
    return len(data.classes)


def _build_models(
    encoder: RoCLEncoder | None,
    projector: ProjectionHead | None,
    num_classes: int,
    config: FinetuneConfig,
    arch: str,
    width: int,
) -> tuple[RobustClassifier, ProjectionHead | None]:
    """Copy (or create, seeded) the encoder, add a seeded head, copy the projector if used."""
    if encoder is not None and not isinstance(encoder, RoCLEncoder):
        raise TypeError(
            f"encoder must be a RoCLEncoder or None (train from scratch), got "
            f"{type(encoder).__name__}."
        )
    if encoder is None and arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(_ARCHS)}.")
    if projector is not None and not isinstance(projector, ProjectionHead):
        raise TypeError(f"projector must be a ProjectionHead, got {type(projector).__name__}.")
    if config.method == "at+ss" and projector is None:
        raise ValueError(
            'method="at+ss" needs the projector of the RoCL pretraining: pass '
            "projector=ProjectionHead.from_pretrained(run_dir / 'projector') (or "
            'TrainResult.projector), or use method="at".'
        )
    if config.method != "at+ss" and projector is not None:
        logger.warning("projector ignored: only method='at+ss' uses it")
        projector = None
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
        torch.manual_seed(config.seed)
        base = RoCLEncoder(arch, width=width) if encoder is None else copy.deepcopy(encoder)
        model = RobustClassifier(base, num_classes)
    if projector is not None:
        if projector.config.in_dim != model.encoder.feature_dim:
            raise ValueError(
                f"the projector takes {projector.config.in_dim} features but the encoder gives "
                f"{model.encoder.feature_dim}: pass the projector pretrained with this encoder."
            )
        projector = copy.deepcopy(projector)
    return model, projector


@torch.no_grad()
def _evaluate(
    model: RobustClassifier, data: ImageDataset, attack: PGD, batch_size: int, seed: int
) -> tuple[float, float]:
    """Clean and PGD accuracy of ``model`` on ``data`` in eval mode, with fixed random starts
    (a generator seeded by ``seed``) so that epochs are compared on the same attack."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed + 2)
    clean = adversarial = torch.zeros((), device=device)
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            x = data.images[start : start + batch_size].to(device).float() / 255.0
            y = data.labels[start : start + batch_size].to(device)
            clean = clean + (model(x).argmax(dim=1) == y).sum()
            x_adv = attack.perturb(x, y, generator)
            adversarial = adversarial + (model(x_adv).argmax(dim=1) == y).sum()
    return float(clean) / len(data), float(adversarial) / len(data)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _check_finite(stats: torch.Tensor, epoch: int, folder: Path | None) -> None:
    finite = torch.isfinite(stats[:, :3]).all(dim=1)
    if not bool(finite.all()):
        step = int((~finite).nonzero()[0, 0])
        values = [float(v) for v in stats[step, :3]]
        saved = None
        path = None if folder is None else folder / CHECKPOINT_DIR / LAST_CHECKPOINT
        if path is not None and path.exists():
            saved = int(load_checkpoint(path)["epoch"])
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1}: (total, cross-entropy, "
            f"second term) = {values}. Fine-tuning stopped; the last checkpoint (epoch {saved}) "
            "is intact. Try a lower lr."
        )


def _resume(run: _RunState, folder: Path, config: FinetuneConfig, num_classes: int) -> None:
    path = folder / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not path.exists():
        logger.info("no checkpoint at %s: starting from scratch", path)
        return
    state = load_checkpoint(path)
    saved = FinetuneConfig.from_dict(state["config"])
    diff = config.differences(saved, ignore=RESUMABLE_CHANGES)
    if state["num_classes"] != num_classes:
        diff["num_classes"] = (num_classes, state["num_classes"])
    if diff:
        details = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"cannot resume from {path}: the config differs ({details}). Use the run's original "
            "settings, or a new out_dir for a new run."
        )
    load_state_dict_strict(run.model, state["model"], source=str(path))
    if run.projector is not None:
        load_state_dict_strict(run.projector, state["projector"], source=str(path))
    run.optimizer.load_state_dict(state["optimizer"])
    run.order_generator.set_state(state["order_generator"])
    run.generator.set_state(state["generator"])
    run.history = list(state["history"])
    run.best = state["best"]
    run.epoch = int(state["epoch"])
    logger.info("resumed from %s at epoch %d", path, run.epoch)


def _write_config(folder: Path | None, config: FinetuneConfig) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / FINETUNE_CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")


def _write_metrics(folder: Path | None, history: list[dict[str, Any]]) -> None:
    if folder is None:
        return
    atomic_write_text(folder / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))
