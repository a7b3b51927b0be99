"""The ``robust-contrastive`` command line: ``train`` and ``quickstart``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from .data import load_dataset, train_val_split
from .training import NonFiniteLossError, RoCLTrainer, TrainConfig

logger = logging.getLogger("robust_contrastive")

SPLIT_FILE = "split.json"

# Help for every TrainConfig field exposed as --field-name.
_HELP: dict[str, str] = {
    "arch": "encoder architecture: resnet18 (paper), resnet34, resnet50",
    "width": "channels of the first ResNet stage (64 = paper, 16 fits a CPU)",
    "projection_hidden_dim": "projector hidden width",
    "projection_dim": "projector output (latent) dimension",
    "adversarial": "RoCL (instance-wise adversarial views); --no-adversarial = SimCLR",
    "temperature": "NT-Xent temperature",
    "reg_lambda": "eq. (6): the regulariser is weighted 1/reg_lambda",
    "regularizer_forward": "separate (original: own forward of adv, t'(x)) or shared",
    "eps": "attack radius; fractions like 8/255 are accepted",
    "alpha": "attack step size; fractions like 2/255 are accepted",
    "attack_steps": "PGD steps of the training attack",
    "attack_norm": "linf or l2",
    "attack_loss": "contrastive (paper), mse, cosine or l1",
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
    "precision": "fp32 or bf16 (autocast, GPUs)",
    "channels_last": "channels_last memory format (GPUs)",
    "checkpoint_every": "epochs between checkpoints",
    "progress": "show a progress bar",
}


def _number(text: str) -> float:
    """Parse ``0.03``, ``8/255`` or ``1e-3``."""
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err


def _add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    group = parser.add_argument_group("training configuration (TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{_HELP.get(f.name, f.name)} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif isinstance(default, int):
            group.add_argument(flag, dest=f.name, type=int, default=default, help=help_text)
        elif isinstance(default, float) or f.name == "grad_clip":
            group.add_argument(flag, dest=f.name, type=_number, default=default, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=str, default=default, help=help_text)


def _add_data_arguments(
    parser: argparse.ArgumentParser, *, required: bool, max_per_class: int | None = None
) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        required=required,
        default=None if required else "sample",
        help="an ImageFolder path, 'cifar10' / 'cifar100' (with --data-root), or 'sample' "
        "(the bundled 5,000-image CIFAR-10 sample)",
    )
    group.add_argument("--data-root", default=None, help="root folder of cifar10 / cifar100")
    group.add_argument("--download", action="store_true", help="download cifar10 / cifar100")
    group.add_argument(
        "--max-per-class",
        type=int,
        default=max_per_class,
        help=f"use at most this many images per class (default: {max_per_class or 'all'})",
    )
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


def _run_training(args: argparse.Namespace, config: TrainConfig) -> dict[str, Any]:
    out = Path(args.out)
    dataset = load_dataset(
        args.data, root=args.data_root, download=args.download, max_per_class=args.max_per_class
    )
    train_set = dataset
    if args.val_per_class:
        train_idx, val_idx = train_val_split(
            dataset.labels, val_per_class=args.val_per_class, seed=config.seed
        )
        train_set = dataset.subset(train_idx)
        out.mkdir(parents=True, exist_ok=True)
        split = {
            "data": str(args.data),
            "seed": config.seed,
            "val_per_class": args.val_per_class,
            "train": train_idx.tolist(),
            "val": val_idx.tolist(),
        }
        (out / SPLIT_FILE).write_text(json.dumps(split))
    logger.info("training on %d images (%s) into %s", len(train_set), args.data, out)
    start = time.perf_counter()
    result = RoCLTrainer(config, out).fit(train_set, resume=args.resume)
    seconds = time.perf_counter() - start
    last = result.history[-1] if result.history else {}
    return {"seconds": seconds, "images": len(train_set), "last": last, "out": out}


def _cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    summary = _run_training(args, config)
    out = summary["out"]
    print(
        f"trained {'RoCL' if config.adversarial else 'SimCLR'} on {summary['images']} images "
        f"in {summary['seconds']:.0f} s; last epoch: {json.dumps(summary['last'])}"
    )
    print(f"encoder:   {out}  (RoCLEncoder.from_pretrained('{out}'))")
    print(f"projector: {out / 'projector'}  (ProjectionHead.from_pretrained(...))")
    print(f"metrics:   {out / 'metrics.jsonl'}")
    return 0


# The quickstart: a CPU-sized RoCL run (resnet18 at width 16, 2,000 of the sample's images,
# 2 epochs): a few minutes on 2 CPU cores. Everything else is the paper's setting.
QUICKSTART = TrainConfig(width=16, epochs=2, batch_size=128, warmup_epochs=1, checkpoint_every=1)
QUICKSTART_PER_CLASS = 200


def _cmd_quickstart(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    summary = _run_training(args, config)
    out = summary["out"]
    last = summary["last"]
    print()
    print(
        f"Trained a RoCL encoder ({config.arch}, width {config.width}) on {summary['images']} "
        f"bundled CIFAR-10 images for {config.epochs} epochs in {summary['seconds']:.0f} s "
        f"({last.get('images_per_s', 0):.1f} images/s, final loss {last.get('loss', 0):.4f})."
    )
    print(f"Saved to {out}/ (encoder), {out}/projector/, metrics in {out}/metrics.jsonl.")
    print("Next:")
    print("  from robust_contrastive import RoCLEncoder")
    print(f"  encoder = RoCLEncoder.from_pretrained('{out}')")
    print("  features = encoder(images)  # images: (B, 3, 32, 32) float in [0, 1]")
    print(
        "Train for real:  robust-contrastive train --data PATH --width 64 --epochs 1000 "
        "--out runs/rocl"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-contrastive",
        description="Train adversarially robust encoders without labels (RoCL).",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages and show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a RoCL (or --simclr) encoder")
    _add_data_arguments(train, required=True)
    train.add_argument("--out", required=True, help="output folder (encoder, projector, logs)")
    train.add_argument("--resume", action="store_true", help="resume from OUT/checkpoints")
    train.add_argument("--simclr", action="store_true", help="plain SimCLR (no attack)")
    _add_config_arguments(train, TrainConfig())
    train.set_defaults(func=_cmd_train)

    quick = sub.add_parser(
        "quickstart", help="train a small RoCL encoder on the bundled sample (CPU, minutes)"
    )
    _add_data_arguments(quick, required=False, max_per_class=QUICKSTART_PER_CLASS)
    quick.add_argument("--out", default="quickstart-run", help="output folder")
    quick.add_argument("--resume", action="store_true", help="resume from OUT/checkpoints")
    _add_config_arguments(quick, QUICKSTART)
    quick.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robust-contrastive`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", "OUT")
        parser.exit(
            130,
            f"interrupted; continue the run with the same command plus --resume "
            f"(checkpoints in {out}/checkpoints)\n",
        )
    except (ValueError, TypeError, OSError, NonFiniteLossError) as err:
        if args.verbose:
            raise
        parser.exit(2, f"robust-contrastive {args.command}: error: {err}\n")
    return code
