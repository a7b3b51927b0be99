"""``TrainConfig``: every setting of a RoCL / SimCLR run, defaults = the paper's."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# Torch-free at import (the command line reads the defaults below for its --help): torch and the
# attacks are imported where a config is validated.
from .._names import (
    ARCHS,
    ATTACK_LOSSES,
    ATTACK_SOURCES,
    NORMS,
    PRECISIONS,
    REGULARIZER_FORWARDS,
)


def check_device(device: object) -> None:
    """Raise ``ValueError`` unless ``device`` is ``"auto"`` or a string ``torch.device`` accepts."""
    if not isinstance(device, str) or not device:
        raise ValueError(
            f"device must be 'auto' or a torch device string such as 'cpu', 'cuda' or 'cuda:1', "
            f"got {device!r}."
        )
    if device != "auto":
        import torch

        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"device {device!r} is not a torch device: use 'auto', 'cpu', 'cuda', 'cuda:1', "
                "'mps'..."
            ) from err


@dataclass
class TrainConfig:
    """A flat training configuration. Defaults reproduce RoCL on CIFAR-10 (paper + original code).

    ``adversarial=False`` turns the same loop into plain SimCLR.
    """

    # model
    arch: str = "resnet18"  # the paper's encoder (resnet34 / resnet50 also available)
    width: int = 64  # channels of the first stage; 64 = paper, 16 = CPU-sized
    projection_hidden_dim: int = 2048  # projector Linear(F, 2048) - ReLU - Linear(2048, 128)
    projection_dim: int = 128  # latent z of the contrastive loss
    # objective
    adversarial: bool = True  # RoCL; False = SimCLR (no attack, two views)
    temperature: float = 0.5  # tau of NT-Xent (eq. 3)
    reg_lambda: float = 256.0  # eq. (6): the second term is weighted 1/reg_lambda (original code)
    regularizer_forward: str = "separate"  # "separate": own forward of (adv, t'(x)) as the
    # original; "shared": reuse the 3-view forward (cheaper, BatchNorm statistics differ)
    # instance-wise attack (eq. 4)
    eps: float = 8 / 255  # l-inf radius of the training attack
    alpha: float = 0.007  # attack step size
    attack_steps: int = 7  # PGD steps of the training attack
    attack_norm: str = "linf"  # "linf" or "l2"
    attack_loss: str = "contrastive"  # Table 7 ablation: contrastive, mse, cosine, l1
    attack_random_start: bool = True  # uniform start in the ball
    attack_source: str = "augmented"  # the image perturbed (Table 5): "augmented" = t(x), as
    # the original code; "original" = x itself (resized to image_size). Target: t'(x) either way
    # optimisation
    epochs: int = 1000  # the paper trains 1000 epochs
    batch_size: int = 256  # per process (the paper: 256 per GPU on 2 GPUs)
    lr: float = 0.1  # base learning rate, warmed up to lr * lr_warmup_multiplier
    lr_warmup_multiplier: float = 15.0  # GradualWarmupScheduler multiplier of the original
    warmup_epochs: int = 10  # linear warm-up length, then cosine decay to 0
    momentum: float = 0.9  # SGD momentum inside LARS
    weight_decay: float = 1e-6  # SGD weight decay inside LARS
    lars: bool = True  # wrap SGD in LARS (trust coefficient below); False = plain SGD
    trust_coefficient: float = 1e-3  # LARS trust coefficient (torchlars' default, as used)
    grad_clip: float | None = None  # optional max gradient norm (None = off, as the paper)
    # data and augmentation
    image_size: int = 32  # RandomResizedCrop output size (32 for CIFAR)
    drop_last: bool = True  # keep every step's batch full (contrastive negatives)
    # run
    seed: int = 0  # seeds model init, data order, augmentation and attack starts
    device: str = "auto"  # "auto" = cuda if available else cpu; or any torch device string
    precision: str = "fp32"  # "bf16" = bfloat16 autocast (GPUs)
    channels_last: bool = False  # channels_last memory format (GPUs; on CPUs oneDNN is faster
    # with it too, but torch 2.14.1's CPU conv backward crashes on 4-channel layers: width >= 8)
    attack_fold_batchnorm: bool = True  # attack on a copy of the encoder with its eval-mode
    # BatchNorms folded into the convolutions: same adversary up to float rounding, faster
    compile: bool = False  # torch.compile the training forward and the attack's encoder
    # (GPUs; compiled lazily at the first step, each new batch shape compiles once more)
    sync_batchnorm: bool = False  # torch.distributed runs only: BatchNorm statistics over
    # every process's batch (SyncBatchNorm, CUDA only; the original converts its encoder), so
    # N processes x B images normalise like one batch of N*B; off = per-process statistics
    # (no extra communication). No effect on one process
    checkpoint_every: int = 10  # epochs between checkpoints (and one at the end)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        from ..attacks._steps import check_budget

        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}.")
        positive_ints = ("width", "projection_hidden_dim", "projection_dim", "epochs", "batch_size")
        for name in (*positive_ints, "checkpoint_every", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2: the other images are the negatives.")
        for name in ("temperature", "reg_lambda", "lr", "lr_warmup_multiplier"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int):
            raise ValueError(f"warmup_epochs must be an integer, got {self.warmup_epochs!r}.")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number, got {self.weight_decay!r}.")
        if self.grad_clip is not None and not math.isfinite(self.grad_clip):
            raise ValueError(f"grad_clip must be finite or None, got {self.grad_clip}.")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        if self.weight_decay < 0 or self.trust_coefficient <= 0:
            raise ValueError("weight_decay must be >= 0 and trust_coefficient > 0.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}.")
        if self.attack_norm not in NORMS:
            raise ValueError(f"attack_norm must be one of {list(NORMS)}, got {self.attack_norm!r}.")
        if self.attack_loss not in ATTACK_LOSSES:
            raise ValueError(
                f"attack_loss must be one of {list(ATTACK_LOSSES)}, got {self.attack_loss!r}."
            )
        check_budget(self.eps, self.alpha, self.attack_steps, self.attack_norm)
        if self.attack_source not in ATTACK_SOURCES:
            raise ValueError(
                f"attack_source must be one of {list(ATTACK_SOURCES)}, got {self.attack_source!r}."
            )
        if self.regularizer_forward not in REGULARIZER_FORWARDS:
            raise ValueError(
                f"regularizer_forward must be one of {list(REGULARIZER_FORWARDS)}, got "
                f"{self.regularizer_forward!r}."
            )
        for name in ("channels_last", "attack_fold_batchnorm", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.channels_last and self.width < 8:
            raise ValueError(
                f"channels_last=True needs width >= 8, got width={self.width}: torch 2.14's CPU "
                "convolution backward crashes on channels_last tensors with fewer than 8 "
                "channels. Use a wider encoder or channels_last=False."
            )
        if not isinstance(self.sync_batchnorm, bool):
            raise ValueError(f"sync_batchnorm must be True or False, got {self.sync_batchnorm!r}.")
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict`` output, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}.")
        return cls(**values)

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}
