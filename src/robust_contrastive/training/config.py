"""``TrainConfig``: every setting of a RoCL / SimCLR run, defaults = the paper's."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

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

# The allowed values of TrainConfig's choice fields (the command line lists them in --help).
CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS,
    "attack_norm": NORMS,
    "attack_loss": ATTACK_LOSSES,
    "attack_source": ATTACK_SOURCES,
    "precision": PRECISIONS,
    "regularizer_forward": REGULARIZER_FORWARDS,
}


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


_C = TypeVar("_C", bound="FlatConfig")


def check_milestones(values: object) -> tuple[int, ...]:
    """``values`` as a tuple of increasing non-negative epochs (a JSON list read back included),
    else a ``ValueError`` with an example."""
    if (
        not isinstance(values, (tuple, list))
        or not values
        or any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in values)
        or list(values) != sorted(set(values))
    ):
        raise ValueError(
            f"milestones must be increasing non-negative integer epochs, e.g. (15, 20), got "
            f"{values!r}."
        )
    return tuple(values)


class FlatConfig:
    """What every flat dataclass config shares: validation when built, a JSON round trip, a
    diff, its fields' checks. Subclasses define ``validate``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        values: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]
        return values

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any]) -> _C:
        """Rebuild from ``to_dict`` output, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}.")
        return cls(**values)

    def differences(self, other: FlatConfig, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}

    def check_fields(
        self,
        *,
        positive_ints: tuple[str, ...] = (),
        counts: tuple[str, ...] = (),
        positive: tuple[str, ...] = (),
        non_negative: tuple[str, ...] = (),
        flags: tuple[str, ...] = (),
        choices: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> None:
        """Raise ``ValueError`` naming the first field that is not of its kind: integers >= 1
        (``positive_ints``) or >= 0 (``counts``), finite numbers > 0 (``positive``) or >= 0
        (``non_negative``), booleans (``flags``), or one of the allowed strings (``choices``:
        ``(field, allowed)`` pairs)."""
        for names, low in ((positive_ints, 1), (counts, 0)):
            for name in names:
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    kind = "a positive" if low else "a non-negative"
                    raise ValueError(f"{name} must be {kind} integer, got {value!r}.")
        for names, strict in ((positive, True), (non_negative, False)):
            for name in names:
                value = getattr(self, name)
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not (
                    number and math.isfinite(value) and (value > 0 or (not strict and value == 0))
                ):
                    bound = "> 0" if strict else ">= 0"
                    raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}."
                )


@dataclass
class TrainConfig(FlatConfig):
    """A flat training configuration. Defaults reproduce RoCL on CIFAR-10 (paper + original code).

    ``adversarial=False`` turns the same loop into plain SimCLR. The comment beside each field
    (continued on the comment lines right below it) is also its ``robust-contrastive train
    --help`` text; a comment after a blank line heads a group of fields.
    """

    # model
    arch: str = "resnet18"  # encoder architecture; resnet18 = the paper's
    width: int = 64  # channels of the first ResNet stage; 64 = the paper's, 16 fits a CPU
    projection_hidden_dim: int = 2048  # projector hidden width: Linear(F, 2048) - ReLU -
    # Linear(2048, 128)
    projection_dim: int = 128  # projector output dimension: the latent z of the contrastive loss

    # objective
    adversarial: bool = True  # RoCL (instance-wise adversarial views); False (--no-adversarial)
    # = SimCLR (no attack, two views)
    temperature: float = 0.5  # NT-Xent temperature tau (eq. 3)
    reg_lambda: float = 256.0  # eq. (6): the regulariser is weighted 1/reg_lambda (256: the
    # original code's)
    regularizer_forward: str = "separate"  # separate = the original's own forward of (adv,
    # t'(x)); shared = reuse the 3-view forward (cheaper, other BatchNorm statistics)

    # instance-wise attack (eq. 4)
    eps: float = 8 / 255  # radius of the training attack's ball
    alpha: float = 0.007  # attack step size
    attack_steps: int = 7  # PGD steps of the training attack
    attack_norm: str = "linf"  # norm of the training attack's ball
    attack_loss: str = "contrastive"  # loss the attack ascends (Table 7 ablation);
    # contrastive = the paper's
    attack_random_start: bool = True  # uniform random start in the ball
    attack_source: str = "augmented"  # the image perturbed (Table 5): augmented = t(x), as
    # the original code; original = x itself (resized to image_size). Target: t'(x) either way

    # optimisation
    epochs: int = 1000  # training epochs (the paper trains 1000)
    batch_size: int = 256  # images per step, per process (the paper: 256 per GPU on 2 GPUs)
    lr: float = 0.1  # base learning rate, warmed up to lr * lr_warmup_multiplier
    lr_warmup_multiplier: float = 15.0  # peak lr / base lr (the original's
    # GradualWarmupScheduler multiplier)
    warmup_epochs: int = 10  # linear warm-up epochs, then cosine decay to 0
    momentum: float = 0.9  # SGD momentum (inside LARS)
    weight_decay: float = 1e-6  # SGD weight decay (inside LARS)
    lars: bool = True  # wrap SGD in LARS (trust coefficient below); False = plain SGD
    trust_coefficient: float = 1e-3  # LARS trust coefficient (torchlars' default, as used)
    grad_clip: float | None = None  # clip the gradient norm to this value (None = off, as the
    # paper)

    # data and augmentation
    image_size: int = 32  # side of the random resized crops (32 for CIFAR)
    drop_last: bool = True  # drop the last incomplete batch of an epoch: every step's batch is
    # full (contrastive negatives)

    # run
    seed: int = 0  # seed of initialisation, data order, augmentation and attack starts
    device: str = "auto"  # auto = cuda if available else cpu; or cpu, cuda, cuda:1, ...
    precision: str = "fp32"  # bf16 = bfloat16 autocast (GPUs)
    channels_last: bool = False  # channels_last memory format (faster on GPUs and on CPUs;
    # width >= 8: torch 2.14.1's CPU conv backward crashes on channels_last layers of fewer
    # than 8 channels)
    attack_fold_batchnorm: bool = True  # attack a copy of the encoder with its eval-mode
    # BatchNorms folded into the convolutions: same adversary up to float rounding, faster
    compile: bool = False  # torch.compile the training forward and the attack's encoder
    # (GPUs; compiled lazily at the first step, each new batch shape compiles once more)
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics over every process's
    # batch (SyncBatchNorm, CUDA only; the original converts its encoder), so N processes x B
    # images normalise like one batch of N*B; off = per-process statistics (no extra
    # communication). No effect on one process
    checkpoint_every: int = 10  # epochs between checkpoints (and one at the end)
    progress: bool = True  # show a (tqdm) progress bar

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        from ..validation import check_budget

        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}.")
        self.check_fields(
            positive_ints=(
                "width",
                "projection_hidden_dim",
                "projection_dim",
                "epochs",
                "batch_size",
                "checkpoint_every",
                "image_size",
            ),
            counts=("warmup_epochs",),
            positive=(
                "temperature",
                "reg_lambda",
                "lr",
                "lr_warmup_multiplier",
                "trust_coefficient",
            ),
            non_negative=("weight_decay",),
            flags=("channels_last", "attack_fold_batchnorm", "compile", "sync_batchnorm"),
            choices=tuple(CHOICES.items()),
        )
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2: the other images are the negatives.")
        if self.grad_clip is not None and not (
            math.isfinite(self.grad_clip) and self.grad_clip > 0
        ):
            raise ValueError(
                f"grad_clip must be a finite number > 0 or None, got {self.grad_clip}."
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        check_budget(self.eps, self.alpha, self.attack_steps, self.attack_norm)
        if self.channels_last and self.width < 8:
            raise ValueError(
                f"channels_last=True needs width >= 8, got width={self.width}: torch 2.14's CPU "
                "convolution backward crashes on channels_last tensors with fewer than 8 "
                "channels. Use a wider encoder or channels_last=False."
            )
        check_device(self.device)
