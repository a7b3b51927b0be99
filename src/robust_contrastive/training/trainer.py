"""``RoCLTrainer``: Algorithm 1 of RoCL (and SimCLR) with the loss of eq. (6)."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..attacks import InstanceWiseAttack
from ..attacks._steps import check_images
from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..layout import CHECKPOINT_DIR, LAST_CHECKPOINT, METRICS_NAME, PROJECTOR_DIR, TRAIN_CONFIG_NAME
from ..losses import nt_xent_loss
from ..models import ProjectionHead, RoCLEncoder
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, check_device
from .folding import FoldedEncoder
from .optim import LARS, warmup_cosine_lr

logger = logging.getLogger(__name__)

# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every", "compile")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; no weights were saved from that point on."""


@dataclass
class TrainResult:
    """What [`RoCLTrainer.fit`][robust_contrastive.RoCLTrainer.fit] returns."""

    encoder: RoCLEncoder  # the trained encoder, in eval mode
    projector: ProjectionHead  # the trained projector, in eval mode
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics dict per epoch
    out_dir: Path | None = None  # where the encoder, projector and logs were written


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


class _Embedder(nn.Module):
    """encoder + projector as one module, z = g(f(x)): what DistributedDataParallel wraps."""

    def __init__(self, encoder: RoCLEncoder, projector: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, projection_dim)."""
        z: torch.Tensor = self.projector(self.encoder(images))
        return z


class RoCLTrainer:
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
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
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
        model = _Embedder(self.encoder, self.projector)
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
            a = self.attack
            self._attack_of_step = InstanceWiseAttack(
                encoder,
                self.projector,
                eps=a.eps,
                alpha=a.alpha,
                steps=a.steps,
                norm=a.norm,
                random_start=a.random_start,
                temperature=a.temperature,
                loss=a.loss,
            )
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
        source = t1 if cfg.attack_source == "augmented" else self._original_view(batch)
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

    def _original_view(self, batch: torch.Tensor) -> torch.Tensor:
        """x as float in [0, 1] at the views' size: (B, 3, H, W) -> (B, 3, S, S)."""
        images = batch.float() / 255 if batch.dtype == torch.uint8 else batch
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            ).clamp_(0, 1)
        return images

    # ------------------------------------------------------------------ the loop
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
        cfg = self.config
        images = self._prepare_data(data)
        num_images = images.shape[0] // self.world_size  # this process's shard (all equal)
        steps = num_images // cfg.batch_size
        if not cfg.drop_last and num_images % cfg.batch_size > 1:
            steps += 1  # a last, smaller batch (a single image has no negatives: dropped)
        if steps == 0:
            raise ValueError(
                f"{num_images} image(s) per process make no batch of at least 2 images: use "
                "more images."
            )
        if resume:
            self._resume()
            resumed = distributed.all_gather_objects(self.epoch)
            if len(set(resumed)) > 1:
                raise ValueError(
                    f"the processes resumed from different epochs {resumed}: every process must "
                    f"read the same {self.checkpoint_path} (on several nodes, put out_dir on a "
                    "shared filesystem)."
                )
        self._write_config()
        name = "RoCL" if cfg.adversarial else "SimCLR"
        # Counts every step of the run (a resumed run starts at its done steps); the description
        # names the epoch running, from 1 as metrics.jsonl counts them.
        bar = tqdm(
            total=steps * cfg.epochs,
            initial=steps * self.epoch,
            desc=f"{name} epoch {min(self.epoch + 1, cfg.epochs)}/{cfg.epochs}",
            unit="step",
            disable=not cfg.progress or not self.is_main_process,
        )
        with bar:
            while self.epoch < cfg.epochs:
                epoch = self.epoch
                bar.set_description(f"{name} epoch {epoch + 1}/{cfg.epochs}", refresh=False)
                self.encoder.train()
                self.projector.train()
                # The same permutation on every process; each takes its shard of it.
                order = torch.randperm(images.shape[0], generator=self.order_generator)
                order = distributed.shard_indices(order, self.rank, self.world_size)
                order = order.to(self.device)
                parts = torch.zeros(steps, 3, device=self.device)  # per-step losses, on device
                start = time.perf_counter()
                for step in range(steps):
                    lr = warmup_cosine_lr(
                        epoch + step / steps,
                        base_lr=cfg.lr,
                        multiplier=cfg.lr_warmup_multiplier,
                        warmup_epochs=cfg.warmup_epochs,
                        total_epochs=cfg.epochs,
                    )
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    batch = images[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
                    loss, parts[step] = self.compute_loss(batch)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(
                            [*self.encoder.parameters(), *self.projector.parameters()],
                            cfg.grad_clip,
                        )
                    self.optimizer.step()
                    bar.update(1)
                    if (step + 1) % 10 == 0 or step + 1 == steps:  # one sync per 10 steps
                        # Mean over processes: every process sees the same verdict.
                        seen = distributed.all_reduce_mean(parts[: step + 1])
                        self._check_finite(seen, epoch)
                        bar.set_postfix(loss=f"{float(seen[step, 0]):.4f}")
                seconds = time.perf_counter() - start
                parts = distributed.all_reduce_mean(parts)  # the loss of the union of the batches
                # Rank 0's BatchNorm statistics everywhere, as a resumed run starts (exact resume).
                distributed.broadcast_buffers(self.encoder, self.projector)
                self._check_finite(parts, epoch)
                means = parts.mean(dim=0).tolist()
                record = {
                    "epoch": epoch + 1,
                    "loss": means[0],
                    "loss_contrastive": means[1],
                    "loss_regularizer": means[2],
                    "lr": lr,
                    "images_per_s": steps * cfg.batch_size * self.world_size / seconds,
                    "seconds": seconds,
                }
                self.history.append(record)
                self.epoch = epoch + 1
                if self.is_main_process:
                    logger.info(json.dumps(record))
                self._write_metrics()
                due = self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs
                if due and self.out_dir is not None:
                    self.save_checkpoint()
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
        return TrainResult(self.encoder, self.projector, list(self.history), self.out_dir)

    # ------------------------------------------------------------------ helpers
    def _prepare_data(self, data: ImageDataset | torch.Tensor) -> torch.Tensor:
        images = data.images if isinstance(data, ImageDataset) else data
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"fit() takes an ImageDataset or an image tensor, got {type(data).__name__}: "
                "load data with robust_contrastive.data.load_dataset(...)."
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}.")
        if images.shape[0] == 0:
            raise ValueError("the dataset is empty: nothing to train on.")
        if images.dtype != torch.uint8:
            check_images(images, "images")
        needed = self.config.batch_size * self.world_size
        if images.shape[0] < needed and self.config.drop_last:
            processes = f" x {self.world_size} processes" if self.world_size > 1 else ""
            raise ValueError(
                f"the dataset has {images.shape[0]} images, fewer than batch_size="
                f"{self.config.batch_size}{processes}: lower batch_size or use more images."
            )
        return images.to(self.device)

    def _check_finite(self, parts: torch.Tensor, epoch: int) -> None:
        finite = torch.isfinite(parts).all(dim=1)
        if not bool(finite.all()):
            step = int((~finite).nonzero()[0, 0])
            values = [float(v) for v in parts[step]]
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch + 1}, step {step + 1}: (total, contrastive, "
                f"regularizer) = {values}. Training stopped; the last checkpoint (epoch "
                f"{self._last_checkpoint_epoch()}) is intact. Try a lower lr, grad_clip, or "
                "precision='fp32'."
            )

    def _last_checkpoint_epoch(self) -> int | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        return int(load_checkpoint(path)["epoch"])

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoints/last.pt``, or None without an output folder."""
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, epoch, weights, optimiser, RNG states, history.

        In a distributed run this is a collective call (every process's augmentation and
        attack generator state is gathered): call it on every process.
        """
        state: dict[str, Any] = {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "encoder": self.encoder.state_dict(),
            "projector": self.projector.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self.order_generator.get_state(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "world_size": self.world_size,
            # Global generators (nothing in a step draws from them today; kept so that code
            # added to a step, or a user's hook, resumes exactly too).
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.world_size > 1:  # one generator state per process, in rank order
            state["rank_generators"] = distributed.all_gather_objects(self.generator.get_state())
        return state

    def save_checkpoint(self) -> Path:
        """Atomically write [`state_dict`][robust_contrastive.RoCLTrainer.state_dict] to
        [`checkpoint_path`][robust_contrastive.RoCLTrainer.checkpoint_path].

        In a distributed run, call it on every process: rank 0 writes, the others wait.
        """
        path = self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs an out_dir: RoCLTrainer(config, out_dir=...).")
        state = self.state_dict()
        if self.is_main_process:
            save_checkpoint(state, path)
            logger.info("checkpoint at epoch %d written to %s", self.epoch, path)
        distributed.barrier()
        return path

    def _resume(self) -> None:
        path = self.checkpoint_path
        if path is None:
            raise ValueError("resume=True needs an out_dir holding the run's checkpoints.")
        if not path.exists():
            if self.is_main_process:
                logger.info("no checkpoint at %s: starting from scratch", path)
            return
        state = load_checkpoint(path)
        saved = TrainConfig.from_dict(state["config"])
        diff = self.config.differences(saved, ignore=RESUMABLE_CHANGES)
        if diff:
            details = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"cannot resume from {path}: the config differs ({details}). Use the run's "
                "original settings, or a new out_dir for a new run."
            )
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise ValueError(
                f"cannot resume from {path}: it was written by a run of {saved_world} "
                f"process(es), this one has {self.world_size}; the batch per step (batch_size x "
                "processes) would change. Resume with the same number of processes."
            )
        self.encoder.load_state_dict(state["encoder"], strict=True)
        self.projector.load_state_dict(state["projector"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.order_generator.set_state(state["order_generator"])
        rank_generators = state.get("rank_generators", [state["generator"]])
        self.generator.set_state(rank_generators[self.rank])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        if "torch_rng_state" in state:
            torch.set_rng_state(state["torch_rng_state"])
        cuda_states = state.get("cuda_rng_states", [])
        if (
            cuda_states
            and torch.cuda.is_available()
            and len(cuda_states) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda_states)
        if self.is_main_process:
            for stale in path.parent.glob(f"{path.name}.*.tmp"):  # left by a killed write
                stale.unlink(missing_ok=True)
                logger.info("removed %s, a checkpoint write that was interrupted", stale)
            logger.info("resumed from %s at epoch %d", path, self.epoch)

    def _write_config(self) -> None:
        """Write ``train_config.json``: the first write of a run, so an unwritable ``out_dir``
        fails here, before any training."""
        if self.out_dir is None or not self.is_main_process:
            return
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.out_dir / TRAIN_CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2)
            )
        except OSError as err:
            raise OSError(
                err.errno,
                f"cannot write to out_dir {self.out_dir}: {err.strerror or err}. Choose a "
                "writable folder with free space; nothing was trained.",
            ) from err

    def _write_metrics(self) -> None:
        if self.out_dir is None or not self.is_main_process:
            return
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        atomic_write_text(self.out_dir / METRICS_NAME, lines)
