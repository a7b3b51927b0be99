"""Adversarial full fine-tuning of a (RoCL) encoder with a new linear head (Table 1 of RoCL).

Table 1 compares, on CIFAR-10, supervised adversarial training from scratch ("AT", Madry et al.
2018) with RoCL encoders fine-tuned end to end by AT, TRADES (Zhang et al. 2019) or AT plus RoCL's
self-supervised loss ("AT+SS"): [`finetune`][robust_contrastive.evaluation.finetuning.finetune]
trains both, on the one training loop, through the
[`AdversarialFinetuning`][robust_contrastive.evaluation.finetuning.AdversarialFinetuning]
objective.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._names import NORMS
from ..attacks import PGD, InstanceWiseAttack, TradesAttack
from ..augment import SimCLRAugmentation, random_crop_flip
from ..data import ImageDataset
from ..layout import (
    FINETUNE_CONFIG_NAME,
    PROJECTOR_DIR,
)
from ..losses import nt_xent_loss
from ..models import ProjectionHead, RoCLEncoder
from ..models.classifier import RobustClassifier, RobustClassifierConfig
from ..models.encoder import _ARCHS
from ..modes import eval_mode
from ..training.config import FlatConfig, check_device, check_milestones
from ..training.loop import FitResult, Objective, TrainingLoop
from ..training.trainer import resolve_device
from .probe import accuracy, adversarial_accuracy

__all__ = [
    "AUGMENTATIONS",
    "FINETUNE_METHODS",
    "LR_SCHEDULES",
    "AdversarialFinetuning",
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
STEP_MILESTONES = (0.5, 0.75)  # "step" schedule: lr x 0.1 after 50 % and 75 % of the epochs
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")


# ------------------------------------------------------------------------------- config
@dataclass
class FinetuneConfig(FlatConfig):
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
    milestones: tuple[int, ...] | None = None  # "step" only: x0.1 from these 0-based epochs
    # instead of 50 % and 75 % (e.g. 15, 20: the RobustSSL benchmark's); None = the fractions
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

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        self.check_fields(
            positive_ints=("epochs", "batch_size", "checkpoint_every"),
            counts=("attack_steps", "ss_attack_steps", "val_attack_steps", "crop_padding", "seed"),
            positive=("alpha", "ss_alpha", "lr", "temperature"),
            non_negative=("eps", "ss_eps", "trades_beta", "ss_weight", "weight_decay"),
            choices=(
                ("method", FINETUNE_METHODS),
                ("attack_norm", NORMS),
                ("lr_schedule", LR_SCHEDULES),
                ("augment", AUGMENTATIONS),
            ),
        )
        if self.milestones is not None:
            self.milestones = check_milestones(self.milestones)  # a JSON list read back: a tuple
            if self.lr_schedule != "step":
                raise ValueError(
                    f"milestones apply to lr_schedule='step' only, got {self.lr_schedule!r}."
                )
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (BatchNorm statistics, contrastive negatives), got "
                f"{self.batch_size}."
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        check_device(self.device)


def finetune_lr(epoch: float, config: FinetuneConfig) -> float:
    """Learning rate at a (fractional) epoch.

    ``"step"``: ``lr``, times 0.1 from 50 % and again from 75 % of the epochs (the usual
    adversarial-training staircase, applied at epoch boundaries), or from each of
    ``config.milestones`` (0-based epochs) when given; ``"cosine"``: cosine decay from
    ``lr`` to 0, evaluated every step; ``"constant"``: ``lr``.
    """
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        progress = min(max(epoch / config.epochs, 0.0), 1.0)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    whole = math.floor(epoch)
    if config.milestones is not None:
        return config.lr * 0.1 ** sum(whole >= m for m in config.milestones)
    drops = sum(whole >= m * config.epochs for m in STEP_MILESTONES)
    return config.lr * 0.1**drops


# ------------------------------------------------------------------------------ one step
class AdversarialFinetuning(Objective):
    """Adversarial fine-tuning ("at", "trades" or "at+ss") as an
    [`Objective`][robust_contrastive.training.loop.Objective]: the loss of one labelled batch
    (models in their current mode), see
    [`finetune`][robust_contrastive.evaluation.finetuning.finetune].

    Args:
        model: the classifier trained end to end.
        projector: the pretrained projector trained with it ("at+ss"), else None.
        config: the settings (``method`` and the attacks').
    """

    def __init__(
        self, model: RobustClassifier, projector: ProjectionHead | None, config: FinetuneConfig
    ) -> None:
        self.name = f"finetune {config.method}"
        second = {"trades": "loss_kl", "at+ss": "loss_ss"}.get(config.method)
        self.metrics = (
            "loss",
            "loss_ce",
            *((second,) if second else ()),
            "train_clean_acc",
            "train_adv_acc",
        )
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

    def modules(self) -> dict[str, nn.Module | None]:
        """``model`` (the classifier) and ``projector`` (None unless "at+ss")."""
        return {"model": self.model, "projector": self.projector}

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch: ``batch = (images (B, 3, H, W) uint8, labels (B,) int64)`` on the
        training device; ``generator`` draws the augmentation and the attacks' starts.

        Returns:
            ``(loss, stats)``: the scalar loss and a detached tensor of ``metrics``: the loss,
            its cross-entropy term, TRADES' KL or the SS loss before weighting (not for "at"),
            and the fractions of the batch classified correctly clean and attacked.
        """
        images, labels = batch
        cfg = self.config
        model = self.model
        if cfg.augment == "crop_flip":
            x = random_crop_flip(images, cfg.crop_padding, generator)  # (B, 3, H, W) in [0, 1]
        else:
            x = images.float() / 255.0
        # clean accuracy as at inference: eval mode, BatchNorm statistics untouched
        with eval_mode(model), torch.no_grad():
            clean_logits = model(x)  # (B, K)
        terms: tuple[torch.Tensor, ...]  # the statistics' loss terms
        if cfg.method == "trades":
            x_adv = self.trades.perturb(x, generator=generator)
            logits = model(x)  # (B, K), separate forwards as in TRADES' code (BatchNorm)
            logits_adv = model(x_adv)
            ce = F.cross_entropy(logits, labels)
            second = F.kl_div(
                F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean"
            )
            loss = ce + cfg.trades_beta * second
            terms = (loss, ce, second)
        else:
            x_adv = self.pgd.perturb(x, labels, generator)  # eq. (1)
            logits_adv = model(x_adv)
            ce = F.cross_entropy(logits_adv, labels)
            loss = ce
            terms = (loss, ce)
            if cfg.method == "at+ss":
                second = self._self_supervised(images, generator)
                loss = ce + cfg.ss_weight * second
                terms = (loss, ce, second)
        clean_correct = (clean_logits.argmax(dim=1) == labels).float().mean()
        adv_correct = (logits_adv.detach().argmax(dim=1) == labels).float().mean()
        return loss, torch.stack((*(t.detach() for t in terms), clean_correct, adv_correct))

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
@dataclass(kw_only=True)
class FinetuneResult(FitResult):
    """What [`finetune`][robust_contrastive.evaluation.finetuning.finetune] returns: the
    [`FitResult`][robust_contrastive.training.loop.FitResult] (``best_epoch``: None without
    ``val``) and the trained models."""

    model: RobustClassifier  # the fine-tuned classifier (best on validation if val given), eval
    projector: ProjectionHead | None = None  # the jointly trained projector ("at+ss"), eval


def finetune(
    encoder: RoCLEncoder | None,
    data: ImageDataset,
    config: FinetuneConfig,
    *,
    projector: ProjectionHead | None = None,
    head: nn.Linear | None = None,
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
      [`TradesAttack`][robust_contrastive.attacks.TradesAttack] (Zhang et al.);
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
        head: the linear head to start from (its weights are copied), ``nn.Linear(feature_dim,
            num_classes)``: e.g. a linear probe's, as DynACL++'s LP-AFT
            ([`train_lpaft`][robust_contrastive.training.lpaft.train_lpaft]); default ``None``: a
            new head, seeded by ``config.seed``.
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
        holds per epoch ``loss``, ``loss_ce``, ``loss_kl`` ("trades") or ``loss_ss`` ("at+ss"),
        unweighted, ``train_clean_acc`` (an extra no-grad eval-mode forward of each clean
        augmented batch before its update: the accuracy at inference, which lags while BatchNorm's
        running statistics settle in the first few dozen steps), ``train_adv_acc`` (the training
        forward on the training attack's images, train mode), ``lr``, ``images_per_s``,
        ``seconds`` and, with ``val``, ``val_clean_acc``, ``val_adv_acc`` and ``best``.

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
    model, projector = _build_models(encoder, projector, num_classes, config, arch, width, head)
    model.to(device)
    if projector is not None:
        projector.to(device)
    params = [*model.parameters(), *(projector.parameters() if projector is not None else [])]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    loop = TrainingLoop(
        AdversarialFinetuning(model, projector, config),
        optimizer,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr_at=lambda epoch: finetune_lr(epoch, config),
        # Data order on the CPU; augmentation and attack starts on the training device.
        order_generator=torch.Generator().manual_seed(config.seed),
        generator=torch.Generator(device=device).manual_seed(config.seed + 1),
        out_dir=folder,
        config=config.to_dict(),
        config_name=FINETUNE_CONFIG_NAME,
        resumable=RESUMABLE_CHANGES,
        extra={"num_classes": num_classes},
        normalize_config=lambda saved: FinetuneConfig.from_dict(saved).to_dict(),
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
    )
    validate = None
    if val is not None:
        val_attack = PGD(
            model, config.eps, config.alpha, config.val_attack_steps, config.attack_norm
        )

        def validate() -> dict[str, float]:
            # clean accuracy, and PGD accuracy with the same random starts every epoch
            generator = torch.Generator(device).manual_seed(config.seed + 2)
            return {
                "val_clean_acc": accuracy(model, val, batch_size=config.batch_size),
                "val_adv_acc": adversarial_accuracy(
                    model,
                    val.images,
                    val.labels,
                    lambda x, y: val_attack.perturb(x, y, generator),
                    batch_size=config.batch_size,
                ),
            }

    images, labels = data.images.to(device), data.labels.to(device)
    result = loop.run((images, labels), resume=resume, validate=validate, select="val_adv_acc")
    model.eval()
    if projector is not None:
        projector.eval()
    if folder is not None:
        model.save_pretrained(folder)
        if projector is not None:
            projector.save_pretrained(folder / PROJECTOR_DIR)
        logger.info("saved the fine-tuned classifier to %s", folder)
    return FinetuneResult(
        history=result.history,
        out_dir=folder,
        best_epoch=result.best_epoch,
        model=model,
        projector=projector,
    )


# ------------------------------------------------------------------------------ helpers
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
    head: nn.Linear | None = None,
) -> tuple[RobustClassifier, ProjectionHead | None]:
    """Copy (or create, seeded) the encoder, add a seeded head (or a copy of ``head``), copy the
    projector if used."""
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
    if head is not None:
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}.")
        if tuple(head.weight.shape) != tuple(model.head.weight.shape) or head.bias is None:
            raise ValueError(
                f"head must be nn.Linear({model.encoder.feature_dim}, {num_classes}) with a bias "
                f"(the encoder's features to num_classes), got weight "
                f"{tuple(head.weight.shape)}."
            )
        with torch.no_grad():
            model.head.weight.copy_(head.weight)
            model.head.bias.copy_(head.bias)
    if projector is not None:
        if projector.config.in_dim != model.encoder.feature_dim:
            raise ValueError(
                f"the projector takes {projector.config.in_dim} features but the encoder gives "
                f"{model.encoder.feature_dim}: pass the projector pretrained with this encoder."
            )
        projector = copy.deepcopy(projector)
    return model, projector
