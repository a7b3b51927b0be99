"""``robust-contrastive lpaft``: DynACL++'s post-processing of any encoder, without labels."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ..training.lpaft_config import KMEANS_INITS, LPAFT_CONFIG_NAME, LPAFTConfig
from ._common import (
    _add_data_arguments,
    _add_field_options,
    _add_run_arguments,
    _command,
    _load_data,
    _subcommand,
    logger,
)

_CHOICES: dict[str, tuple[str, ...]] = {"kmeans_init": KMEANS_INITS}


@_command(
    "post-process an encoder with DynACL++'s LP-AFT, without labels",
    """DynACL++ (Luo et al., ICLR 2023): k-means pseudo-labels of the encoder's features, a
clean linear probe on them, then adversarial full fine-tuning (TRADES) from that probe's head.
No label of --data is read, but by --max-per-class (a class-balanced subset: leave it out for a
label-free run). The defaults are the official CIFAR-10 run's (k = 10, a 10-epoch probe, 25
epochs of TRADES with PGD-10 at batch 512): a GPU run.

OUT receives the fine-tuned encoder (RoCLEncoder.from_pretrained(OUT); evaluate it with
`robust-contrastive protocol --model OUT`), OUT/pseudo_labels.json (the labels and the cluster
sizes), OUT/probe/ (the probe), OUT/finetune/ (metrics.jsonl, checkpoints) and
OUT/lpaft_config.json. A killed run continues with --resume: finished stages are not redone.""",
    """  robust-contrastive lpaft --model rocl-resnet18-w16-cifar10-cpu --data sample \\
      --out runs/lpaft --epochs 2 --attack-steps 3 --device cpu
  robust-contrastive lpaft --model runs/dynacl --data cifar10 --data-root data \\
      --out runs/dynacl-plus""",
)
def _cmd_lpaft(args: argparse.Namespace) -> int:
    from ..training.lpaft import FINETUNE_DIR, train_lpaft

    out = Path(args.out)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(LPAFTConfig)}
    values["milestones"] = tuple(values["milestones"])
    config = LPAFTConfig(**values)
    if (out / LPAFT_CONFIG_NAME).exists() and not args.resume and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds an LP-AFT run ({out / LPAFT_CONFIG_NAME}): continue it with "
            "--resume, start it again from scratch with --overwrite, or pick another --out."
        )
    dataset = _load_data(args)
    logger.info("LP-AFT of %s on %d images (%s) into %s", args.model, len(dataset), args.data, out)
    start = time.perf_counter()
    result = train_lpaft(
        args.model,
        dataset.images,
        config,
        out,
        resume=args.resume,
        cluster_encoder=args.cluster_model,
    )
    seconds = time.perf_counter() - start
    last = result.history[-1] if result.history else {}
    print(
        f"LP-AFT of {args.model} on {len(dataset)} images in {seconds:.0f} s; pseudo-labels: "
        f"{config.clusters} clusters of sizes {result.cluster_sizes}"
    )
    print(f"last fine-tuning epoch: {json.dumps(last)}")
    print(f"encoder: {out}  (RoCLEncoder.from_pretrained('{out}'))")
    print(f"metrics: {out / FINETUNE_DIR / 'metrics.jsonl'}")
    return 0


def _add_lpaft_config_arguments(parser: argparse.ArgumentParser) -> None:
    """An option per LPAFTConfig field, its help the field's comment, read without torch."""
    group = parser.add_argument_group(
        "LP-AFT configuration (LPAFTConfig; bool options also take --no-..., numbers also "
        "fractions such as 8/255)"
    )
    _add_field_options(group, LPAFTConfig, {}, choices=_CHOICES)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subcommand(sub, _cmd_lpaft)
    parser.add_argument(
        "--model",
        required=True,
        help="the encoder to post-process: a folder (save_pretrained) or a registered name "
        "(list-pretrained)",
    )
    parser.add_argument(
        "--cluster-model",
        default=None,
        help="the encoder whose features k-means clusters, a folder or a registered name "
        "(default: --model). The official DynACL++ clusters the clean BatchNorm branch and "
        "fine-tunes the adversarial one: convert the checkpoint with --branch clean for this "
        "option and with --branch adv for --model",
    )
    _add_data_arguments(parser, required=True)
    parser.add_argument("--out", required=True, help="output folder (encoder, stages, logs)")
    _add_run_arguments(parser, "continue the run in OUT (finished stages are kept)")
    _add_lpaft_config_arguments(parser)
