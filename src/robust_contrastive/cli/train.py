"""``robust-contrastive train``: train an encoder without labels (RoCL, SimCLR, ACL, DynACL, AIR,
DeACL)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..layout import CHECKPOINT_DIR, LAST_CHECKPOINT, TRAIN_CONFIG_NAME
from ..training.acl_config import (
    ACL_CONFIG_NAME,
    ACL_REWEIGHTS,
    ACL_SCHEDULES,
    METHOD_DEFAULTS,
    ACLConfig,
)
from ..training.config import FlatConfig
from ..training.deacl_config import DEACL_CONFIG_NAME, STUDENT_INITS, DeACLConfig
from ._common import (
    _add_config_arguments,
    _add_data_arguments,
    _add_field_options,
    _add_run_arguments,
    _command,
    _load_data,
    _paragraphs,
    _refuse_existing_runs,
    _run_config,
    _show,
    _subcommand,
    _write_split,
    logger,
)

if TYPE_CHECKING:
    from ..data import ImageDataset
    from ..training.loop import FitResult

# --method -> (what it is, its config class). rocl and simclr take TrainConfig.
METHODS: dict[str, str] = {
    "rocl": "RoCL (Kim et al. 2020): the instance-wise attack and eq. (6)",
    "simclr": "SimCLR: the same without the attack (a standard encoder, e.g. a DeACL teacher)",
    "acl": "ACL (Jiang et al. 2020): adversarial pairs through a dual-BatchNorm encoder",
    "dynacl": "DynACL (Luo et al. 2023): ACL with annealed augmentation and re-weighted terms",
    "air": "AIR (Xu et al. 2023): DynACL with the standard and adversarial invariant regularisers",
    "deacl": "DeACL stage 2 (Zhang et al. 2022): a student distilled from --teacher against "
    "its adversary",
}
# The config class of each method that does not take TrainConfig, with its option group's title.
_ACL_TITLE = "ACL, DynACL, AIR (--method acl / dynacl / air; ACLConfig.for_method)"
METHOD_CONFIGS: dict[str, tuple[Any, str]] = {  # (a FlatConfig dataclass, title)
    "acl": (ACLConfig, _ACL_TITLE),
    "dynacl": (ACLConfig, _ACL_TITLE),
    "air": (ACLConfig, _ACL_TITLE),
    "deacl": (DeACLConfig, "DeACL (--method deacl; DeACLConfig)"),
}
# Fields that are no options: ACLConfig's method is --method.
_NOT_OPTIONS = frozenset({"method"})
# The string settings of the method configs that take one of a few values.
_METHOD_CHOICES = {
    "reweight": ACL_REWEIGHTS,
    "lr_schedule": ACL_SCHEDULES,
    "student_init": STUDENT_INITS,
}
# The settings file each method's run writes into OUT (a resume must find its own).
_CONFIG_FILES = {
    "rocl": TRAIN_CONFIG_NAME,
    "simclr": TRAIN_CONFIG_NAME,
    **dict.fromkeys(("acl", "dynacl", "air"), ACL_CONFIG_NAME),
    "deacl": DEACL_CONFIG_NAME,
}
DEFAULT_TEACHER_HINT = "simclr-resnet18-w16-cifar10-cpu"


@_command(
    "train an encoder without labels: RoCL (default), SimCLR, ACL, DynACL, AIR or DeACL",
    """RoCL: each step attacks an augmented view t(x) with the label-free instance-wise
attack (eq. 4) and minimises the robust contrastive loss (eq. 6); --method simclr drops
the attack. The defaults are the paper's (resnet18 of width 64, 1000 epochs, batch 256,
LARS): a GPU run; under torchrun, one process per GPU.

--method acl / dynacl / air train through a dual-BatchNorm encoder and save its
adversarial branch; their defaults are each official script's (ACLConfig.for_method).
--method deacl trains DeACL's student (stage 2) from a standard encoder given with
--teacher (stage 1: a folder of `train --method simclr`, or a registered name); its
defaults are the official code's (100 epochs of PGD-5, SGD lr 0.5, batch 256). Options
shared with RoCL (--epochs, --lr, --eps...) take each method's own default when not given.

