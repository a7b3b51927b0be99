"""``robust-contrastive train``: train a RoCL (or SimCLR) encoder without labels."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ._common import (
    _add_config_arguments,
    _add_data_arguments,
    _add_run_arguments,
    _command,
    _load_data,
    _run_config,
    _subcommand,
    _write_split,
    logger,
)


@_command(
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
def _cmd_train(args: argparse.Namespace) -> int:
    from ..data import train_val_split
    from ..training import RoCLTrainer, distributed

    out = Path(args.out)
    config = _run_config(args, out)
    # Under torchrun (WORLD_SIZE > 1): one process per GPU (or CPU worker), DDP; rank 0 alone
    # logs, prints and writes. The group is destroyed at the end only if created here.
    with distributed.process_group_from_env():
        main_process = distributed.is_main_process()
        if not main_process:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        if args.download and not main_process:
            distributed.barrier()  # let rank 0 download alone
        dataset = _load_data(args)
        if args.download and main_process:
            distributed.barrier()
        train_set, split = dataset, None
        if args.val_per_class:
            split = train_val_split(
                dataset.labels, val_per_class=args.val_per_class, seed=config.seed
            )
            train_set = dataset.subset(split[0])
        logger.info("training on %d images (%s) into %s", len(train_set), args.data, out)
        start = time.perf_counter()
        result = RoCLTrainer(config, out).fit(train_set, resume=args.resume)
        seconds = time.perf_counter() - start
        if split is not None and main_process:  # the same seeded split on every process
            # Written with the weights it belongs to: a run refused on its arguments (a resume
            # with another seed, too few images...) leaves an existing run's split.json untouched.
            _write_split(out, args.data, config.seed, *split, val_per_class=args.val_per_class)
    if not main_process:
        return 0
    last = result.history[-1] if result.history else {}
    print(
        f"trained {'RoCL' if config.adversarial else 'SimCLR'} on {len(train_set)} images "
        f"in {seconds:.0f} s; last epoch: {json.dumps(last)}"
    )
    print(f"encoder:   {out}  (RoCLEncoder.from_pretrained('{out}'))")
    print(f"projector: {out / 'projector'}  (ProjectionHead.from_pretrained(...))")
    print(f"metrics:   {out / 'metrics.jsonl'}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = _subcommand(sub, _cmd_train)
    _add_data_arguments(train, required=True, holdout=True)
    train.add_argument("--out", required=True, help="output folder (encoder, projector, logs)")
    _add_run_arguments(train, "resume from OUT/checkpoints")
    train.add_argument("--simclr", action="store_true", help="plain SimCLR (no attack)")
    _add_config_arguments(train)
