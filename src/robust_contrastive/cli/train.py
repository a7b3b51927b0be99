"""``robust-contrastive train``: train a RoCL (or SimCLR) encoder without labels."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light modules at import: `robust-contrastive --help` must not wait for torch. The
# commands import what they use (torch, the models, the data...) when they run.
from .._io import atomic_write_text
from ..layout import CHECKPOINT_DIR, LAST_CHECKPOINT, SPLIT_NAME
from ..training.config import TrainConfig

if TYPE_CHECKING:
    pass

from ._common import (
    _add_config_arguments,
    _add_data_arguments,
    _config_from_args,
    _subcommand,
    logger,
)


def _run_training(args: argparse.Namespace, config: TrainConfig) -> dict[str, Any]:
    from ..data import load_dataset, train_val_split
    from ..training import RoCLTrainer, distributed

    out = Path(args.out)
    main_process = distributed.is_main_process()
    if args.download and not main_process:
        distributed.barrier()  # let rank 0 download alone
    dataset = load_dataset(
        args.data, root=args.data_root, download=args.download, max_per_class=args.max_per_class
    )
    if args.download and main_process:
        distributed.barrier()
    train_set = dataset
    split: dict[str, Any] | None = None
    if args.val_per_class:
        train_idx, val_idx = train_val_split(
            dataset.labels, val_per_class=args.val_per_class, seed=config.seed
        )
        train_set = dataset.subset(train_idx)
        split = {
            "data": str(args.data),
            "seed": config.seed,
            "val_per_class": args.val_per_class,
            "train": train_idx.tolist(),
            "val": val_idx.tolist(),
        }
    logger.info("training on %d images (%s) into %s", len(train_set), args.data, out)
    start = time.perf_counter()
    result = RoCLTrainer(config, out).fit(train_set, resume=args.resume)
    seconds = time.perf_counter() - start
    if split is not None and main_process:  # the same seeded split on every process
        # Written with the weights it belongs to: a run refused on its arguments (a resume with
        # another seed, too few images...) leaves an existing run's split.json untouched.
        atomic_write_text(out / SPLIT_NAME, json.dumps(split))
    last = result.history[-1] if result.history else {}
    return {"seconds": seconds, "images": len(train_set), "last": last, "out": out}


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import distributed

    config = _config_from_args(args)
    existing = Path(args.out) / CHECKPOINT_DIR / LAST_CHECKPOINT
    if existing.exists() and not args.resume and not args.overwrite:
        raise FileExistsError(
            f"{args.out} already holds a training run ({existing}): continue it with --resume, "
            "start it again from scratch with --overwrite, or pick another --out."
        )
    # Under torchrun (WORLD_SIZE > 1): one process per GPU (or CPU worker), DDP; rank 0 alone
    # logs, prints and writes. The group is destroyed at the end only if created here.
    with distributed.process_group_from_env():
        main_process = distributed.is_main_process()
        if not main_process:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        summary = _run_training(args, config)
    if not main_process:
        return 0
    out = summary["out"]
    print(
        f"trained {'RoCL' if config.adversarial else 'SimCLR'} on {summary['images']} images "
        f"in {summary['seconds']:.0f} s; last epoch: {json.dumps(summary['last'])}"
    )
    print(f"encoder:   {out}  (RoCLEncoder.from_pretrained('{out}'))")
    print(f"projector: {out / 'projector'}  (ProjectionHead.from_pretrained(...))")
    print(f"metrics:   {out / 'metrics.jsonl'}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` subcommand(s) to ``sub``."""
    train = _subcommand(
        sub,
        "train",
        "train a RoCL (or --simclr) encoder without labels",
        """RoCL: each step attacks an augmented view t(x) with the label-free instance-wise
attack (eq. 4) and minimises the robust contrastive loss (eq. 6); --simclr drops the
attack. The defaults are the paper's (resnet18 of width 64, 1000 epochs, batch 256,
LARS): a GPU run; under torchrun, one process per GPU.

OUT receives the encoder (RoCLEncoder.from_pretrained(OUT)), OUT/projector/,
OUT/metrics.jsonl (one line per epoch, counted from 1), OUT/train_config.json and
OUT/checkpoints/last.pt (continue with --resume).""",
        """  robust-contrastive train --data sample --out runs/rocl --width 16 --epochs 10 \\
      --val-per-class 50
  robust-contrastive train --data cifar10 --data-root data --download --out runs/paper
  torchrun --nproc-per-node 2 -m robust_contrastive train --data cifar10 \\
      --data-root data --out runs/paper""",
    )
    _add_data_arguments(train, required=True, holdout=True)
    train.add_argument("--out", required=True, help="output folder (encoder, projector, logs)")
    train.add_argument("--resume", action="store_true", help="resume from OUT/checkpoints")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start from scratch even if OUT holds a run (its checkpoint is replaced)",
    )
    train.add_argument("--simclr", action="store_true", help="plain SimCLR (no attack)")
    _add_config_arguments(train)
    train.set_defaults(func=_cmd_train)
