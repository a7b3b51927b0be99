"""ACL (Jiang et al., NeurIPS 2020), DynACL (Luo et al., ICLR 2023) and AIR (Xu et al.,
NeurIPS 2023) as one [`Objective`][robust_contrastive.training.loop.Objective] on the shared
[`TrainingLoop`][robust_contrastive.training.loop.TrainingLoop].

ACL trains an encoder with dual BatchNorm on two streams: the NT-Xent loss of two augmented
views through the clean branch, and the NT-Xent loss of their adversarial versions (PGD on that
same loss, [`PairContrastiveAttack`][robust_contrastive.attacks.PairContrastiveAttack]) through
the adversarial branch. DynACL anneals the augmentation strength and re-weights the two terms
(and, in its official code, embeds the second view with a momentum encoder); AIR adds the
standard and adversarial invariant regularisers on DynACL. Which of these run is set by
[`ACLConfig`][robust_contrastive.training.acl_config.ACLConfig]
(``ACLConfig.for_method("acl" | "dynacl" | "air")``). The saved encoder is the adversarial
branch, collapsed to a plain [`RoCLEncoder`][robust_contrastive.RoCLEncoder]. See the
ACL / DynACL / AIR page of the documentation for the equations and the departures from the
official code.
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

from ..attacks.contrastive_pair import PairContrastiveAttack
from ..augment import SimCLRAugmentation, original_view
from ..data import ImageDataset
from ..losses import nt_xent_loss
from ..models import RoCLEncoder
from ..models.dual_bn import BranchView, collapse_dual_bn, convert_dual_bn, has_dual_bn
from ..validation import check_training_images
from .acl_config import ACL_CONFIG_NAME, ACLConfig
from .loop import FitResult, Objective, TrainingLoop, steps_per_epoch
from .optim import LARS
from .trainer import resolve_device

__all__ = [
    "ACL_CONFIG_NAME",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ACLObjective",
    "ACLProjectionHead",
    "ACLResult",
    "acl_adv_weight",
    "acl_loss",
    "acl_lr",
    "acl_strength",
    "air_regularizers",
    "build_acl_models",
    "train_acl",
]

logger = logging.getLogger(__name__)

# The official models' NormalizeByChannelMeanStd (models/resnet_multi_bn.py of ACL and DynACL).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")
MIN_LAST_BATCH = 2  # the official loader keeps the last, smaller batch (NT-Xent needs 2 images)


# ---------------------------------------------------------------------- schedules
def acl_strength(epoch: int, config: ACLConfig) -> float:
    """DynACL's augmentation strength at the 0-based ``epoch``: s = 1 - floor(e / K) K / T
    (K = ``augment_period``, T = ``epochs``), the official ``reload(strength)`` every K epochs;
    1 without ``dynamic_augmentation`` (ACL). In (0, 1]."""
    if not config.dynamic_augmentation:
        return 1.0
    period = config.augment_period
    return 1.0 - (epoch // period) * period / config.epochs


def acl_adv_weight(epoch: int, config: ACLConfig) -> float:
    """w, the re-weighting of the clean (1 - w) and adversarial (1 + w) terms at the 0-based
    ``epoch``.

    - ``reweight="none"`` (ACL): 0.
    - ``"dynacl"`` (``train_DynACL.py``, with e + 1 its 1-based epoch): ``weight_adv - 1 =
      min(l floor((e + 1) / K) K / T, 1)``; it steps one epoch before the strength does.
    - ``"strength"`` (AIR's ``pretraining.py``): ``l (1 - s(e))``, s the augmentation strength
      (0 when the strength is constant).
    """
    lam = config.reweight_lambda
    if config.reweight == "dynacl":
        period = config.augment_period
        return min(lam * ((epoch + 1) // period) * period / config.epochs, 1.0)
    if config.reweight == "strength":
        return lam * (1.0 - acl_strength(epoch, config))
    return 0.0


def acl_lr(epoch: float, config: ACLConfig, steps: int) -> float:
    """The learning rate at a fractional ``epoch`` (``epoch + step / steps``): the official
    ``cosine_annealing`` warm-up + cosine to ``min_lr``, times ``lr``.

    ``lr_schedule="step"`` (ACL, AIR: a ``LambdaLR`` stepped before every step, so the j-th
    step, from 0, uses t = j + 1): with W = ``warmup_epochs`` x steps and N = ``epochs`` x
    steps, ``lr t / W`` for t < W, else ``min_lr + (lr - min_lr) (1 + cos(pi (t - W) / (N - W)))
    / 2``. ``"epoch"`` (DynACL: stepped after every epoch, so the 0-based epoch e uses t = e,
    and the first epoch trains at lr 0): the same with t, W and N counted in epochs.
    """
    if config.lr_schedule == "step":
        t = round(epoch * steps) + 1
        warmup, total = config.warmup_epochs * steps, config.epochs * steps
    else:
        t = math.floor(epoch)
        warmup, total = config.warmup_epochs, config.epochs
    if t < warmup:
        return config.lr * t / warmup
    progress = (t - warmup) / max(1, total - warmup)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------- losses
def acl_loss(
    clean: tuple[torch.Tensor, torch.Tensor],
    adv: tuple[torch.Tensor, torch.Tensor],
    *,
    adv_weight: float = 0.0,
    scale: float = 0.5,
    temperature: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ACL's dual-stream loss with DynACL's re-weighting:

        L = scale * ((1 - w) NT-Xent(z1, z2) + (1 + w) NT-Xent(z1', z2'))

    ACL: w = 0, scale = 1/2 (``(nt_xent(features) + nt_xent(features_adv)) / 2``); DynACL:
    ``(nt_xent(features) (2 - weight_adv) + nt_xent(features_adv) weight_adv) / 2`` with
    ``weight_adv = 1 + w``; AIR: scale = 1.

    Args:
        clean: the latents of the two clean views, z1 and z2, each (B, D) (clean branch).
        adv: the latents of their adversarial versions, z1' and z2', each (B, D) (adversarial
            branch).
        adv_weight: w (see [`acl_adv_weight`][robust_contrastive.training.acl.acl_adv_weight]).
        scale: the factor of both terms.
        temperature: tau of the NT-Xent (0.5).

    Returns:
        ``(loss, clean_term, adv_term)``: the total and the two NT-Xent terms before weighting
        (each >= 0, the official ``nt_xent``: the mean over the 2B anchors).
    """
    clean_term = nt_xent_loss(*clean, temperature=temperature)
    adv_term = nt_xent_loss(*adv, temperature=temperature)
    loss = scale * ((1 - adv_weight) * clean_term + (1 + adv_weight) * adv_term)
    return loss, clean_term, adv_term


def _pair_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """cos(a_k, b_k) / tau for each row k: (B, D), (B, D) -> (B,)."""
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1) / temperature


