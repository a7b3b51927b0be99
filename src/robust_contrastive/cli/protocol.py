"""``robust-contrastive protocol``: one encoder under SLF, ALF and AFF, one table."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import CONFIG_NAME, ENCODER_DIR
from ..protocol_config import (
    PROTOCOL_AUGMENTATIONS,
    PROTOCOL_MODES,
    PROTOCOL_SELECTIONS,
    ProtocolConfig,
)
from ._common import (
    _add_data_arguments,
    _add_field_options,
    _command,
    _load_data,
    _number,
    _read_json_object,
    _show,
    _subcommand,
)

if TYPE_CHECKING:
    from ..data import ImageDataset
    from ..models import RoCLEncoder

_CHOICES: dict[str, tuple[str, ...]] = {
    "augment": PROTOCOL_AUGMENTATIONS,
    "slf_select": PROTOCOL_SELECTIONS,
}
# --data values whose held-out test images the command finds by itself
_TEST_DATA = {"sample": "sample-held-out", "cifar10": "cifar10", "cifar100": "cifar100"}


def _load_encoder(name: str) -> tuple[RoCLEncoder, Path]:
    """The encoder of a folder or registered name; a classifier folder gives its encoder."""
    from ..models import RoCLEncoder
    from ..registry import resolve_model_folder

    folder = resolve_model_folder(name)
    config_path = folder / CONFIG_NAME
    if config_path.is_file() and (folder / ENCODER_DIR / CONFIG_NAME).is_file():
        model_type = _read_json_object(config_path, "a model's config").get("model_type")
        if model_type != RoCLEncoder.model_type:  # a probe or a fine-tuned classifier
            folder = folder / ENCODER_DIR
    return RoCLEncoder.from_pretrained(folder), folder


def _test_set(args: argparse.Namespace) -> tuple[ImageDataset, str]:
    """The held-out test images: --test-data, or the data's own held-out set."""
    from ..data import load_dataset

    spec = args.test_data
    if spec is None:
        key = str(args.data).lower()
        if key not in _TEST_DATA:
            raise ValueError(
                f"--data {args.data} has no held-out set the command knows: pass --test-data "
                "(an ImageFolder of images that are not in --data)."
            )
        spec = _TEST_DATA[key]
    official = str(spec).lower() in ("cifar10", "cifar100")  # their official test split
    test = load_dataset(spec, root=args.data_root, download=args.download, train=not official)
    name = f"{spec} (test split)" if official else str(spec)
    if args.test_per_class:
        test = test.stratified(args.test_per_class, seed=args.seed)
        name += f", a stratified {args.test_per_class} per class"
    return test, name


def _config(args: argparse.Namespace) -> ProtocolConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProtocolConfig)}
    values["milestones"] = tuple(values["milestones"])
    return ProtocolConfig(**values)


