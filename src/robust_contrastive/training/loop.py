"""One training loop for every method: an [`Objective`][robust_contrastive.training.loop.Objective]
says what one batch costs; [`TrainingLoop`][robust_contrastive.training.loop.TrainingLoop] does the
rest: data order and sharding, the schedule, the step, the finiteness check, metrics, selection
on a validation score, atomic checkpoints and exact resumption, the progress bar.

RoCL and SimCLR ([`RoCLTrainer`][robust_contrastive.RoCLTrainer]), linear evaluation and r-LE
([`RobustLinearProbe.fit`][robust_contrastive.RobustLinearProbe.fit]) and adversarial fine-tuning
([`finetune`][robust_contrastive.evaluation.finetuning.finetune]) are objectives on it.

Metric vocabulary (the keys of a record, per-image means over the epoch): ``epoch`` (from 1),
``lr`` (of the last step), ``loss`` and the objective's ``loss_<term>``, ``train_clean_acc`` /
``train_adv_acc``, the validation scores ``val_clean_acc`` / ``val_adv_acc``, ``best`` (this
epoch's weights are the ones kept), ``images_per_s`` (every process's images) and ``seconds``.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._io import atomic_write_text
from ..layout import CHECKPOINT_DIR, LAST_CHECKPOINT, METRICS_NAME
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["FitResult", "NonFiniteLossError", "Objective", "TrainingLoop", "steps_per_epoch"]

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, ...]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; no weights were saved from that point on."""