def air_regularizers(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_orig: torch.Tensor,
    z1_adv: torch.Tensor,
    z2_adv: torch.Tensor,
    *,
    temperature: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AIR's standard (SIR) and adversarial (AIR) invariant regularisers, as the official
    ``ACL_IR_Loss`` computes them.

    With s(a, b)_k = cos(a_k, b_k) / tau and softmaxes over the batch index k:

        p = softmax_k s(z1, z_o),  q = softmax_k s(z2, z_o)
        SIR = sum_k q_k (log q_k - p_k)
        P1 = softmax_k s(z1', z1) * softmax_k s(z1', z_o)
        P2 = softmax_k s(z2', z2) * softmax_k s(z2', z_o)
        AIR = sum_k P2_k (log P2_k - P1_k)

    These are the official ``F.kl_div(p, log q, log_target=True, reduction="sum")`` and
    ``F.kl_div(P1, log P2, ...)``: ``kl_div`` expects log-probabilities as its first argument
    and is given probabilities, so neither is the KL divergence of the paper (KL(q || p) would
    subtract log p_k); P1 and P2 are products of two distributions, not renormalised. The
    library follows the code, which trained the published checkpoints.

    Args:
        z1: the latents of the first clean views (clean branch), (B, D).
        z2: the latents of the second clean views (clean branch), (B, D).
        z_orig: the latents of the un-augmented images (clean branch), (B, D).
        z1_adv: the latents of the first adversarial views (adversarial branch), (B, D).
        z2_adv: the latents of the second adversarial views (adversarial branch), (B, D).
        temperature: tau (0.5).

    Returns:
        ``(sir, air)``: two scalars (sums over the batch, as the official reduction="sum").
    """
    p = F.softmax(_pair_logits(z1, z_orig, temperature), dim=0)  # (B,)
    log_q = F.log_softmax(_pair_logits(z2, z_orig, temperature), dim=0)  # (B,)
    sir = (log_q.exp() * (log_q - p)).sum()
    # log P = the sum of the two log-softmaxes: the official log(P) without its underflow to -inf
    log_p1 = F.log_softmax(_pair_logits(z1_adv, z1, temperature), dim=0) + F.log_softmax(
        _pair_logits(z1_adv, z_orig, temperature), dim=0
    )  # (B,)
    log_p2 = F.log_softmax(_pair_logits(z2_adv, z2, temperature), dim=0) + F.log_softmax(
        _pair_logits(z2_adv, z_orig, temperature), dim=0
    )  # (B,)
    air = (log_p2.exp() * (log_p2 - log_p1.exp())).sum()
    return sir, air


# ---------------------------------------------------------------------- models
class ACLProjectionHead(nn.Module):
    """ACL's projection head (``proj_head`` of ``models/resnet_multi_bn.py`` with its default
    ``twoLayerProj=False``, which DynACL and AIR keep): ``Linear(F, F) - BatchNorm1d - ReLU -
    Linear(F, F, bias=False) - BatchNorm1d - ReLU - Linear(F, F, bias=False) - BatchNorm1d``,
    F the encoder's feature dimension; the official key names (``fc1``, ``bn1``, ..., ``fc3``,
    ``bn3``). Its BatchNorms become dual with
    [`convert_dual_bn`][robust_contrastive.models.dual_bn.convert_dual_bn].

    Shapes:
        ``forward(features)``: (B, F) -> (B, F).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}.")
        self.fc1 = nn.Linear(dim, dim)
        self.bn1 = nn.BatchNorm1d(dim)
        self.fc2 = nn.Linear(dim, dim, bias=False)
        self.bn2 = nn.BatchNorm1d(dim)
        self.fc3 = nn.Linear(dim, dim, bias=False)
        self.bn3 = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.fc1(x)))
        x = F.relu(self.bn2(self.fc2(x)))
        out: torch.Tensor = self.bn3(self.fc3(x))
        return out


