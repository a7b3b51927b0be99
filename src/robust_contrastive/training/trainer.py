"""``RoCLTrainer``: Algorithm 1 of RoCL (and SimCLR) with the loss of eq. (6)."""

from __future__ import annotations

import copy
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..attacks import InstanceWiseAttack
from ..augment import SimCLRAugmentation, original_view
from ..data import ImageDataset
from ..layout import PROJECTOR_DIR, TRAIN_CONFIG_NAME
from ..losses import nt_xent_loss
from ..models import ProjectionHead, RoCLEncoder
from ..validation import check_training_images
from . import distributed
from .config import TrainConfig, check_device
from .folding import FoldedEncoder
from .loop import FitResult, NonFiniteLossError, Objective, TrainingLoop
from .optim import LARS, warmup_cosine_lr

__all__ = ["NonFiniteLossError", "RoCLTrainer", "TrainResult", "resolve_device"]

logger = logging.getLogger(__name__)

# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every", "compile")


@dataclass(kw_only=True)
class TrainResult(FitResult):
    """What [`RoCLTrainer.fit`][robust_contrastive.RoCLTrainer.fit] returns: the
    [`FitResult`][robust_contrastive.training.loop.FitResult] and the trained models."""

    encoder: RoCLEncoder  # the trained encoder, in eval mode
    projector: ProjectionHead  # the trained projector, in eval mode


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to torch.device.

    In a distributed run (an initialised process group of several processes), ``"auto"`` and
    ``"cuda"`` mean ``cuda:LOCAL_RANK``: one GPU per process.
    """
    check_device(name)
    if name == "auto":
        return distributed.default_device()
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and distributed.is_distributed():
        return distributed.default_device()
    return device


class RoCLTrainer(Objective):
    """Train a RoCL (or, with ``config.adversarial=False``, a SimCLR) encoder.

    Each step (Algorithm 1): two augmentations t(x), t'(x) of the batch; the instance-wise
    adversary t(x)^adv of t(x) against t'(x) (eq. 4); then

        L_total = L_con(t(x), {t'(x), t(x)^adv}) + (1 / reg_lambda) * L_con(t(x)^adv, {t'(x)})

    (eq. 6, with the 1/lambda weighting of the original code), minimised by LARS-SGD under a
    warm-up + cosine schedule.

    Args:
        config: the run's settings (defaults = the paper's).
        out_dir: folder for the final encoder (``save_pretrained`` layout, so
            ``RoCLEncoder.from_pretrained(out_dir)`` loads it), the projector in
            ``out_dir/projector``, ``metrics.jsonl`` (one JSON line per epoch) and atomic
            checkpoints in ``out_dir/checkpoints``. ``None`` keeps everything in memory.

    Distributed training: construct and ``fit`` the trainer on every process of an initialised
    ``torch.distributed`` process group of N > 1 processes (``torchrun`` +
    [`setup_from_env`][robust_contrastive.training.distributed.setup_from_env]; the CLI does both).
    The encoder and projector are wrapped in ``DistributedDataParallel``, each process trains on its
    shard of every epoch, ``batch_size`` is per process (N * batch_size images per step), the
    negatives are gathered from every process, and rank 0 alone writes files and logs.

    The trainer is the RoCL (or SimCLR) [`Objective`][robust_contrastive.training.loop.Objective]
    of one [`TrainingLoop`][robust_contrastive.training.loop.TrainingLoop] (``self.loop``), which
    owns the data order, the schedule, the metrics, the checkpoints and resumption.

    Example:
        >>> trainer = RoCLTrainer(TrainConfig(width=16, epochs=1, batch_size=32), "runs/demo")
        >>> result = trainer.fit(load_sample())  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            hint = (
                "TrainConfig.from_dict(values)"
                if isinstance(config, dict)
                else "TrainConfig(epochs=..., ...)"
            )
            raise TypeError(
                f"config must be a TrainConfig, got {type(config).__name__}: use {hint}."
            )
        config.validate()
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = resolve_device(config.device)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
            torch.manual_seed(config.seed)
            self.encoder = RoCLEncoder(config.arch, width=config.width)
            self.projector = ProjectionHead(
                self.encoder.feature_dim, config.projection_hidden_dim, config.projection_dim
            )
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.encoder.to(self.device)
        self.encoder.to(memory_format=memory_format)
        self.projector.to(self.device)
        params = [*self.encoder.parameters(), *self.projector.parameters()]
        self.optimizer: torch.optim.Optimizer = (
            LARS(
                params,
                lr=config.lr,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
                trust_coefficient=config.trust_coefficient,
            )
            if config.lars
            else torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        )
        self.augment = SimCLRAugmentation(size=config.image_size)
        self.attack = InstanceWiseAttack(
            self.encoder,
            self.projector,
            eps=config.eps,
            alpha=config.alpha,
            steps=config.attack_steps,
            norm=config.attack_norm,
            random_start=config.attack_random_start,
            temperature=config.temperature,
            loss=config.attack_loss,
        )
        # Data order on the CPU; augmentation and attack starts on the training device.
        self.order_generator = torch.Generator().manual_seed(config.seed)
        # One stream per process (seed + 1 + rank): each rank augments and attacks its own shard.
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.generator = torch.Generator(device=self.device).manual_seed(
            config.seed + 1 + self.rank
        )
        self.name = "RoCL" if config.adversarial else "SimCLR"
        self.metrics = ("loss", "loss_contrastive", "loss_regularizer")
        self.loop = TrainingLoop(
            self,
            self.optimizer,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr_at=lambda epoch: warmup_cosine_lr(
                epoch,
                base_lr=config.lr,
                multiplier=config.lr_warmup_multiplier,
                warmup_epochs=config.warmup_epochs,
                total_epochs=config.epochs,
            ),
            order_generator=self.order_generator,
            generator=self.generator,
            drop_last=config.drop_last,
            grad_clip=config.grad_clip,
            out_dir=self.out_dir,
            config=config.to_dict(),
            config_name=TRAIN_CONFIG_NAME,
            resumable=RESUMABLE_CHANGES,
            normalize_config=lambda saved: TrainConfig.from_dict(saved).to_dict(),
            checkpoint_every=config.checkpoint_every,
            progress=config.progress,
            rank=self.rank,
            world_size=self.world_size,
            nonfinite_hint="Try a lower lr, grad_clip, or precision='fp32'.",
        )
        self._model = self._wrap_model()  # the training forward: g(f(x)), DDP-wrapped if needed
        # Built at the first step (after any wrapping): see _step_attack and _embed.
        self._folded: FoldedEncoder | None = None  # BatchNorm-folded attack encoder
        self._attack_of_step: InstanceWiseAttack | None = None  # attack on it / compiled
        self._compiled_model: nn.Module | None = None  # torch.compile(self._model)

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (always on one process): the process that writes files and logs."""
        return self.rank == 0

    def _wrap_model(self) -> nn.Module:
        """encoder + projector for the training forwards: wrapped in DistributedDataParallel
        inside a process group of several processes (after the optional SyncBatchNorm
        conversion), else the plain modules. The attack keeps the unwrapped modules."""
        model = nn.Sequential(self.encoder, self.projector)  # z = g(f(x))
        if self.world_size == 1:
            if distributed.env_world_size() > 1:
                logger.warning(
                    "WORLD_SIZE=%d but no torch.distributed process group is initialised: "
                    "every process trains alone. Call robust_contrastive.training.distributed."
                    "setup_from_env() first (the CLI does).",
                    distributed.env_world_size(),
                )
            return model
        cfg = self.config
        backend = torch.distributed.get_backend()
        if backend == "nccl" and self.device.type != "cuda":
            raise ValueError(
                f"the process group uses NCCL but device={cfg.device!r} resolves to "
                f"{self.device}: NCCL needs CUDA tensors; use device='auto'."
            )
        if cfg.sync_batchnorm:
            if self.device.type != "cuda":
                raise ValueError(
                    "sync_batchnorm=True needs CUDA devices (torch's SyncBatchNorm does not run "
                    f"on {self.device.type}); drop --sync-batchnorm on CPUs."
                )
            # In place (the BatchNorm layers are children): the optimiser's parameters and the
            # attack's modules stay the same objects.
            nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder)  # type: ignore[no-untyped-call]
        ddp = DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )
        if self.is_main_process:
            logger.info(
                "distributed training: %d processes (%s), batch %d per process = %d in all%s",
                self.world_size,
                backend,
                cfg.batch_size,
                cfg.batch_size * self.world_size,
                ", SyncBatchNorm" if cfg.sync_batchnorm else "",
            )
        return ddp

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(images)) in float32: (N, 3, H, W) -> (N, projection_dim)."""
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        model = self._model
        if self.config.compile:  # compiled lazily: nothing is traced before the first step
            if self._compiled_model is None:
                self._compiled_model = cast(nn.Module, torch.compile(model, dynamic=False))
            model = self._compiled_model
        with self._autocast():
            z: torch.Tensor = model(images)  # g(f(images)), through DDP if distributed
        return z.float()

    def _step_attack(self) -> InstanceWiseAttack:
        """The attack of this step: ``self.attack``, or the same attack on the encoder with its
        BatchNorms folded (``attack_fold_batchnorm``, refreshed here from the current weights)
        and/or compiled (``compile``). Built at the first call."""
        cfg = self.config
        if not (cfg.attack_fold_batchnorm or cfg.compile):
            return self.attack
        if self._attack_of_step is None:
            encoder: nn.Module = self.encoder
            if cfg.attack_fold_batchnorm:
                self._folded = FoldedEncoder(self.encoder)  # folds the current weights
                encoder = self._folded.module
            if cfg.compile:
                encoder = cast(nn.Module, torch.compile(encoder, dynamic=False))
            self._attack_of_step = copy.copy(self.attack)  # the same settings, on this encoder
            self._attack_of_step.encoder = encoder
        elif self._folded is not None:
            self._folded.refresh()  # the weights changed since the last step
        # A compiled wrapper keeps its own mode flag, which the attack saves and restores.
        self._attack_of_step.encoder.train(self.encoder.training)
        return self._attack_of_step

    def compute_loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch (eq. 6, or SimCLR's), with the models in their current mode.

        Args:
            batch: (B, 3, H, W) uint8, or float in [0, 1], on the training device.

        Returns:
            ``(loss, parts)``: the scalar loss to minimise, and a detached (3,) tensor
            ``(total, contrastive term, regulariser term before weighting)``. In a distributed
            run both loss terms use every process's rows as negatives (gathered with
            gradients) and average over this process's anchors: DistributedDataParallel's mean
            of the processes' gradients is then the gradient of one process on the union of
            the batches. The attack stays per process (its negatives are the local batch).
        """
        cfg = self.config
        gather = self.world_size > 1  # negatives from every process, with gradients
        t1 = self.augment(batch, self.generator)  # t(x): (B, 3, S, S) in [0, 1]
        t2 = self.augment(batch, self.generator)  # t'(x)
        if not cfg.adversarial:
            z1, z2 = self._embed(torch.cat((t1, t2))).chunk(2)  # (2B, D) -> 2 x (B, D)
            loss = nt_xent_loss(z1, z2, temperature=cfg.temperature, gather_distributed=gather)
            zero = torch.zeros((), device=loss.device)
            return loss, torch.stack((loss, loss, zero)).detach()
        # The image perturbed: t(x) (the original code), or x itself (Table 5's alternative).
        source = t1 if cfg.attack_source == "augmented" else original_view(batch, cfg.image_size)
        with self._autocast():
            adv = self._step_attack().perturb(source, t2, self.generator)  # t(x)^adv, eq. (4)
        if cfg.regularizer_forward == "separate":
            # The original's own forward of (adv, t'(x)), before the 3-view forward as there:
            # BatchNorm's running statistics then get the same two updates in the same order.
            r_adv, r_2 = self._embed(torch.cat((adv, t2))).chunk(2)  # (2B, D) -> 2 x (B, D)
        z1, z2, z_adv = self._embed(torch.cat((t1, t2, adv))).chunk(3)  # (3B, D) -> 3 x (B, D)
        contrastive = nt_xent_loss(
            z1, z2, z_adv, temperature=cfg.temperature, gather_distributed=gather
        )
        if cfg.regularizer_forward != "separate":  # "shared": the 3-view forward's latents
            r_adv, r_2 = z_adv, z2
        regularizer = nt_xent_loss(
            r_adv, r_2, temperature=cfg.temperature, gather_distributed=gather
        )
        loss = contrastive + regularizer / cfg.reg_lambda
        return loss, torch.stack((loss, contrastive, regularizer)).detach()

    # ------------------------------------------------------------------ the loop
    def modules(self) -> dict[str, nn.Module | None]:
        """The trained modules by checkpoint key: ``encoder`` and ``projector``."""
        return {"encoder": self.encoder, "projector": self.projector}

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[`compute_loss`][robust_contrastive.RoCLTrainer.compute_loss] of ``batch[0]`` (the
        images): the loss of this objective. ``generator`` is ``self.generator``."""
        return self.compute_loss(batch[0])

    def fit(self, data: ImageDataset | torch.Tensor, *, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (or what remains of them, with ``resume=True``).

        Args:
            data: an [`ImageDataset`][robust_contrastive.ImageDataset], or images (N, 3, H, W)
                uint8 or float in [0, 1]. Labels, if any, are ignored.
            resume: continue from ``out_dir/checkpoints/last.pt`` if it exists. The result is
                the same as an uninterrupted run with the same config and seed (and, in a
                distributed run, the same number of processes; every process reads the file).

        In a distributed run, call it on every process with the same data; each process takes
        its shard of a permutation shared by all (the last ``N % world_size`` images of an
        epoch's permutation are left out, as ``DistributedSampler(drop_last=True)``).

        Raises:
            NonFiniteLossError: a loss became NaN or infinite (nothing is saved after it).
            ValueError: bad data or a checkpoint made with a different config.
        """
        images = self._prepare_data(data)
        result = self.loop.run((images,), resume=resume)
        self.encoder.eval()
        self.projector.eval()
        if self.out_dir is not None and self.is_main_process:
            self.encoder.save_pretrained(self.out_dir)
            self.projector.save_pretrained(self.out_dir / PROJECTOR_DIR)
            logger.info(
                "saved the encoder to %s and the projector to %s",
                self.out_dir,
                self.out_dir / PROJECTOR_DIR,
            )
        distributed.barrier()  # the other processes return once rank 0 has written
        return TrainResult(
            history=result.history,
            out_dir=self.out_dir,
            encoder=self.encoder,
            projector=self.projector,
        )

    # ------------------------------------------------------------------ helpers
    def _prepare_data(self, data: ImageDataset | torch.Tensor) -> torch.Tensor:
        images = check_training_images(data, "fit()")
        needed = self.config.batch_size * self.world_size
        if images.shape[0] < needed and self.config.drop_last:
            processes = f" x {self.world_size} processes" if self.world_size > 1 else ""
            raise ValueError(
                f"the dataset has {images.shape[0]} images, fewer than batch_size="
                f"{self.config.batch_size}{processes}: lower batch_size or use more images."
            )
        return images.to(self.device)

    # ------------------------------------------------------------------ the run's state
    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self.loop.epoch

    @property
    def history(self) -> list[dict[str, Any]]:
        """One metrics record per completed epoch."""
        return self.loop.history

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoints/last.pt``, or None without an output folder."""
        return self.loop.checkpoint_path

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, epoch, weights, optimiser, RNG states, history.

        In a distributed run this is a collective call (every process's augmentation and
        attack generator state is gathered): call it on every process.
        """
        return self.loop.state_dict()

    def save_checkpoint(self) -> Path:
        """Atomically write [`state_dict`][robust_contrastive.RoCLTrainer.state_dict] to
        [`checkpoint_path`][robust_contrastive.RoCLTrainer.checkpoint_path].

        In a distributed run, call it on every process: rank 0 writes, the others wait.
        """
        if self.out_dir is None:
            raise ValueError("save_checkpoint needs an out_dir: RoCLTrainer(config, out_dir=...).")
        return self.loop.save_checkpoint()