class Objective(ABC):
    """What one method trains, and what one batch costs.

    Subclasses set ``name`` and ``metrics`` and implement ``modules`` and ``loss``. The hooks
    fit the methods after RoCL: several attacks or BatchNorm branches inside one ``loss`` (ACL),
    a module used but not trained, left out of ``modules`` (a frozen teacher, DeACL), a
    per-epoch setting in ``start_epoch`` (DynACL's augmentation strength), extra loss terms as
    more ``metrics`` (AIR).
    """

    name: str = "training"  # the progress bar's label
    # Names of the entries of the statistics vector that ``loss`` returns: the first is the total
    # loss ("loss"); names starting with "loss" are checked for finiteness; every entry is a
    # per-image mean over the batch (an accuracy is the fraction of the batch that is correct).
    metrics: tuple[str, ...] = ("loss",)

    @abstractmethod
    def modules(self) -> dict[str, nn.Module | None]:
        """The trained modules by checkpoint key (``None``: a slot this configuration leaves
        empty). Their ``state_dict`` goes into checkpoints and the best-epoch copy."""

    def train(self) -> None:
        """Put the modules in training mode at the start of every epoch."""
        for module in self.modules().values():
            if module is not None:
                module.train()

    def start_epoch(self, epoch: int) -> None:
        """Called before the (0-based) ``epoch``'s first step: a per-epoch setting (e.g. an
        augmentation strength that follows a schedule) goes here. Nothing by default."""
        return None

    @abstractmethod
    def loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of one batch, with the modules in their current mode.

        Args:
            batch: the rows of this step of every data tensor given to
                [`TrainingLoop.run`][robust_contrastive.training.loop.TrainingLoop.run]
                (for example images (B, 3, H, W) uint8 and labels (B,)).
            generator: the run's generator on the training device (augmentation, attack starts).

        Returns:
            ``(loss, stats)``: the scalar to minimise, and a detached (len(metrics),) tensor.
        """


@dataclass
class FitResult:
    """What every ``fit`` returns: the per-epoch records and where the run was written."""

    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    out_dir: Path | None = None  # the run's folder (None: kept in memory)
    best_epoch: int | None = None  # the epoch whose weights were kept (None: no selection)


def steps_per_epoch(num_images: int, batch_size: int, *, drop_last: bool, min_last: int) -> int:
    """Batches of one epoch: the full ones, plus a last smaller one of at least ``min_last``
    images unless ``drop_last``."""
    steps = num_images // batch_size
    if not drop_last and num_images % batch_size >= min_last:
        steps += 1
    return steps


@dataclass(eq=False)
class TrainingLoop:
    """Train an [`Objective`][robust_contrastive.training.loop.Objective] for a number of epochs.

    Args:
        objective: the method: its modules and the loss of one batch.
        optimizer: the optimiser of the trained parameters (built by the method).
        epochs: epochs in all (a resumed run trains what remains).
        batch_size: images per step and process.
        lr_at: the learning rate at a fractional epoch ``epoch + step / steps``, set before
            every step.
        order_generator: CPU generator of the data order (the same on every process).
        generator: the generator passed to ``objective.loss``, on the training device.
        drop_last: drop the last, smaller batch of an epoch.
        min_last_batch: the smallest last batch kept (2 where BatchNorm or contrastive
            negatives need two images).
        grad_clip: clip the gradients' total norm to this before each step (None: no clipping).
        out_dir: the run's folder (``config_name``, ``metrics.jsonl``, ``checkpoints/last.pt``),
            or None to keep everything in memory.
        config: the run's settings, written to ``out_dir/config_name`` and into checkpoints; a
            resumption must have the same (but for ``resumable`` keys).
        config_name: the file name of the settings in ``out_dir``.
        resumable: config keys that may change between a run and its resumption.
        extra: further values a checkpoint must match to be resumed (e.g. the number of classes).
        normalize_config: maps a checkpoint's config to today's form (fields added since the
            checkpoint was written take their defaults) before it is compared.
        checkpoint_every: epochs between checkpoints (and one after the last epoch).
        progress: show a progress bar (rank 0 only).
        rank: this process's rank; world_size: the number of processes (each trains on its shard
            of every epoch's permutation; the objective's modules are DDP-wrapped by the method).
        nonfinite_hint: what to try when a loss is not finite.
    """

    objective: Objective
    optimizer: torch.optim.Optimizer
    _: KW_ONLY
    epochs: int
    batch_size: int
    lr_at: Callable[[float], float]
    order_generator: torch.Generator
    generator: torch.Generator
    drop_last: bool = False
    min_last_batch: int = 2
    grad_clip: float | None = None
    out_dir: Path | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    config_name: str | None = None
    resumable: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    normalize_config: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    checkpoint_every: int = 1
    progress: bool = True
    rank: int = 0
    world_size: int = 1
    nonfinite_hint: str = "Try a lower lr."
    epoch: int = field(default=0, init=False)  # completed epochs
    history: list[dict[str, Any]] = field(default_factory=list, init=False)  # a record per epoch
    # The best epoch so far: {"epoch", <selection metric>: value, <module key>: CPU state}.
    best: dict[str, Any] | None = field(default=None, init=False)

    @property
    def is_main_process(self) -> bool:
        """True on rank 0: the process that writes files and logs."""
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoints/last.pt``, or None without an output folder."""
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        data: Sequence[torch.Tensor],
        *,
        resume: bool = False,
        validate: Callable[[], dict[str, float]] | None = None,
        select: str | None = None,
    ) -> FitResult:
        """Train until ``epochs`` epochs are done.

        Args:
            data: tensors with one row per example (images, labels, cached features...), on
                any device; each step's rows are taken from every tensor on its own device.
            resume: continue from ``out_dir/checkpoints/last.pt`` if it exists (the result is
                the same as an uninterrupted run).
            validate: called after every epoch; its scores join the epoch's record.
            select: with ``validate``, the score to maximise: the weights of the best epoch
                (the earliest among ties) are restored at the end.

        Raises:
            NonFiniteLossError: a loss became NaN or infinite (nothing is saved after it).
            ValueError: no batch to train on, or a checkpoint of another configuration.
        """
        objective = self.objective
        names = objective.metrics
        if not names or names[0] != "loss":
            raise ValueError(
                f"{type(objective).__name__}.metrics must start with 'loss' (the total), got "
                f"{names!r}."
            )
        num_images = data[0].shape[0] // self.world_size  # this process's shard (all equal)
        steps = steps_per_epoch(
            num_images, self.batch_size, drop_last=self.drop_last, min_last=self.min_last_batch
        )
        if steps == 0:
            raise ValueError(
                f"{num_images} image(s) per process make no batch of at least "
                f"{self.min_last_batch} images: use more images."
            )
        if resume:
            self.resume()
        self._write_config()
        checked = [i for i, name in enumerate(names) if name.startswith("loss")]
        # Counts every step of the run (a resumed run starts at its done steps); the description
        # names the epoch running, from 1 as metrics.jsonl counts them.
        bar = tqdm(
            total=steps * self.epochs,
            initial=steps * self.epoch,
            desc=self._description(min(self.epoch + 1, self.epochs)),
            unit="step",
            disable=not self.progress or not self.is_main_process,
        )
        with bar:
            while self.epoch < self.epochs:
                epoch = self.epoch
                bar.set_description(self._description(epoch + 1), refresh=False)
                objective.train()
                objective.start_epoch(epoch)
                # The same permutation on every process; each takes its shard of it.
                order = torch.randperm(data[0].shape[0], generator=self.order_generator)
                order = distributed.shard_indices(order, self.rank, self.world_size)
                # on each data tensor's device once per epoch: no host sync per step
                orders = {d: order.to(d) for d in {t.device for t in data}}
                device = self.generator.device
                stats = torch.zeros(steps, len(names), device=device)  # per-step means
                sizes = torch.tensor(  # images per step: full batches, the last one maybe not
                    [min(self.batch_size, len(order) - s * self.batch_size) for s in range(steps)],
                    dtype=torch.float32,
                    device=device,
                )
                start = time.perf_counter()
                for step in range(steps):
                    lr = self.lr_at(epoch + step / steps)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
                    batch = tuple(t[orders[t.device][rows]] for t in data)
                    loss, stats[step] = objective.loss(batch, self.generator)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if self.grad_clip is not None:
                        params = [p for g in self.optimizer.param_groups for p in g["params"]]
                        nn.utils.clip_grad_norm_(params, self.grad_clip)
                    self.optimizer.step()
                    bar.update(1)
                    if (step + 1) % 10 == 0 or step + 1 == steps:  # one sync per 10 steps
                        # Mean over processes: every process sees the same verdict.
                        seen = self._mean_over_processes(stats[: step + 1, checked])
                        self._check_finite(seen, [names[i] for i in checked], epoch)
                        bar.set_postfix(loss=f"{float(seen[step, 0]):.4f}")
                seconds = time.perf_counter() - start
                stats = self._mean_over_processes(stats)  # the union of the batches
                # Rank 0's BatchNorm statistics everywhere, as a resumed run starts (exact resume).
                if self.world_size > 1:
                    distributed.broadcast_buffers(
                        *(m for m in objective.modules().values() if m is not None)
                    )
                images = float(sizes.sum())
                weighted = stats.double() * sizes.double()[:, None]  # float64: exact counts
                means = (weighted.sum(dim=0) / images).tolist()
                record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
                record.update(zip(names, means, strict=True))
                if validate is not None:
                    record.update(validate())
                    if select is not None:
                        record["best"] = self._keep_if_best(record, select)
                record["images_per_s"] = images * self.world_size / seconds
                record["seconds"] = seconds
                self.history.append(record)
                self.epoch = epoch + 1
                if self.is_main_process:
                    logger.info(json.dumps(record))
                self._write_metrics()
                due = self.epoch % self.checkpoint_every == 0 or self.epoch == self.epochs
                if due and self.out_dir is not None:
                    self.save_checkpoint()
        best_epoch = None
        if self.best is not None:
            best_epoch = int(self.best["epoch"])
            for key, module in objective.modules().items():
                if module is not None:
                    module.load_state_dict(self.best[key])
            logger.info("kept the weights of epoch %d (best %s)", best_epoch, select)
        return FitResult(list(self.history), self.out_dir, best_epoch)

    def _description(self, epoch: int) -> str:
        return f"{self.objective.name} epoch {epoch}/{self.epochs}"

    def _keep_if_best(self, record: dict[str, Any], select: str) -> bool:
        """Copy the modules' weights if ``record[select]`` beats every earlier epoch."""
        if select not in record:
            raise ValueError(f"select={select!r} is not a validation score: {sorted(record)}.")
        if self.best is not None and not record[select] > self.best[select]:
            return False
        self.best = {"epoch": record["epoch"], select: record[select]}
        for key, module in self.objective.modules().items():
            self.best[key] = (
                None
                if module is None
                else {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            )
        return True

    def _check_finite(self, losses: torch.Tensor, names: list[str], epoch: int) -> None:
        finite = torch.isfinite(losses).all(dim=1)
        if bool(finite.all()):
            return
        step = int((~finite).nonzero()[0, 0])
        values = ", ".join(f"{n}={float(v)}" for n, v in zip(names, losses[step], strict=True))
        saved = ""
        if self.out_dir is not None:
            saved = f" the last checkpoint (epoch {self._last_checkpoint_epoch()}) is intact."
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {values}. Training "
            f"stopped;{saved} {self.nonfinite_hint}"
        )

    def _mean_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over this loop's processes (itself with one process: a
        single-process loop inside a process group, e.g. a probe on rank 0, stays local)."""
        return distributed.all_reduce_mean(tensor) if self.world_size > 1 else tensor

    def _last_checkpoint_epoch(self) -> int | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        return int(load_checkpoint(path)["epoch"])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, epoch, weights, optimiser, RNG states, history,
        best epoch.

        In a distributed run this is a collective call (every process's generator state is
        gathered): call it on every process.
        """
        state: dict[str, Any] = {
            "config": self.config,
            **self.extra,
            "epoch": self.epoch,
            **{
                key: None if module is None else module.state_dict()
                for key, module in self.objective.modules().items()
            },
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self.order_generator.get_state(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "best": self.best,
            "world_size": self.world_size,
            # Global generators (no step draws from them today; kept so that code added to a
            # step, or a user's hook, resumes exactly too).
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.world_size > 1:  # one generator state per process, in rank order
            state["rank_generators"] = distributed.all_gather_objects(self.generator.get_state())
        return state

    def save_checkpoint(self) -> Path:
        """Atomically write [`state_dict`][robust_contrastive.training.loop.TrainingLoop.state_dict]
        to ``checkpoint_path`` (rank 0 writes, the other processes wait)."""
        path = self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs an out_dir.")
        state = self.state_dict()
        if self.is_main_process:
            save_checkpoint(state, path)
            logger.info("checkpoint at epoch %d written to %s", self.epoch, path)
        if self.world_size > 1:
            distributed.barrier()
        return path

    def resume(self) -> None:
        """Load ``checkpoint_path`` if it exists (every process reads it).

        Raises:
            ValueError: no ``out_dir``, a checkpoint of another configuration or number of
                processes, or processes that read different checkpoints.
        """
        path = self.checkpoint_path
        if path is None:
            raise ValueError("resume=True needs an out_dir holding the run's checkpoints.")
        if path.exists():
            self.load_state_dict(load_checkpoint(path), source=path)
            if self.is_main_process:
                for stale in path.parent.glob(f"{path.name}.*.tmp"):  # left by a killed write
                    stale.unlink(missing_ok=True)
                    logger.info("removed %s, a checkpoint write that was interrupted", stale)
                logger.info("resumed from %s at epoch %d", path, self.epoch)
        elif self.is_main_process:
            logger.info("no checkpoint at %s: starting from scratch", path)
        resumed = distributed.all_gather_objects(self.epoch) if self.world_size > 1 else []
        if len(set(resumed)) > 1:
            raise ValueError(
                f"the processes resumed from different epochs {resumed}: every process must "
                f"read the same {path} (on several nodes, put out_dir on a shared filesystem)."
            )

    def load_state_dict(self, state: dict[str, Any], source: Path | str = "the checkpoint") -> None:
        """Restore a [`state_dict`][robust_contrastive.training.loop.TrainingLoop.state_dict],
        after checking that it is of this configuration."""
        saved_config = dict(state["config"])
        if self.normalize_config is not None:
            saved_config = self.normalize_config(saved_config)
        saved = {**saved_config, **{k: state.get(k) for k in self.extra}}
        now = {**self.config, **self.extra}
        diff = {
            k: (now[k], saved.get(k))
            for k in now
            if k not in self.resumable and now[k] != saved.get(k)
        }
        if diff:
            details = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"cannot resume from {source}: the config differs ({details}). Use the run's "
                "original settings, or a new out_dir for a new run."
            )
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise ValueError(
                f"cannot resume from {source}: it was written by a run of {saved_world} "
                f"process(es), this one has {self.world_size}; the batch per step (batch_size x "
                "processes) would change. Resume with the same number of processes."
            )
        for key, module in self.objective.modules().items():
            if module is not None:
                module.load_state_dict(state[key], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.order_generator.set_state(state["order_generator"])
        self.generator.set_state(state.get("rank_generators", [state["generator"]])[self.rank])
        self.history = list(state["history"])
        self.best = state.get("best")
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

    # ------------------------------------------------------------------ files
    def _write_config(self) -> None:
        """Write the settings: the first write of a run, so an unwritable ``out_dir`` fails
        here, before any training."""
        if self.out_dir is None or not self.is_main_process or self.config_name is None:
            return
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.out_dir / self.config_name, json.dumps(self.config, indent=2) + "\n"
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
