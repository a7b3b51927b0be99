"""One evaluation protocol for every label-free robust encoder: SLF, ALF and AFF, one table.

The RobustSSL benchmark (Xu et al.) scores a pretrained encoder three ways, each trained on the
labelled training images and scored on the test images:

* **SLF** (standard linear fine-tuning): a linear head on the frozen encoder, on clean images
  ([`RobustLinearProbe`][robust_contrastive.RobustLinearProbe] with ``adversarial=False``);
* **ALF** (adversarial linear fine-tuning): the same head trained on PGD examples against itself
  (``adversarial=True``, eq. 7 of RoCL, r-LE);
* **AFF** (adversarial full fine-tuning): encoder and head trained end to end with TRADES
  ([`finetune`][robust_contrastive.evaluation.finetuning.finetune], ``method="trades"``).

[`evaluate_protocol`][robust_contrastive.evaluation.protocol.evaluate_protocol] runs them with
one [`ProtocolConfig`][robust_contrastive.protocol_config.ProtocolConfig] (the benchmark's
budgets), keeps each mode's epoch on a validation split, and reports clean, PGD-20 and
AutoAttack accuracy of the kept model on the test images with
[`evaluate_robustness`][robust_contrastive.evaluate_robustness].
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_text
from ..augment import random_crop_flip
from ..data import ImageDataset
from ..models.encoder import RoCLEncoder
from ..protocol_config import PROTOCOL_MODES, ProtocolConfig
from ..training.trainer import resolve_device
from .finetuning import FinetuneConfig, finetune
from .probe import RobustLinearProbe
from .suite import Threat, evaluate_robustness

__all__ = [
    "PROTOCOL_JSON",
    "PROTOCOL_MD",
    "PROTOCOL_MODES",
    "ProtocolConfig",
    "ProtocolResult",
    "ProtocolRow",
    "evaluate_protocol",
    "repeated_images",
    "shared_images",
]

logger = logging.getLogger(__name__)

PROTOCOL_JSON = "protocol.json"  # evaluate_protocol(out_dir=...): the result as JSON
PROTOCOL_MD = "protocol.md"  # ... and its table
MODE_NAMES = {"slf": "SLF", "alf": "ALF", "aff": "AFF"}


@dataclass
class ProtocolRow:
    """One mode's figures on the test images, and how its model was chosen."""

    mode: str  # "slf", "alf" or "aff"
    clean_accuracy: float  # in [0, 1]
    pgd_accuracy: float  # under l-inf PGD (test_attack_steps steps, step alpha), in [0, 1]
    autoattack_accuracy: float | None  # AutoAttack standard, None when not run
    best_epoch: int  # the (1-based) epoch whose weights were scored
    epochs: int  # epochs trained
    selected_on: str  # "val_clean_acc", "val_adv_acc" or "last epoch" (no val)
    n_train: int  # training images
    n_val: int  # validation images (0: no selection)
    n_test: int  # test images scored (clean and PGD)
    seconds: float  # training and evaluation time of the mode
    history: list[dict[str, Any]] = field(default_factory=list)  # the training records
    n_autoattack: int = 0  # test images AutoAttack scored (0: not run)
    warnings: list[str] = field(default_factory=list)  # evaluate_robustness's warnings