@_command(
    "score an encoder under SLF, ALF and AFF (the RobustSSL benchmark's protocol), as one table",
    """Trains, on the labelled --data, a linear head on the frozen encoder with clean images
(SLF), a linear head on PGD images (ALF) and the whole network with TRADES (AFF), each for
25 epochs with the lr divided by 10 from epochs 15 and 20 (the RobustSSL benchmark's
budgets); keeps each mode's epoch on a seeded, stratified validation split of --data
(--val-fraction), never on test images; then scores the kept model on the held-out test
images: clean, PGD-20 (step 2/255) and AutoAttack standard (with torchattacks). Images of
--data that are also test images are left out of training. Prints the table and writes
OUT/protocol.json and OUT/protocol.md.""",
    """  robust-contrastive protocol --model rocl-resnet18-w16-cifar10-cpu --data sample \\
      --out runs/protocol-rocl --epochs 2 --max-per-class 100 --no-autoattack
  robust-contrastive protocol --model runs/rocl --data cifar10 --data-root data \\
      --out runs/rocl/protocol --modes slf alf""",
)
def _cmd_protocol(args: argparse.Namespace) -> int:
    import torch

    from ..data import train_val_split
    from ..evaluation.protocol import (
        PROTOCOL_JSON,
        PROTOCOL_MD,
        evaluate_protocol,
        repeated_images,
        shared_images,
    )

    config = _config(args)
    encoder, folder = _load_encoder(args.model)
    test, test_name = _test_set(args)
    pool = _load_data(args)
    shared = shared_images(pool, test)
    repeated = repeated_images(pool)  # a copy could land in both the train and val parts
    if len(shared) or len(repeated):
        keep = torch.ones(len(pool), dtype=torch.bool)
        keep[shared] = False
        keep[repeated] = False
        pool = pool.subset(keep)
        if len(shared):
            print(f"left out {len(shared)} images of --data that are also test images")
        if len(repeated):
            print(f"left out {len(repeated)} repeated copies of images of --data")
        if len(pool) < 2:
            raise ValueError(
                f"every image of --data {args.data} is also a test image of {test_name}: "
                "train on other images, or pass another --test-data."
            )
    if not 0 <= args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    val = None
    if args.val_fraction > 0:
        fit_idx, val_idx = train_val_split(
            pool.labels, val_fraction=args.val_fraction, seed=args.seed
        )
        train, val = pool.subset(fit_idx), pool.subset(val_idx)
    else:
        train = pool
    per_class = f", at most {args.max_per_class} per class" if args.max_per_class else ""
    n_test = min(config.n_test_images or len(test), len(test))
    auto = "AutoAttack standard" if config.autoattack else "no AutoAttack"
    if config.autoattack and config.n_autoattack_images is not None:
        auto += f" on {min(config.n_autoattack_images, n_test)} of them"
    decays = [m for m in config.milestones if m < config.epochs]
    schedule = f"lr x0.1 from {', '.join(map(str, decays))}" if decays else "a constant lr"
    caption = (
        f"{args.model} ({folder}): {config.epochs} epochs ({schedule}), {len(train)} training "
        f"images of {args.data}{per_class}, {0 if val is None else len(val)} validation "
        f"images, test on {n_test} images of {test_name}; PGD-"
        f"{config.test_attack_steps} (eps {_show(config.eps)}, step {_show(config.alpha)}), "
        f"{auto}."
    )
    out = Path(args.out)
    result = evaluate_protocol(
        encoder,
        train,
        val,
        test,
        modes=args.modes,
        config=config,
        out_dir=out,  # finished modes are written as they complete
        progress=not args.no_progress,
    )
    result.info.update(
        caption=caption, model=str(args.model), data=str(args.data), test_data=test_name
    )
    result.to_json(out / PROTOCOL_JSON)
    from .._io import atomic_write_text

    atomic_write_text(out / PROTOCOL_MD, result.to_markdown() + "\n")
    print(result.to_markdown())
    print(f"\nresult: {out / PROTOCOL_JSON} (and {out / PROTOCOL_MD})")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subcommand(sub, _cmd_protocol)
    parser.add_argument(
        "--model",
        required=True,
        help="an encoder folder (save_pretrained), a probe or classifier folder (its encoder), "
        "or a registered name (list-pretrained)",
    )
    _add_data_arguments(parser, required=True)
    parser.add_argument(
        "--test-data",
        default=None,
        help="held-out test images (default: 'sample-held-out' for --data sample, the official "
        "test split for cifar10 / cifar100)",
    )
    parser.add_argument(
        "--test-per-class",
        type=int,
        default=None,
        help="score a seeded, stratified part of the test images: N per class (default: all)",
    )
    parser.add_argument(
        "--val-fraction",
        type=_number,
        default=0.1,
        help="seeded, stratified fraction of --data held out to pick each mode's epoch; 0 keeps "
        "the last epoch (default: 0.1)",
    )
    parser.add_argument("--out", required=True, help="output folder (protocol.json, protocol.md)")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(PROTOCOL_MODES),
        choices=PROTOCOL_MODES,
        help="the modes to run (default: slf alf aff)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group(
        "protocol configuration (ProtocolConfig; bool options also take --no-..., numbers also "
        "fractions such as 8/255)"
    )
    _add_field_options(group, ProtocolConfig, {}, choices=_CHOICES)