# ---------------------------------------------------------------------- the objective
class ACLObjective(Objective):
    """ACL / DynACL / AIR: the loss of one batch.

    Per step, with s the epoch's augmentation strength and w its re-weighting (set in
    ``start_epoch``):

    1. two views t1(x), t2(x) of SimCLR's augmentation at strength s (crop scale
       (1 - 0.9 s, 1), jitter 0.4 s / 0.4 s / 0.4 s / 0.1 s with probability 0.8 s, grayscale
       with probability 0.2 s, flip 0.5);
    2. their adversarial versions by
       [`PairContrastiveAttack`][robust_contrastive.attacks.PairContrastiveAttack] through the
       adversarial branch (eval mode);
    3. training-mode forwards, as the official order: the adversarial pair through the
       adversarial branch, the clean pair through the clean branch (each pair one batch for
       BatchNorm), and for AIR the un-augmented images through the clean branch;
    4. [`acl_loss`][robust_contrastive.training.acl.acl_loss] plus, for AIR,
       ``sir_weight * SIR + air_weight * AIR``
       ([`air_regularizers`][robust_contrastive.training.acl.air_regularizers]).

    With ``key_momentum > 0`` (DynACL's code) the second views, clean and adversarial, go
    through a momentum copy (key encoder and projector: no gradient, updated after the
    forwards as k <- m k + (1 - m) q, parameters only; its BatchNorm statistics come from its
    own training-mode forwards).

    Args:
        encoder: the dual-BN encoder trained (converted by
            [`convert_dual_bn`][robust_contrastive.models.dual_bn.convert_dual_bn]).
        projector: the dual-BN projection head trained.
        config: the settings.
        key_encoder: the momentum copy of the encoder (given with ``key_projector``, or
            neither; required when ``config.key_momentum > 0``).
        key_projector: the momentum copy of the projector.
    """

    name = "ACL"

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        config: ACLConfig,
        key_encoder: nn.Module | None = None,
        key_projector: nn.Module | None = None,
    ) -> None:
        for what, module in (("encoder", encoder), ("projector", projector)):
            if not has_dual_bn(module):
                raise ValueError(
                    f"the {what} has no dual BatchNorm: both branches would share one set of "
                    f"statistics. Convert it with convert_dual_bn (build_acl_models does)."
                )
        if (key_encoder is None) != (key_projector is None):
            raise ValueError("give key_encoder and key_projector together (or neither).")
        if config.key_momentum > 0 and key_encoder is None:
            raise ValueError(
                "config.key_momentum > 0 needs the momentum copies key_encoder and key_projector."
            )
        self.encoder = encoder
        self.projector = projector
        self.config = config
        self.name = {"acl": "ACL", "dynacl": "DynACL", "air": "AIR"}[config.method]
        self.key_encoder = key_encoder
        self.key_projector = key_projector
        query = nn.Sequential(encoder, projector)  # z = g(f(x)), the modules shared
        self.clean = BranchView(query, "clean")
        self.adv = BranchView(query, "adv")
        self.key_clean: BranchView | None = None
        self.key_adv: BranchView | None = None
        # The momentum update's parameter pairs, listed once (the same order in both models).
        self._query_params: list[torch.Tensor] = []
        self._key_params: list[torch.Tensor] = []
        if key_encoder is not None and key_projector is not None:
            key = nn.Sequential(key_encoder, key_projector).requires_grad_(False)
            self.key_clean, self.key_adv = BranchView(key, "clean"), BranchView(key, "adv")
            query_params: list[torch.Tensor] = list(query.parameters())
            key_params: list[torch.Tensor] = list(key.parameters())
            shapes = [p.shape for p in query_params] != [p.shape for p in key_params]
            if len(query_params) != len(key_params) or shapes:
                raise ValueError(
                    "key_encoder and key_projector must be copies of encoder and projector "
                    "(the same parameters, in the same order)."
                )
            self._query_params, self._key_params = query_params, key_params
        self.attack = PairContrastiveAttack(
            self.adv,
            self.key_adv,
            eps=config.eps,
            alpha=config.alpha,
            steps=config.attack_steps,
            random_start=config.attack_random_start,
            temperature=config.temperature,
        )
        self.regularized = config.sir_weight > 0 or config.air_weight > 0
        scheduled = config.dynamic_augmentation or config.reweight != "none"
        self.metrics = (
            "loss",
            "loss_clean",
            "loss_adv",
            *(("loss_sir", "loss_air") if self.regularized else ()),
            *(("aug_strength", "adv_weight") if scheduled else ()),
        )
        self.scheduled = scheduled
        self.start_epoch(0)

    def modules(self) -> dict[str, nn.Module | None]:
        """The trained modules by checkpoint key: ``encoder``, ``projector``, and the momentum
        copies ``key_encoder`` / ``key_projector`` (``None`` without them)."""
        return {
            "encoder": self.encoder,
            "projector": self.projector,
            "key_encoder": self.key_encoder,
            "key_projector": self.key_projector,
        }

    def start_epoch(self, epoch: int) -> None:
        """Set the epoch's augmentation strength s and re-weighting w (0-based ``epoch``)."""
        cfg = self.config
        s = acl_strength(epoch, cfg)
        self.strength = s
        self.adv_weight = acl_adv_weight(epoch, cfg)
        self._schedule: torch.Tensor | None = None  # (s, w) on the device, made at the 1st step
        self.augment = SimCLRAugmentation(
            size=cfg.image_size,
            scale=(1.0 - 0.9 * s, 1.0),
            brightness=0.4 * s,
            contrast=0.4 * s,
            saturation=0.4 * s,
            hue=0.1 * s,
            jitter_p=0.8 * s,
            grayscale_p=0.2 * s,
        )

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """k <- m k + (1 - m) q over the parameters (official ``_momentum_update_encoder_k``),
        in two fused multi-tensor operations."""
        if not self._key_params:
            return
        m = self.config.key_momentum
        torch._foreach_mul_(self._key_params, m)
        torch._foreach_add_(self._key_params, self._query_params, alpha=1 - m)

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of ``batch[0]`` (images (B, 3, H, W) uint8 or float in [0, 1]); ``generator``
        draws the augmentations and the attack's start.

        Returns:
            ``(loss, stats)``: the scalar and the detached statistics named by ``metrics``.
        """
        cfg = self.config
        images = batch[0]
        t1 = self.augment(images, generator)  # (B, 3, S, S) in [0, 1]
        t2 = self.augment(images, generator)
        views = torch.cat((t1, t2))  # (2B, 3, S, S)
        adv = self.attack.perturb(views, None, generator)  # (2B, 3, S, S), both views moved
        if self.key_adv is None or self.key_clean is None:
            z1_adv, z2_adv = self.adv(adv).chunk(2)  # one BatchNorm batch of 2B, adv branch
            z1, z2 = self.clean(views).chunk(2)  # clean branch
        else:  # DynACL's code: the first views through q, the second through the key copy
            a1, a2 = adv.chunk(2)
            z1_adv = self.adv(a1)
            with torch.no_grad():
                z2_adv = self.key_adv(a2)
            z1 = self.clean(t1)
            with torch.no_grad():
                z2 = self.key_clean(t2)
            self._momentum_update()
        loss, clean_term, adv_term = acl_loss(
            (z1, z2),
            (z1_adv, z2_adv),
            adv_weight=self.adv_weight,
            scale=cfg.contrastive_scale,
            temperature=cfg.temperature,
        )
        parts = [loss, clean_term, adv_term]
        if self.regularized:
            z_orig = self.clean(original_view(images, cfg.image_size))  # (B, D), clean branch
            sir, air = air_regularizers(z1, z2, z_orig, z1_adv, z2_adv, temperature=cfg.temperature)
            loss = loss + cfg.sir_weight * sir + cfg.air_weight * air
            parts = [loss, clean_term, adv_term, sir, air]
        stats = torch.stack([p.detach() for p in parts])
        if self.scheduled:
            if self._schedule is None:  # one host-to-device copy per epoch, not per step
                values = [self.strength, self.adv_weight]
                self._schedule = torch.tensor(values, dtype=stats.dtype).to(stats.device)
            stats = torch.cat((stats, self._schedule))
        return loss, stats


@dataclass(kw_only=True)
class ACLResult(FitResult):
    """What [`train_acl`][robust_contrastive.training.acl.train_acl] returns: the
    [`FitResult`][robust_contrastive.training.loop.FitResult] and the trained models."""

    encoder: RoCLEncoder  # the adversarial branch as a plain encoder (the key encoder's with
    # key_momentum > 0), in eval mode: what is saved and evaluated
    dual_encoder: RoCLEncoder  # the trained dual-BN encoder (both branches), in eval mode
    projector: ACLProjectionHead  # the trained dual-BN projection head, in eval mode


def build_acl_models(config: ACLConfig) -> tuple[RoCLEncoder, ACLProjectionHead]:
    """The dual-BN encoder and projection head of ``config``, seeded by ``config.seed``: the
    convolutions initialised as the official ResNet (Kaiming normal, fan-out), the BatchNorms
    at weight 1 and bias 0, both branches equal."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
        torch.manual_seed(config.seed)
        encoder = RoCLEncoder(
            config.arch,
            width=config.width,
            mean=IMAGENET_MEAN if config.normalize else None,
            std=IMAGENET_STD if config.normalize else None,
        )
        for module in encoder.modules():  # the official ResNet's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        projector = ACLProjectionHead(encoder.feature_dim)
    return convert_dual_bn(encoder), convert_dual_bn(projector)


