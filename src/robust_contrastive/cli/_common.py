"""Helpers shared by the commands: TrainConfig and data options, JSON and split files, help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light modules at import: `robust-contrastive --help` must not wait for torch. The
# commands import what they use (torch, the models, the data...) when they run.
from .._names import (
    ARCHS,
    ATTACK_LOSSES,
    ATTACK_SOURCES,
    NORMS,
    PRECISIONS,
    REGULARIZER_FORWARDS,
)
from ..training.config import TrainConfig

if TYPE_CHECKING:
    from ..data import ImageDataset


logger = logging.getLogger("robust_contrastive")


# Help for every TrainConfig field exposed as --field-name.
_HELP: dict[str, str] = {
    "arch": "encoder architecture (resnet18 = the paper's)",
    "width": "channels of the first ResNet stage (64 = paper, 16 fits a CPU)",
    "projection_hidden_dim": "projector hidden width",
    "projection_dim": "projector output (latent) dimension",
    "adversarial": "RoCL (instance-wise adversarial views); --no-adversarial = SimCLR",
    "temperature": "NT-Xent temperature",
    "reg_lambda": "eq. (6): the regulariser is weighted 1/reg_lambda",
    "regularizer_forward": "separate = the original's own forward of (adv, t'(x)); shared = "
    "reuse the 3-view forward (cheaper, other BatchNorm statistics)",
    "eps": "attack radius; fractions like 8/255 are accepted",
    "alpha": "attack step size; fractions like 2/255 are accepted",
    "attack_steps": "PGD steps of the training attack",
    "attack_norm": "norm of the training attack's ball",
    "attack_loss": "loss the attack ascends (Table 7); contrastive = the paper's",
    "attack_source": "the image perturbed: augmented = t(x) (the paper's), original = x (Table 5)",
    "attack_random_start": "uniform random start in the ball",
    "epochs": "training epochs",
    "batch_size": "images per step (per process)",
    "lr": "base learning rate (warmed up to lr * lr_warmup_multiplier)",
    "lr_warmup_multiplier": "peak lr / base lr",
    "warmup_epochs": "linear warm-up epochs before the cosine decay",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "lars": "wrap SGD in LARS",
    "trust_coefficient": "LARS trust coefficient",
    "grad_clip": "clip the gradient norm to this value",
    "image_size": "side of the random resized crops",
    "drop_last": "drop the last incomplete batch of an epoch",
    "seed": "seed of initialisation, data order, augmentation and attacks",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "precision": "bf16 = bfloat16 autocast (GPUs)",
    "channels_last": "channels_last memory format (faster on GPUs and on CPUs; width >= 8)",
    "attack_fold_batchnorm": "attack a BatchNorm-folded copy of the encoder (same adversary, "
    "faster)",
    "compile": "torch.compile the training forward and the attack (GPUs)",
    "sync_batchnorm": "under torchrun: SyncBatchNorm across processes (CUDA only)",
    "checkpoint_every": "epochs between checkpoints",
    "progress": "show a progress bar",
}


# The fixed sets of values of TrainConfig's choice fields: --help lists them, argparse checks them.
_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS,
    "attack_norm": NORMS,
    "attack_loss": ATTACK_LOSSES,
    "attack_source": ATTACK_SOURCES,
    "precision": PRECISIONS,
    "regularizer_forward": REGULARIZER_FORWARDS,
}


def _number(text: str) -> float:
    """Parse ``0.03``, ``8/255`` or ``1e-3``."""
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err


def _show(value: object) -> str:
    """A default as help shows it: multiples of 1/255 as fractions (8/255), others as is."""
    if isinstance(value, float) and not value.is_integer() and 0 < abs(value) < 10:
        numerator = round(value * 255)
        if numerator and numerator / 255 == value:
            return f"{numerator}/255"
    return str(value)


def _config_defaults(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """TrainConfig's field defaults, updated with ``overrides``, without building a config (its
    validation imports torch; --help must not)."""
    values = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }
    unknown = sorted(set(overrides or {}) - set(values))
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}.")
    return {**values, **(overrides or {})}


def _add_config_arguments(
    parser: argparse.ArgumentParser, overrides: dict[str, Any] | None = None
) -> None:
    group = parser.add_argument_group(
        "training configuration (TrainConfig; bool options also take --no-...)"
    )
    defaults = _config_defaults(overrides)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        help_text = f"{_HELP.get(f.name, f.name)} (default: {_show(default)})"
        if isinstance(default, bool):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif f.name in _CHOICES:
            group.add_argument(
                flag, dest=f.name, choices=_CHOICES[f.name], default=default, help=help_text
            )
        elif isinstance(default, int):
            group.add_argument(flag, dest=f.name, type=int, default=default, help=help_text)
        elif isinstance(default, float) or f.name == "grad_clip":
            group.add_argument(
                flag, dest=f.name, type=_number, default=default, metavar="X", help=help_text
            )
        else:
            group.add_argument(flag, dest=f.name, type=str, default=default, help=help_text)


def _add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    required: bool,
    max_per_class: int | None = None,
    holdout: bool = False,
) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        required=required,
        default=None if required else "sample",
        help="an ImageFolder path, 'cifar10' / 'cifar100' (with --data-root), 'sample' (the "
        "bundled 5,000-image CIFAR-10 sample) or 'sample-held-out' (2,000 bundled CIFAR-10 "
        "images that the bundled pretrained models never saw; 189 of them are also in "
        "'sample')",
    )
    group.add_argument("--data-root", default=None, help="root folder of cifar10 / cifar100")
    group.add_argument("--download", action="store_true", help="download cifar10 / cifar100")
    group.add_argument(
        "--max-per-class",
        type=int,
        default=max_per_class,
        help=f"use at most this many images per class (default: {max_per_class or 'all'})",
    )
    if holdout:
        group.add_argument(
            "--val-per-class",
            type=int,
            default=0,
            help="hold out this many images per class (seeded, stratified) from training; their "
            "indices go to OUT/split.json for an honest evaluation later (default: 0)",
        )


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if getattr(args, "simclr", False):
        values["adversarial"] = False
    return TrainConfig(**values)


def _read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file when it is not one."""
    try:
        value = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): expected {what}.") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}: expected {what}.")
    return value


def _load_split(args: argparse.Namespace, dataset: ImageDataset, part: str) -> ImageDataset:
    if not args.split:
        return dataset
    what = 'a split.json of `robust-contrastive train --val-per-class` ("train" and "val" lists)'
    split = _read_json_object(args.split, what)
    if part not in split:
        raise ValueError(f"{args.split} has no {part!r} indices (keys: {sorted(split)}).")
    indices = split[part]
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise ValueError(f"{args.split}: {part!r} must be a list of integer image indices.")
    return dataset.subset(indices)


def _paragraphs(text: str) -> str:
    """``text``'s paragraphs (separated by blank lines) re-wrapped as argparse wraps help."""
    width = max(min(shutil.get_terminal_size().columns - 2, 88), 40)
    return "\n\n".join(
        textwrap.fill(" ".join(paragraph.split()), width) for paragraph in text.split("\n\n")
    )


def _subcommand(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand whose --help opens with ``summary`` and ``description`` (paragraphs, wrapped
    here) and ends with ``examples`` (shell lines, shown as written)."""
    return sub.add_parser(
        name,
        help=summary,
        description=_paragraphs(f"{summary[0].upper()}{summary[1:]}.\n\n{description}"),
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