OUT receives the encoder (RoCLEncoder.from_pretrained(OUT)), OUT/metrics.jsonl (one
line per epoch, counted from 1), the run's config (OUT/train_config.json, or
OUT/acl_config.json, OUT/deacl_config.json) and OUT/checkpoints/last.pt (continue
with --resume); RoCL and SimCLR also write OUT/projector/.""",
    """  robust-contrastive train --data sample --out runs/rocl --width 16 --epochs 10 \\
      --val-per-class 50
  robust-contrastive train --method deacl --teacher simclr-resnet18-w16-cifar10-cpu \\
      --data sample --out runs/deacl --epochs 10 --val-per-class 50
  robust-contrastive train --data cifar10 --data-root data --download --out runs/paper
  torchrun --nproc-per-node 2 -m robust_contrastive train --data cifar10 \\
      --data-root data --out runs/paper""",
)
def _cmd_train(args: argparse.Namespace) -> int:
    method = _method(args)
    if method in ("rocl", "simclr"):
        return _train_rocl(args, simclr=method == "simclr")
    return _train_method(args, method)


def _method(args: argparse.Namespace) -> str:
    """The --method, with --simclr as its old spelling; a clear error for mismatched options."""
    method: str = args.method or ("simclr" if args.simclr else "rocl")  # None: not given
    if args.simclr and method != "simclr":
        raise ValueError(f"--simclr is --method simclr: it cannot go with --method {method}.")
    if args.teacher is not None and method != "deacl":
        raise ValueError(f"--teacher is DeACL's (--method deacl), not --method {method}'s.")
    if method == "deacl" and args.teacher is None:
        raise ValueError(
            "--method deacl needs --teacher: the stage-1 standard encoder (a folder of "
            f"`robust-contrastive train --method simclr`, or e.g. {DEFAULT_TEACHER_HINT!r})."
        )
    if method == "simclr" and args.adversarial:
        raise ValueError("--adversarial is RoCL's: --method simclr (--simclr) has no attack.")
    return method


def _refuse_another_methods_run(args: argparse.Namespace, out: Path, method: str) -> None:
    """ValueError when ``--resume`` finds in OUT the checkpoint of another kind of method's run
    (its settings file is not ``method``'s)."""
    own = _CONFIG_FILES[method]
    if not args.resume or not (out / CHECKPOINT_DIR / LAST_CHECKPOINT).exists():
        return
    if (out / own).exists():
        return
    others = sorted({name for name in _CONFIG_FILES.values() if (out / name).exists()})
    if others:
        methods = [m for m, name in _CONFIG_FILES.items() if name == others[0]]
        raise ValueError(
            f"{out} holds a run of --method {' / '.join(methods)} ({out / others[0]}), not of "
            f"--method {method}: resume it with its own --method, or pick another --out."
        )


def _split(args: argparse.Namespace, seed: int) -> tuple[ImageDataset, Any]:
    """The training images of the data options and, with --val-per-class, the seeded split."""
    from ..data import train_val_split

    dataset = _load_data(args)
    if not args.val_per_class:
        return dataset, None
    split = train_val_split(dataset.labels, val_per_class=args.val_per_class, seed=seed)
    return dataset.subset(split[0]), split


def _train_rocl(args: argparse.Namespace, *, simclr: bool) -> int:
    from ..training import RoCLTrainer, distributed

    out = Path(args.out)
    _reject_options(args, "simclr" if simclr else "rocl", set(args.train_config_fields))
    config = _run_config(args, out)
    _refuse_another_methods_run(args, out, "simclr" if simclr else "rocl")
    if simclr:
        config = dataclasses.replace(config, adversarial=False)
    # Under torchrun (WORLD_SIZE > 1): one process per GPU (or CPU worker), DDP; rank 0 alone
    # logs, prints and writes. The group is destroyed at the end only if created here.
    with distributed.process_group_from_env():
        main_process = distributed.is_main_process()
        if not main_process:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        if args.download and not main_process:
            distributed.barrier()  # let rank 0 download alone
        train_set, split = _split(args, config.seed)
        if args.download and main_process:
            distributed.barrier()
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
    _report("RoCL" if config.adversarial else "SimCLR", len(train_set), seconds, result, out)
    print(f"projector: {out / 'projector'}  (ProjectionHead.from_pretrained(...))")
    return 0


def _method_config(args: argparse.Namespace, method: str) -> FlatConfig:
    """The method's config: its published defaults, replaced by the options given."""
    cls, _ = METHOD_CONFIGS[method]
    fields = {f.name for f in dataclasses.fields(cls)} - _NOT_OPTIONS
    _reject_options(args, method, fields)
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    config: FlatConfig = cls.for_method(method, **given) if cls is ACLConfig else cls(**given)
    return config


def _reject_options(args: argparse.Namespace, method: str, fields: set[str]) -> None:
    """ValueError naming the options given that are not settings of ``method``."""
    given = {name for name in args.config_fields if getattr(args, name, None) is not None}
    stray = sorted(given - fields)
    if stray:
        options = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise ValueError(
            f"{options} {'is' if len(stray) == 1 else 'are'} not a setting of --method {method} "
            f"(see `robust-contrastive train --help` for each method's options)."
        )


def _train_method(args: argparse.Namespace, method: str) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"--method {method} trains in one process: run it without torchrun (torchrun is "
            "for --method rocl / simclr)."
        )
    out = Path(args.out)
    config = _method_config(args, method)
    _refuse_existing_runs(args, out)
    _refuse_another_methods_run(args, out, method)
    seed = int(config.to_dict()["seed"])  # every method config has a seed
    train_set, split = _split(args, seed)
    logger.info("training %s on %d images (%s) into %s", method, len(train_set), args.data, out)
    start = time.perf_counter()
    name, result = _RUNNERS[method](args, config, train_set, out)
    seconds = time.perf_counter() - start
    if split is not None:
        _write_split(out, args.data, seed, *split, val_per_class=args.val_per_class)
    _report(name, len(train_set), seconds, result, out)
    return 0