def train_acl(
    data: ImageDataset | torch.Tensor,
    config: ACLConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
) -> ACLResult:
    """Train an encoder with ACL, DynACL or AIR (``config.method`` and its settings).

    Args:
        data: training images (labels, if any, are ignored): an
            [`ImageDataset`][robust_contrastive.ImageDataset] or (N, 3, H, W) uint8 / float in
            [0, 1].
        config: the settings, e.g. ``ACLConfig.for_method("dynacl", epochs=100)``.
        out_dir: folder for the saved encoder (the adversarial branch, ``save_pretrained``
            layout: ``RoCLEncoder.from_pretrained(out_dir)`` loads it), ``acl_config.json``,
            ``metrics.jsonl`` and atomic checkpoints in ``out_dir/checkpoints`` (both branches,
            the projector, the momentum copies); ``None`` keeps everything in memory.
        resume: continue from ``out_dir/checkpoints/last.pt`` if it exists (the same result as
            an uninterrupted run).

    Returns:
        An [`ACLResult`][robust_contrastive.training.acl.ACLResult]: per epoch ``loss``,
        ``loss_clean``, ``loss_adv`` (unweighted), ``loss_sir`` / ``loss_air`` (AIR),
        ``aug_strength`` / ``adv_weight`` (DynACL, AIR), ``lr``, ``images_per_s``,
        ``seconds``; and the models.

    Raises:
        TypeError: a config or data of the wrong type.
        ValueError: bad settings or data, ``resume`` without ``out_dir``, or a checkpoint of
            another config.
        NonFiniteLossError: a loss became NaN or infinite.
    """
    if not isinstance(config, ACLConfig):
        raise TypeError(
            f"config must be an ACLConfig, got {type(config).__name__}: build it with "
            "ACLConfig.for_method('acl' | 'dynacl' | 'air', ...) or ACLConfig.from_dict(values)."
        )
    config.validate()
    images = check_training_images(data, "train_acl()")
    folder = Path(out_dir) if out_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs the out_dir holding the run's checkpoints.")
    device = resolve_device(config.device)
    encoder, projector = build_acl_models(config)
    encoder.to(device)
    projector.to(device)
    key_encoder = key_projector = None
    if config.key_momentum > 0:  # DynACL: _init_encoder_k copies the query's parameters
        key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        key_projector = copy.deepcopy(projector).requires_grad_(False)
    objective = ACLObjective(encoder, projector, config, key_encoder, key_projector)
    optimizer = LARS(
        [*encoder.parameters(), *projector.parameters()],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        trust_coefficient=config.trust_coefficient,
    )
    steps = steps_per_epoch(
        images.shape[0], config.batch_size, drop_last=False, min_last=MIN_LAST_BATCH
    )
    loop = TrainingLoop(
        objective,
        optimizer,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr_at=lambda epoch: acl_lr(epoch, config, max(1, steps)),
        # Data order on the CPU; augmentation and attack starts on the training device.
        order_generator=torch.Generator().manual_seed(config.seed),
        generator=torch.Generator(device=device).manual_seed(config.seed + 1),
        drop_last=False,  # the official DataLoader keeps the last batch
        min_last_batch=MIN_LAST_BATCH,
        out_dir=folder,
        config=config.to_dict(),
        config_name=ACL_CONFIG_NAME,
        resumable=RESUMABLE_CHANGES,
        normalize_config=lambda saved: ACLConfig.from_dict(saved).to_dict(),
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
        nonfinite_hint="Try a lower lr.",
    )
    result = loop.run((images.to(device),), resume=resume)
    for module in (encoder, projector, key_encoder, key_projector):
        if module is not None:
            module.eval()
    evaluated = key_encoder if key_encoder is not None else encoder
    # trainable like any encoder (the momentum copy's parameters were frozen for training)
    saved = collapse_dual_bn(evaluated, "adv").requires_grad_(True).eval()
    if folder is not None:
        saved.save_pretrained(folder)
        logger.info("saved the %s encoder (adversarial branch) to %s", objective.name, folder)
    return ACLResult(
        history=result.history,
        out_dir=folder,
        best_epoch=result.best_epoch,
        encoder=saved,
        dual_encoder=encoder,
        projector=projector,
    )
