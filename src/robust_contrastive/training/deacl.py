"""DeACL (Zhang et al., ECCV 2022), stage 2: a student distilled from a frozen standard-SSL
teacher against its own adversary, as an [`Objective`][robust_contrastive.training.loop.Objective]
on the shared [`TrainingLoop`][robust_contrastive.training.loop.TrainingLoop].

Stage 1 is a standard SSL encoder: SimCLR from this library
([`RoCLTrainer`][robust_contrastive.RoCLTrainer] with ``adversarial=False``) or the bundled
``simclr-resnet18-w16-cifar10-cpu``. Defaults follow the official code
(github.com/pantheon5100/DeACL, ``bash_files/DeACL_cifar10_resnet18.sh`` and
``solo/methods/mocov2_distillation_AT.py``); see the DeACL page of the documentation for the
equations and where the library departs from that code.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.distillation import FeatureDistanceAttack
from ..augment import random_crop_flip
from ..data import ImageDataset
from ..models import RoCLEncoder
from ..validation import check_training_images
from .deacl_config import DEACL_CONFIG_NAME, RESUMABLE_CHANGES, DeACLConfig
from .loop import FitResult, Objective, TrainingLoop
from .trainer import resolve_device

__all__ = [
    "DEACL_CONFIG_NAME",
    "DeACLConfig",
    "DeACLObjective",
    "DeACLResult",
    "deacl_loss",
    "deacl_lr",
    "train_deacl",
]

logger = logging.getLogger(__name__)


def deacl_lr(epoch: float, config: DeACLConfig) -> float:
    """The learning rate at a (fractional) epoch: pl_bolts' ``LinearWarmupCosineAnnealingLR``
    stepped once per epoch, as solo-learn's ``warmup_cosine`` scheduler.

    With ``e = floor(epoch)``, W = ``warmup_epochs``, E = ``epochs``: a linear warm-up
    ``warmup_start_lr + e (lr - warmup_start_lr) / (W - 1)`` for e < W (it reaches ``lr`` at
    e = W - 1, as pl_bolts), then ``min_lr + (lr - min_lr) (1 + cos(pi (e - W) / (E - W))) / 2``.
    """
    e = math.floor(epoch)
    warmup = config.warmup_epochs
    if e < warmup:
        return config.warmup_start_lr + e * (config.lr - config.warmup_start_lr) / max(
            1, warmup - 1
        )
    progress = (e - warmup) / max(1, config.epochs - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def deacl_loss(
    student_clean: torch.Tensor,
    student_adv: torch.Tensor,
    teacher_clean: torch.Tensor,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeACL's stage-2 loss (the official code's ``adv_loss``):

        L = -mean_b CS(f_S(x)_b, f_T(x)_b) - weight * mean_b CS(f_S(x')_b, f_S(x)_b)

    with CS the cosine similarity; the gradient flows through both student terms (nothing
    detached but the teacher).

    Args:
        student_clean: f_S(x), (B, D).
        student_adv: f_S(x'), (B, D), x' the adversarial images.
        teacher_clean: f_T(x), (B, D), the frozen teacher's features (pseudo-targets).
        weight: lambda (2 in the official run).

    Returns:
        ``(loss, distill, adversarial)``: the total, ``-mean CS(f_S(x), f_T(x))`` and
        ``-mean CS(f_S(x'), f_S(x))`` before weighting; each in [-1, 1] (the total in
        [-1 - weight, 1 + weight]).
    """
    distill = -F.cosine_similarity(student_clean, teacher_clean, dim=1).mean()
    adversarial = -F.cosine_similarity(student_adv, student_clean, dim=1).mean()
    return distill + weight * adversarial, distill, adversarial


