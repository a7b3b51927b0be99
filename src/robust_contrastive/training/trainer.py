"""``RoCLTrainer``: Algorithm 1 of RoCL (and SimCLR) with the loss of eq. (6)."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attacks import InstanceWiseAttack
from ..attacks._steps import check_images
from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..losses import nt_xent_loss
from ..models import ProjectionHead, RoCLEncoder
from .checkpoint import LAST_CHECKPOINT, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .optim import LARS, warmup_cosine_lr

logger = logging.getLogger(__name__)

PROJECTOR_DIR = "projector"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; no weights were saved from that point on."""


@dataclass
class TrainResult:
    """What :meth:`RoCLTrainer.fit` returns."""

    encoder: RoCLEncoder  # the trained encoder, in eval mode
    projector: ProjectionHead  # the trained projector, in eval mode
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics dict per epoch
    out_dir: Path | None = None  # where the encoder, projector and logs were written


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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

    Example:
        >>> trainer = RoCLTrainer(TrainConfig(width=16, epochs=1, batch_size=32), "runs/demo")
        >>> result = trainer.fit(load_sample())  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike[str] | None = None) -> None:
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
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(images)) in float32: (N, 3, H, W) -> (N, projection_dim)."""
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            z: torch.Tensor = self.projector(self.encoder(images))
        return z.float()

    def compute_loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch (eq. 6, or SimCLR's), with the models in their current mode.

        Args:
            batch: (B, 3, H, W) uint8, or float in [0, 1], on the training device.

        Returns:
            ``(loss, parts)``: the scalar loss to minimise, and a detached (3,) tensor
            ``(total, contrastive term, regulariser term before weighting)``.
        """
        cfg = self.config
        t1 = self.augment(batch, self.generator)  # t(x): (B, 3, S, S) in [0, 1]
        t2 = self.augment(batch, self.generator)  # t'(x)
        if not cfg.adversarial:
            z1, z2 = self._embed(torch.cat((t1, t2))).chunk(2)  # (2B, D) -> 2 x (B, D)
            loss = nt_xent_loss(z1, z2, temperature=cfg.temperature)
            zero = torch.zeros((), device=loss.device)
            return loss, torch.stack((loss, loss, zero)).detach()
        with self._autocast():
            adv = self.attack.perturb(t1, t2, self.generator)  # t(x)^adv, eq. (4)
        z1, z2, z_adv = self._embed(torch.cat((t1, t2, adv))).chunk(3)  # (3B, D) -> 3 x (B, D)
        contrastive = nt_xent_loss(z1, z2, z_adv, temperature=cfg.temperature)
        if cfg.regularizer_forward == "separate":  # the original's own forward of (adv, t'(x))
            z_adv, z2 = self._embed(torch.cat((adv, t2))).chunk(2)  # (2B, D) -> 2 x (B, D)
        regularizer = nt_xent_loss(z_adv, z2, temperature=cfg.temperature)
        loss = contrastive + regularizer / cfg.reg_lambda
        return loss, torch.stack((loss, contrastive, regularizer)).detach()

    # ------------------------------------------------------------------ the loop
    def fit(self, data: ImageDataset | torch.Tensor, *, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (or what remains of them, with ``resume=True``).

        Args:
            data: an :class:`~robust_contrastive.data.ImageDataset`, or images (N, 3, H, W)
                uint8 or float in [0, 1]. Labels, if any, are ignored.
            resume: continue from ``out_dir/checkpoints/last.pt`` if it exists. The result is
                the same as an uninterrupted run with the same config and seed.

        Raises:
            NonFiniteLossError: a loss became NaN or infinite (nothing is saved after it).
            ValueError: bad data or a checkpoint made with a different config.
        """
        cfg = self.config
        images = self._prepare_data(data)
        num_images = images.shape[0]
        steps = num_images // cfg.batch_size
        if not cfg.drop_last and num_images % cfg.batch_size > 1:
            steps += 1  # a last, smaller batch (a single image has no negatives: dropped)
        if steps == 0:
            raise ValueError(
                f"{num_images} image(s) make no batch of at least 2 images: use more images."
            )
        if resume:
            self._resume()
        self._write_config()
        bar = tqdm(
            total=steps * (cfg.epochs - self.epoch),
            desc="RoCL" if cfg.adversarial else "SimCLR",
            unit="step",
            disable=not cfg.progress,
        )
        with bar:
            while self.epoch < cfg.epochs:
                epoch = self.epoch
                self.encoder.train()
                self.projector.train()
                order = torch.randperm(num_images, generator=self.order_generator)
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
                        self._check_finite(parts[: step + 1], epoch)
                        bar.set_postfix(epoch=epoch, loss=f"{float(parts[step, 0]):.4f}")
                seconds = time.perf_counter() - start
                self._check_finite(parts, epoch)
                means = parts.mean(dim=0).tolist()
                record = {
                    "epoch": epoch + 1,
                    "loss": means[0],
                    "loss_contrastive": means[1],
                    "loss_regularizer": means[2],
                    "lr": lr,
                    "images_per_s": steps * cfg.batch_size / seconds,
                    "seconds": seconds,
                }
                self.history.append(record)
                self.epoch = epoch + 1
                logger.info(json.dumps(record))
                self._write_metrics()
                due = self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs
                if due and self.out_dir is not None:
                    self.save_checkpoint()
        self.encoder.eval()
        self.projector.eval()
        if self.out_dir is not None:
            self.encoder.save_pretrained(self.out_dir)
            self.projector.save_pretrained(self.out_dir / PROJECTOR_DIR)
            logger.info(
                "saved the encoder to %s and the projector to %s",
                self.out_dir,
                self.out_dir / PROJECTOR_DIR,
            )
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
        if images.shape[0] < self.config.batch_size and self.config.drop_last:
            raise ValueError(
                f"the dataset has {images.shape[0]} images, fewer than batch_size="
                f"{self.config.batch_size}: lower batch_size or use more images."
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
        """Everything needed to resume: config, epoch, weights, optimiser, RNG states, history."""
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "encoder": self.encoder.state_dict(),
            "projector": self.projector.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self.order_generator.get_state(),
            "generator": self.generator.get_state(),
            "history": self.history,
        }

    def save_checkpoint(self) -> Path:
        """Atomically write :meth:`state_dict` to :attr:`checkpoint_path`."""
        path = self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs an out_dir: RoCLTrainer(config, out_dir=...).")
        save_checkpoint(self.state_dict(), path)
        logger.info("checkpoint at epoch %d written to %s", self.epoch, path)
        return path

    def _resume(self) -> None:
        path = self.checkpoint_path
        if path is None:
            raise ValueError("resume=True needs an out_dir holding the run's checkpoints.")
        if not path.exists():
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
        self.encoder.load_state_dict(state["encoder"], strict=True)
        self.projector.load_state_dict(state["projector"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.order_generator.set_state(state["order_generator"])
        self.generator.set_state(state["generator"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        logger.info("resumed from %s at epoch %d", path, self.epoch)

    def _write_config(self) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(self.out_dir / CONFIG_FILE, json.dumps(self.config.to_dict(), indent=2))

    def _write_metrics(self) -> None:
        if self.out_dir is None:
            return
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        _atomic_write_text(self.out_dir / METRICS_FILE, lines)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