@dataclass
class ProtocolResult:
    """What [`evaluate_protocol`][robust_contrastive.evaluation.protocol.evaluate_protocol]
    returns: one row per mode, the config and free-form ``info`` (e.g. the encoder's name)."""

    rows: list[ProtocolRow]
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def row(self, mode: str) -> ProtocolRow:
        """The row of ``mode`` ("slf", "alf" or "aff")."""
        for row in self.rows:
            if row.mode == mode:
                return row
        raise KeyError(f"no mode {mode!r} in this result; it has {[r.mode for r in self.rows]}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the result as JSON (atomically) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(target, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_markdown(self, caption: str | None = None) -> str:
        """A markdown table, one row per mode, under ``caption`` (default: ``info["caption"]``
        if set), with the evaluation warnings below it."""
        steps = self.config.get("test_attack_steps", 20)
        lines: list[str] = []
        text = caption if caption is not None else self.info.get("caption")
        if text:
            lines += [str(text), ""]
        lines += [
            f"| mode | clean (%) | PGD-{steps} (%) | AutoAttack (%) | epoch kept | selected on "
            "| train / val / test images | time (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            auto = "-" if r.autoattack_accuracy is None else f"{100 * r.autoattack_accuracy:.2f}"
            if r.autoattack_accuracy is not None and r.n_autoattack != r.n_test:
                auto += f" (on {r.n_autoattack})"
            lines.append(
                f"| {MODE_NAMES.get(r.mode, r.mode)} | {100 * r.clean_accuracy:.2f} | "
                f"{100 * r.pgd_accuracy:.2f} | {auto} | {r.best_epoch} / {r.epochs} | "
                f"{r.selected_on} | {r.n_train} / {r.n_val} / {r.n_test} | {r.seconds:.0f} |"
            )
        seen: dict[str, list[str]] = {}  # warning -> the modes that raised it
        for r in self.rows:
            for warning in r.warnings:
                seen.setdefault(warning, []).append(MODE_NAMES.get(r.mode, r.mode))
        lines += [f"\n> warning ({', '.join(m)}): {w}" for w, m in seen.items()]
        return "\n".join(lines)


def _image_keys(images: torch.Tensor) -> list[bytes]:
    """A content hash per image of (N, 3, H, W) uint8 images."""
    flat = images.reshape(images.shape[0], -1).cpu().contiguous()
    return [hashlib.sha1(row.numpy().tobytes()).digest() for row in flat]


def shared_images(data: ImageDataset, other: ImageDataset) -> torch.Tensor:
    """The indices of ``data``'s images that are also in ``other`` (byte-identical images).

    Use it to drop test images from a training pool: ``data.subset(mask)`` with the complement
    (the bundled ``sample`` and ``sample-held-out`` share 189 images).

    Images of another size are never byte-identical: datasets of different resolutions share
    none.

    Returns:
        (K,) int64 indices into ``data``, sorted.
    """
    if data.images.shape[1:] != other.images.shape[1:]:
        return torch.zeros(0, dtype=torch.int64)
    known = set(_image_keys(other.images))
    return torch.tensor(
        [i for i, key in enumerate(_image_keys(data.images)) if key in known], dtype=torch.int64
    )


def repeated_images(data: ImageDataset) -> torch.Tensor:
    """The indices of ``data``'s images that repeat an earlier image (byte-identical): drop them
    before drawing a validation split, or a repeated image may land in both parts.

    Returns:
        (K,) int64 indices into ``data``, sorted; the first of each group of copies is kept.
    """
    seen: set[bytes] = set()
    repeats = []
    for i, key in enumerate(_image_keys(data.images)):
        if key in seen:
            repeats.append(i)
        seen.add(key)
    return torch.tensor(repeats, dtype=torch.int64)


def _check_inputs(
    encoder: object,
    train: ImageDataset,
    val: ImageDataset | None,
    test: ImageDataset,
    modes: Sequence[str],
) -> tuple[str, ...]:
    if not isinstance(encoder, RoCLEncoder):
        raise TypeError(
            f"encoder must be a RoCLEncoder, got {type(encoder).__name__}: load one with "
            "RoCLEncoder.from_pretrained(name_or_folder)."
        )
    for name, data in (("train", train), ("val", val), ("test", test)):
        if data is None and name == "val":
            continue
        if not isinstance(data, ImageDataset):
            raise TypeError(
                f"{name} must be an ImageDataset, got {type(data).__name__}: load it with "
                "robust_contrastive.load_dataset(...)."
            )
        if len(data) < 2:
            raise ValueError(f"{name} holds {len(data)} image(s): the protocol needs at least 2.")
    for name, data in (("val", val), ("test", test)):
        if isinstance(data, ImageDataset) and data.classes != train.classes:
            raise ValueError(
                f"{name} has classes {list(data.classes)[:5]}... but train has "
                f"{list(train.classes)[:5]}...: give splits of one labelled data set."
            )
    if len(train.classes) < 2:
        raise ValueError("train has a single class: a classifier needs at least 2.")
    if isinstance(modes, str):
        raise TypeError(f"modes must be a list of modes, got the string {modes!r}: ({modes!r},).")
    chosen = tuple(modes)
    unknown = [m for m in chosen if m not in PROTOCOL_MODES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"modes must be distinct modes from {list(PROTOCOL_MODES)}, got {list(chosen)}."
        )
    for name, data in (("train", train), ("val", val)):
        if isinstance(data, ImageDataset):
            shared = shared_images(data, test)
            if len(shared):
                raise ValueError(
                    f"{len(shared)} test images are also in {name}: the test images must be held "
                    f"out. Drop them first: {name}.subset(...) without "
                    f"shared_images({name}, test)."
                )
    if isinstance(val, ImageDataset) and len(shared_images(train, val)):
        raise ValueError("val shares images with train: draw val from held-out training images.")
    return chosen


def evaluate_protocol(
    encoder: RoCLEncoder,
    train: ImageDataset,
    val: ImageDataset | None,
    test: ImageDataset,
    *,
    modes: Sequence[str] = PROTOCOL_MODES,
    config: ProtocolConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """Score ``encoder`` under SLF, ALF and AFF with one protocol (the RobustSSL benchmark's).

    Per mode, a classifier is trained on ``train`` (the encoder is copied: the argument is not
    modified) for ``config.epochs`` epochs, SGD with the lr divided by 10 from each of
    ``config.milestones``:

    * ``"slf"``: a linear head on the frozen encoder, cross-entropy on clean (augmented) images,
      lr ``linear_lr``, batch ``linear_batch_size``;
    * ``"alf"``: the same on l-inf PGD examples against the current classifier (``eps``,
      ``alpha``, ``train_attack_steps``), eq. (7) of RoCL;
    * ``"aff"``: encoder and a new head end to end with TRADES,
      ``CE(f(x), y) + trades_beta * KL(f(x) || f(x_adv))``, lr ``aff_lr``, batch
      ``aff_batch_size``.

    After every epoch the model is scored on ``val`` (PGD with the training attack's settings,
    the same random starts every epoch; clean accuracy for SLF unless ``slf_select="robust"``)
    and the best epoch's weights (the earliest among ties) are kept; without ``val``, the last
    epoch's. The kept model is then scored on ``test`` only: clean accuracy, l-inf PGD
    (``eps``, step ``alpha``, ``test_attack_steps`` = 20) and, with ``config.autoattack``,
    AutoAttack standard (skipped with a warning when torchattacks is not installed), with
    [`evaluate_robustness`][robust_contrastive.evaluate_robustness]'s sanity checks.

    Args:
        encoder: the pretrained encoder to score (any layout the library loads).
        train: labelled training images, (N, 3, H, W) uint8.
        val: labelled validation images (held out from ``train``), or None to keep the last
            epoch. Never pass test images.
        test: labelled test images, scored once per mode after training; they must not be in
            ``train`` or ``val`` (checked: byte-identical images are refused).
        modes: the modes to run, from ``("slf", "alf", "aff")``, in this order in the table.
        config: the settings (default ``ProtocolConfig()``: the benchmark's).
        out_dir: folder receiving ``protocol.json`` (the result, histories included) and
            ``protocol.md`` (the table); None writes nothing.
        progress: show progress bars.

    Returns:
        A [`ProtocolResult`][robust_contrastive.evaluation.protocol.ProtocolResult]; its
        ``to_markdown()`` is the table.

    Raises:
        TypeError / ValueError: an encoder that is not a ``RoCLEncoder``, data that is not an
            ``ImageDataset`` or is too small, splits of different classes, test images found in
            ``train`` or ``val``, unknown or repeated modes, or a bad config.
    """
    chosen = _check_inputs(encoder, train, val, test, modes)
    config = ProtocolConfig() if config is None else config
    if not isinstance(config, ProtocolConfig):
        raise TypeError(f"config must be a ProtocolConfig, got {type(config).__name__}.")
    config.validate()
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)  # fail before any training if unwritable
    device = resolve_device(config.device)
    num_classes = len(train.classes)
    pgd = Threat(
        name=f"linf-pgd{config.test_attack_steps}",
        norm="linf",
        eps=config.eps,
        alpha=config.alpha,
        steps=config.test_attack_steps,
    )
    threats: list[str | Threat] = [pgd]
    auto_threat = Threat(name="autoattack-linf", norm="linf", eps=config.eps, attack="autoattack")
    # AutoAttack on its own seeded subset only when smaller than PGD's: the first n of the same
    # seeded permutation, so its images are among PGD's (never more images than PGD scores)
    n_test = min(config.n_test_images or len(test), len(test))
    separate_auto = (
        config.autoattack
        and config.n_autoattack_images is not None
        and config.n_autoattack_images < n_test
    )
    if config.autoattack and not separate_auto:
        threats.append(auto_threat)
    result = ProtocolResult(rows=[], config=config.to_dict())
    for mode in chosen:
        start = time.perf_counter()
        logger.info("protocol: %s (%d epochs)", MODE_NAMES[mode], config.epochs)
        if mode == "aff":
            model, history, best, selected = _full_finetuning(
                encoder, train, val, config, num_classes, progress
            )
        else:
            model, history, best, selected = _linear(
                encoder, train, val, config, num_classes, mode, device, progress
            )
        report = evaluate_robustness(
            model,
            test,
            threats,
            n_images=config.n_test_images,
            seed=config.seed,
            sanity_checks=config.sanity_checks,
            progress=progress,
        )
        names = [r.name for r in report.results]
        auto = report.accuracy("autoattack-linf") if "autoattack-linf" in names else None
        n_auto = report.n_images if auto is not None else 0
        if separate_auto:  # AutoAttack on its own (smaller) seeded subset of the test images
            auto_report = evaluate_robustness(
                model,
                test,
                [auto_threat],
                n_images=config.n_autoattack_images,
                seed=config.seed,
                sanity_checks=False,  # checked above, on the PGD-20 images
                progress=progress,
            )
            auto, n_auto = auto_report.accuracy(auto_threat.name), auto_report.n_images
        row = ProtocolRow(
            mode=mode,
            clean_accuracy=report.clean_accuracy,
            pgd_accuracy=report.accuracy(pgd.name),
            autoattack_accuracy=auto,
            best_epoch=best,
            epochs=config.epochs,
            selected_on=selected,
            n_train=len(train),
            n_val=0 if val is None else len(val),
            n_test=report.n_images,
            n_autoattack=n_auto,
            seconds=time.perf_counter() - start,
            history=history,
            warnings=list(report.warnings),
        )
        result.rows.append(row)
        logger.info(
            "protocol: %s clean %.2f %%, PGD-%d %.2f %% (epoch %d)",
            MODE_NAMES[mode],
            100 * row.clean_accuracy,
            config.test_attack_steps,
            100 * row.pgd_accuracy,
            best,
        )
        del model
        if folder is not None:  # after every mode: a long run leaves its finished rows
            _write(result, folder)
    return result


def _write(result: ProtocolResult, folder: Path) -> None:
    result.to_json(folder / PROTOCOL_JSON)
    atomic_write_text(folder / PROTOCOL_MD, result.to_markdown() + "\n")


def _selected(history: list[dict[str, Any]], key: str, has_val: bool) -> str:
    return key if has_val and history and key in history[0] else "last epoch"


def _linear(
    encoder: RoCLEncoder,
    train: ImageDataset,
    val: ImageDataset | None,
    config: ProtocolConfig,
    num_classes: int,
    mode: str,
    device: torch.device,
    progress: bool,
) -> tuple[nn.Module, list[dict[str, Any]], int, str]:
    """SLF or ALF: a linear head on a frozen copy of the encoder."""
    padding = 4

    def crop_flip(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return random_crop_flip(images, padding, generator)

    probe = RobustLinearProbe(
        copy.deepcopy(encoder).to(device),
        num_classes,
        adversarial=mode == "alf",
        eps=config.eps,
        alpha=config.alpha,
        attack_steps=config.train_attack_steps,
        epochs=config.epochs,
        batch_size=config.linear_batch_size,
        lr=config.linear_lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        schedule="step",
        milestones=config.milestones,
        augment=config.augment == "crop_flip",
        augmentation=crop_flip,
    )
    select = "robust" if mode == "alf" else config.slf_select
    fit = probe.fit(train, val=val, seed=config.seed, progress=progress, select=select)
    key = "val_adv_acc" if select == "robust" else "val_clean_acc"
    best = probe.best_epoch if probe.best_epoch is not None else config.epochs
    return probe, fit.history, best, _selected(fit.history, key, val is not None)


def _full_finetuning(
    encoder: RoCLEncoder,
    train: ImageDataset,
    val: ImageDataset | None,
    config: ProtocolConfig,
    num_classes: int,
    progress: bool,
) -> tuple[nn.Module, list[dict[str, Any]], int, str]:
    """AFF: the encoder and a new head, end to end, with TRADES."""
    trainable = copy.deepcopy(encoder).requires_grad_(True)  # a probe may have frozen a copy
    finetune_config = FinetuneConfig(
        method="trades",
        trades_beta=config.trades_beta,
        eps=config.eps,
        alpha=config.alpha,
        attack_steps=config.train_attack_steps,
        attack_norm="linf",
        val_attack_steps=config.train_attack_steps,
        epochs=config.epochs,
        batch_size=config.aff_batch_size,
        lr=config.aff_lr,
        lr_schedule="step",
        milestones=config.milestones,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        augment=config.augment,
        crop_padding=4,
        seed=config.seed,
        device=config.device,
        progress=progress,
        checkpoint_every=config.epochs,
    )
    fit = finetune(trainable, train, finetune_config, num_classes=num_classes, val=val)
    best = fit.best_epoch if fit.best_epoch is not None else config.epochs
    return fit.model, fit.history, best, _selected(fit.history, "val_adv_acc", val is not None)