class DeACLObjective(Objective):
    """DeACL's stage 2: one batch's loss of the student against the frozen teacher.

    Per step: x = RandomCrop(padding) + flip of the batch; the teacher's features f_T(x) (eval
    mode, no gradient); x' =
    [`FeatureDistanceAttack`][robust_contrastive.attacks.FeatureDistanceAttack] (PGD away from
    f_T(x), the student in eval mode); one training-mode forward of the student
    on [x, x'] (BatchNorm statistics over both halves, as the official code); then
    [`deacl_loss`][robust_contrastive.training.deacl.deacl_loss].

    Args:
        student: the encoder trained, (B, 3, H, W) in [0, 1] -> (B, D).
        teacher: the frozen teacher, same input and output shapes; used, not trained (not in
            ``modules``); kept in eval mode with ``requires_grad`` off.
        config: the settings.
    """

    name = "DeACL"
    metrics = ("loss", "loss_distill", "loss_adv")

    def __init__(self, student: nn.Module, teacher: nn.Module, config: DeACLConfig) -> None:
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.config = config
        self.attack = FeatureDistanceAttack(
            student,
            eps=config.eps,
            alpha=config.alpha,
            steps=config.attack_steps,
            norm=config.attack_norm,
            random_start=config.attack_random_start,
        )

    def modules(self) -> dict[str, nn.Module | None]:
        """The trained module: ``student`` (the teacher is not trained)."""
        return {"student": self.student}

    def train(self) -> None:
        """The student in training mode, the teacher in eval mode (as the official code)."""
        super().train()
        self.teacher.eval()

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of ``batch[0]`` (images (B, 3, H, W) uint8 or float in [0, 1]); ``generator``
        draws the crops, flips and attack starts.

        Returns:
            ``(loss, stats)``: the scalar and the detached ``(loss, loss_distill, loss_adv)``.
        """
        x = random_crop_flip(batch[0], self.config.crop_padding, generator)  # (B, 3, H, W)
        with torch.no_grad():
            target = self.teacher(x)  # f_T(x): (B, D), the pseudo-targets
        x_adv = self.attack.perturb(x, target, generator)  # x': (B, 3, H, W) in [0, 1]
        clean, adv = self.student(torch.cat((x, x_adv))).chunk(2)  # (2B, D) -> 2 x (B, D)
        loss, distill, adversarial = deacl_loss(clean, adv, target, self.config.weight)
        return loss, torch.stack((loss, distill, adversarial)).detach()


@dataclass(kw_only=True)
class DeACLResult(FitResult):
    """What [`train_deacl`][robust_contrastive.training.deacl.train_deacl] returns: the
    [`FitResult`][robust_contrastive.training.loop.FitResult] and the trained student."""

    encoder: RoCLEncoder  # the trained student, in eval mode


def _fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, bytes): ties a checkpoint to its teacher."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def train_deacl(
    teacher: RoCLEncoder | str | os.PathLike[str],
    data: ImageDataset | torch.Tensor,
    config: DeACLConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
) -> DeACLResult:
    """Train a DeACL student (stage 2) from a standard-SSL teacher (stage 1).

    Args:
        teacher: the stage-1 encoder (a SimCLR [`RoCLEncoder`][robust_contrastive.RoCLEncoder]),
            or a registered name / folder for ``RoCLEncoder.from_pretrained``. It is copied: the
            argument's weights and modes are not modified.
        data: training images (labels, if any, are ignored): an
            [`ImageDataset`][robust_contrastive.ImageDataset] or (N, 3, H, W) uint8 / float in
            [0, 1].
        config: the settings (defaults: the official CIFAR-10 run).
        out_dir: folder for the student (``save_pretrained`` layout:
            ``RoCLEncoder.from_pretrained(out_dir)`` loads it), ``deacl_config.json``,
            ``metrics.jsonl`` and atomic checkpoints in ``out_dir/checkpoints``; ``None`` keeps
            everything in memory.
        resume: continue from ``out_dir/checkpoints/last.pt`` if it exists (the same result as
            an uninterrupted run; the teacher must be the same).

    Returns:
        A [`DeACLResult`][robust_contrastive.training.deacl.DeACLResult]: per epoch ``loss``,
        ``loss_distill``, ``loss_adv`` (unweighted), ``lr``, ``images_per_s``, ``seconds``; and
        the student encoder.

    Raises:
        TypeError: a config, teacher or data of the wrong type.
        ValueError: bad settings or data, ``resume`` without ``out_dir``, or a checkpoint of
            another config or teacher.
        NonFiniteLossError: a loss became NaN or infinite.
    """
    if not isinstance(config, DeACLConfig):
        raise TypeError(
            f"config must be a DeACLConfig, got {type(config).__name__}: build it with "
            "DeACLConfig(...) (or DeACLConfig.from_dict(values))."
        )
    config.validate()
    if isinstance(teacher, (str, os.PathLike)):
        teacher = RoCLEncoder.from_pretrained(teacher)
    if not isinstance(teacher, RoCLEncoder):
        raise TypeError(
            f"teacher must be a RoCLEncoder or a model name / folder, got "
            f"{type(teacher).__name__}: e.g. 'simclr-resnet18-w16-cifar10-cpu'."
        )
    images = check_training_images(data, "train_deacl()")
    folder = Path(out_dir) if out_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs the out_dir holding the run's checkpoints.")
    device = resolve_device(config.device)
    frozen = copy.deepcopy(teacher).to(device)
    if config.student_init == "teacher":  # the official code loads the teacher's weights
        student = copy.deepcopy(teacher)
    else:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
            torch.manual_seed(config.seed)
            student = RoCLEncoder(**vars(teacher.config))
    student.requires_grad_(True).to(device)
    objective = DeACLObjective(student, frozen, config)
    optimizer = torch.optim.SGD(
        student.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    loop = TrainingLoop(
        objective,
        optimizer,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr_at=lambda epoch: deacl_lr(epoch, config),
        # Data order on the CPU; augmentation and attack starts on the training device.
        order_generator=torch.Generator().manual_seed(config.seed),
        generator=torch.Generator(device=device).manual_seed(config.seed + 1),
        drop_last=images.shape[0] >= config.batch_size,  # solo-learn drops the last batch
        out_dir=folder,
        config=config.to_dict(),
        config_name=DEACL_CONFIG_NAME,
        resumable=RESUMABLE_CHANGES,
        extra={"teacher_sha256": _fingerprint(frozen)},
        normalize_config=lambda saved: DeACLConfig.from_dict(saved).to_dict(),
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
    )
    result = loop.run((images.to(device),), resume=resume)
    student.eval()
    if folder is not None:
        student.save_pretrained(folder)
        logger.info("saved the DeACL student encoder to %s", folder)
    return DeACLResult(
        history=result.history, out_dir=folder, best_epoch=result.best_epoch, encoder=student
    )