def _run_deacl(
    args: argparse.Namespace, config: FlatConfig, train_set: ImageDataset, out: Path
) -> tuple[str, FitResult]:
    from ..training.deacl import train_deacl

    deacl = cast(DeACLConfig, config)  # METHOD_CONFIGS["deacl"]
    return "DeACL", train_deacl(args.teacher, train_set, deacl, out, resume=args.resume)


def _run_acl(
    args: argparse.Namespace, config: FlatConfig, train_set: ImageDataset, out: Path
) -> tuple[str, FitResult]:
    from ..training.acl import train_acl

    acl = cast(ACLConfig, config)  # METHOD_CONFIGS["acl" / "dynacl" / "air"]
    name = {"acl": "ACL", "dynacl": "DynACL", "air": "AIR"}[acl.method]
    return name, train_acl(train_set, acl, out, resume=args.resume)


# --method -> its run: (args, config, training images, OUT) -> (display name, result).
_RUNNERS: dict[
    str, Callable[[argparse.Namespace, FlatConfig, ImageDataset, Path], tuple[str, FitResult]]
] = {"acl": _run_acl, "dynacl": _run_acl, "air": _run_acl, "deacl": _run_deacl}


def _report(name: str, images: int, seconds: float, result: FitResult, out: Path) -> None:
    last = result.history[-1] if result.history else {}
    print(f"trained {name} on {images} images in {seconds:.0f} s; last epoch: {json.dumps(last)}")
    print(f"encoder:   {out}  (RoCLEncoder.from_pretrained('{out}'))")
    print(f"metrics:   {out / 'metrics.jsonl'}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = _subcommand(sub, _cmd_train)
    _add_data_arguments(train, required=True, holdout=True)
    train.add_argument("--out", required=True, help="output folder (encoder, projector, logs)")
    _add_run_arguments(train, "resume from OUT/checkpoints")
    train.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=None,  # rocl, or simclr with --simclr (an explicit --method rocl refuses it)
        help="; ".join(f"{name}: {what}" for name, what in METHODS.items()) + " (default: rocl)",
    )
    train.add_argument("--simclr", action="store_true", help="the same as --method simclr")
    train.add_argument(
        "--teacher",
        default=None,
        help="--method deacl: the stage-1 standard encoder, a folder or registered name "
        f"(e.g. {DEFAULT_TEACHER_HINT})",
    )
    # Every option is None unless given: each method fills in its own defaults (shown: RoCL's).
    shared = _add_config_arguments(train, optional=True)
    names = list(shared)
    for cls, title in dict.fromkeys(METHOD_CONFIGS.values()):  # one group per config class
        common = [f for f in dataclasses.fields(cls) if f.name in names]
        changes = ""
        if cls is ACLConfig:  # what DynACL and AIR change from ACL's defaults
            changes = "; " + "; ".join(
                f"{m} changes " + ", ".join(f"{k} {_show(v)}" for k, v in values.items())
                for m, values in METHOD_DEFAULTS.items()
                if values
            )
        group = train.add_argument_group(
            title,
            _paragraphs(  # wrapped here: the command's help formatter keeps text as written
                "its own options below, and these of the above with its own defaults: "
                + ", ".join(f"--{f.name.replace('_', '-')} {_show(f.default)}" for f in common)
                + changes
            ),
        )
        names += _add_field_options(
            group,
            cls,
            {},
            choices=_METHOD_CHOICES,
            optional=True,
            skip=frozenset(names) | _NOT_OPTIONS,
        )
    train.set_defaults(train_config_fields=tuple(shared), config_fields=tuple(names))
