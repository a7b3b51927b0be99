"""The ``robust-contrastive`` command line (train, quickstart, probe, evaluate, card, push...)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light modules at import: `robust-contrastive --help` must not wait for torch. The
# commands import what they use (torch, the models, the data...) when they run.
from . import __version__
from ._io import atomic_write_text
from ._names import (
    ARCHS,
    ATTACK_LOSSES,
    ATTACK_SOURCES,
    NORMS,
    PRECISIONS,
    REGULARIZER_FORWARDS,
    THREAT_NAMES,
)
from .layout import CHECKPOINT_DIR, CONFIG_NAME, LAST_CHECKPOINT, PROJECTOR_DIR, SPLIT_NAME
from .training.config import TrainConfig

if TYPE_CHECKING:
    from .data import ImageDataset
    from .evaluation.finetuning import RobustClassifier
    from .evaluation.probe import RobustLinearProbe

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


def _number(text: str) -> float:
    """Parse ``0.03``, ``8/255`` or ``1e-3``."""
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err


# The fixed sets of values of TrainConfig's choice fields: --help lists them, argparse checks them.
_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS,
    "attack_norm": NORMS,
    "attack_loss": ATTACK_LOSSES,
    "attack_source": ATTACK_SOURCES,
    "precision": PRECISIONS,
    "regularizer_forward": REGULARIZER_FORWARDS,
}


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


def _run_training(args: argparse.Namespace, config: TrainConfig) -> dict[str, Any]:
    from .data import load_dataset, train_val_split
    from .training import RoCLTrainer, distributed

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
    from .training import distributed

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


# The quickstart: CPU-sized SimCLR and RoCL runs, a linear probe on each, and clean / PGD-20
# accuracy on 500 held-out images: the paper's headline claim in miniature, in minutes on 2 CPU
# cores. The paper's optimiser (LARS with trust 0.001, 10 warm-up epochs) is tuned for 1000
# epochs and barely moves the weights in 60 steps, so this short run uses plain SGD (lr 0.5,
# momentum 0.9, cosine, no warm-up) on a width-8 resnet18; every other setting is the paper's.
QUICKSTART: dict[str, Any] = {  # TrainConfig fields that differ from the paper's defaults
    "width": 8,
    "epochs": 4,
    "batch_size": 128,
    "lars": False,
    "lr": 0.5,
    "lr_warmup_multiplier": 1.0,
    "warmup_epochs": 0,
    "checkpoint_every": 1,
}
QUICKSTART_PER_CLASS = 200  # images per class used for self-supervised training
QUICKSTART_HELD_OUT = 50  # images per class held out for evaluation (never trained or probed on)
QUICKSTART_PROBE_EPOCHS = 50  # linear probe epochs (on cached features: seconds)
QUICKSTART_LOG = "quickstart.log"  # in OUT: every INFO message of the run (per-epoch metrics...)
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleAboveBars(logging.Handler):
    """Writes log records to stderr above the progress bars (tqdm.write), not through them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's convention: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def _details_to_file(path: Path, *, verbose: bool, append: bool) -> Iterator[None]:
    """Within the block, the library's messages go to the log file ``path``; the console
    (stderr) gets only its warnings and errors (everything with ``--verbose``)."""
    library = logging.getLogger("robust_contrastive")
    to_file = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    to_file.setFormatter(logging.Formatter(_LOG_FORMAT))
    console = _ConsoleAboveBars()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level, saved_propagate = library.level, library.propagate
    library.setLevel(logging.DEBUG if verbose else logging.INFO)
    library.propagate = False  # not also through the root logger's console handler
    library.addHandler(to_file)
    library.addHandler(console)
    try:
        yield
    finally:
        library.removeHandler(console)
        library.removeHandler(to_file)
        to_file.close()
        library.setLevel(saved_level)
        library.propagate = saved_propagate


def _cmd_quickstart(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / QUICKSTART_LOG
    print(f"robust-contrastive quickstart: details (losses, probe epochs) go to {log}")
    with _details_to_file(log, verbose=args.verbose, append=args.resume):
        logger.info("quickstart %s, config %s", __version__, json.dumps(config.to_dict()))
        summary = _run_quickstart(args, config, out)
    rows, seconds = summary["rows"], summary["seconds"]
    print()
    print(
        f"Quickstart: resnet18 (width {config.width}) trained without labels on "
        f"{summary['pretrain_images']} {summary['data']} images for {config.epochs} epochs; "
        f"linear probe on {summary['probe_images']} images; evaluated on "
        f"{summary['held_out_images']} held-out images."
    )
    print()
    print("| method | clean acc. (%) | PGD-20 l-inf 8/255 acc. (%) | train images/s |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['method']} | {100 * row['clean']:.1f} | {100 * row['pgd20']:.1f} | "
            f"{row['train_images_per_s']:.1f} |"
        )
    print()
    print(
        f"Chance: {100 * summary['chance']:.1f} % ({summary['num_classes']} classes; always "
        "answering the most frequent held-out class). PGD-20: 20 steps of 2/255."
    )
    print(
        "train images/s: training images per second in the last epoch, each image counted once "
        "(RoCL's time includes its 7-step attack on every batch)."
    )
    print()
    print(
        f"Done in {seconds:.0f} s. Models in {out}/simclr and {out}/rocl (encoder, projector/, "
        f"probe/), reports in */report.json, per-epoch metrics in */metrics.jsonl, the log in "
        f"{log}."
    )
    print("Next:")
    print(
        f"  robust-contrastive evaluate --model {out}/rocl/probe --data {args.data} "
        f"--split {out}/{SPLIT_NAME} --out report.json"
    )
    print("  from robust_contrastive import RoCLEncoder")
    print(f"  encoder = RoCLEncoder.from_pretrained('{out}/rocl')")
    return 0


def _run_quickstart(args: argparse.Namespace, config: TrainConfig, out: Path) -> dict[str, Any]:
    """Train, probe and evaluate SimCLR and RoCL; write OUT's records; return the table's data."""
    import torch

    from .data import first_per_class, load_dataset, train_val_split
    from .evaluation.probe import RobustLinearProbe
    from .evaluation.suite import evaluate_robustness
    from .training import RoCLTrainer

    start = time.perf_counter()
    dataset = load_dataset(args.data, root=args.data_root, download=args.download)
    train_idx, held_idx = train_val_split(
        dataset.labels, val_per_class=args.held_out_per_class, seed=config.seed
    )
    train_set, held_out = dataset.subset(train_idx), dataset.subset(held_idx)
    pretrain_set = train_set.subset(
        first_per_class(train_set.labels, args.max_per_class or len(train_set))
    )
    # The accuracy of always answering the most frequent class of the held-out images.
    counts = torch.bincount(torch.as_tensor(held_out.labels), minlength=len(dataset.classes))
    chance = float(counts.max()) / max(len(held_out), 1)
    split = {
        "data": str(args.data),
        "seed": config.seed,
        "train": train_idx.tolist(),
        "val": held_idx.tolist(),
    }
    rows = []
    for name, adversarial in (("SimCLR", False), ("RoCL", True)):
        run_dir = out / name.lower()
        logger.info(
            "quickstart: training %s on %d images into %s", name, len(pretrain_set), run_dir
        )
        result = RoCLTrainer(replace(config, adversarial=adversarial), run_dir).fit(
            pretrain_set, resume=args.resume
        )
        probe = RobustLinearProbe(
            result.encoder,
            len(dataset.classes),
            augment=False,
            epochs=args.probe_epochs,
            batch_size=256,
        )
        probe.fit(train_set, seed=config.seed, progress=config.progress)
        probe.save_pretrained(run_dir / "probe")
        report = evaluate_robustness(
            probe,
            held_out,
            ["linf-8/255"],
            seed=config.seed,
            sanity_checks=False,
            progress=config.progress,
        )
        report.to_json(run_dir / "report.json")
        last = result.history[-1]
        rows.append(
            {
                "method": name,
                "clean": report.clean_accuracy,
                "pgd20": report.accuracy("linf-8/255"),
                "n_images": report.n_images,
                "train_images_per_s": last["images_per_s"],
            }
        )
        logger.info("quickstart: %s", json.dumps(rows[-1]))
    seconds = time.perf_counter() - start
    # Written once the models it describes exist (a refused or interrupted run leaves an earlier
    # run's records untouched).
    atomic_write_text(out / SPLIT_NAME, json.dumps(split))
    record = {"rows": rows, "chance": chance, "seconds": seconds}
    atomic_write_text(out / "quickstart.json", json.dumps(record, indent=2))
    return {
        **record,
        "data": "bundled CIFAR-10" if args.data == "sample" else str(args.data),
        "num_classes": len(dataset.classes),
        "pretrain_images": len(pretrain_set),
        "probe_images": len(train_set),
        "held_out_images": len(held_out),
    }


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


def _cmd_probe(args: argparse.Namespace) -> int:
    from .data import load_dataset, train_val_split
    from .evaluation.probe import RobustLinearProbe
    from .models import RoCLEncoder

    encoder = RoCLEncoder.from_pretrained(args.encoder)
    dataset = load_dataset(
        args.data, root=args.data_root, download=args.download, max_per_class=args.max_per_class
    )
    train_set = _load_split(args, dataset, "train")
    probe = RobustLinearProbe(
        encoder,
        len(dataset.classes),
        adversarial=args.adversarial,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=not args.no_augment,
    )
    val = None
    if args.val_per_class:
        fit_idx, val_idx = train_val_split(
            train_set.labels, val_per_class=args.val_per_class, seed=args.seed
        )
        train_set, val = train_set.subset(fit_idx), train_set.subset(val_idx)
    history = probe.fit(
        train_set, val=val, seed=args.seed, progress=not args.no_progress, select=args.select
    )
    probe.save_pretrained(args.out)
    kind = "robust linear evaluation (r-LE)" if args.adversarial else "linear evaluation"
    print(f"{kind} on {len(train_set)} images; last epoch: {json.dumps(history[-1])}")
    print(f"probe: {args.out}  (RobustLinearProbe.from_pretrained('{args.out}'))")
    return 0


def _model_folder(name_or_path: str) -> Path:
    """The local folder of ``--model``: a folder, or a registered name (list-pretrained) or Hub
    repo id, resolved (and checksum-verified) to its folder."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from .hub import resolve_model_folder

    return resolve_model_folder(name_or_path)


def _load_classifier(folder: str) -> RobustLinearProbe | RobustClassifier:
    from .evaluation.finetuning import RobustClassifier
    from .evaluation.probe import RobustLinearProbe

    config_path = _model_folder(folder) / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: --model takes a folder written by "
            "`robust-contrastive probe` (a linear probe) or by fine-tuning (a robust classifier)."
        )
    model_type = _read_json_object(config_path, "a model's config").get("model_type")
    if model_type == RobustLinearProbe.model_type:
        return RobustLinearProbe.from_pretrained(folder)
    if model_type == RobustClassifier.model_type:
        return RobustClassifier.from_pretrained(folder)
    raise ValueError(
        f"{folder} holds a {model_type!r}, not a classifier: train a probe on an encoder first "
        "(robust-contrastive probe --encoder DIR ...)."
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data import load_dataset
    from .evaluation.probe import RobustLinearProbe
    from .evaluation.smoothing import TransformationSmoothedClassifier
    from .evaluation.suite import evaluate_robustness
    from .model_card import attach_evaluation, weights_checksums

    if args.split and args.test_split:
        raise ValueError(
            "--split indexes the training images: do not combine it with --test-split."
        )
    model: torch.nn.Module = _load_classifier(args.model)
    dataset = load_dataset(
        args.data,
        root=args.data_root,
        download=args.download,
        train=not args.test_split,
        max_per_class=args.max_per_class,
    )
    data = _load_split(args, dataset, "val")
    if args.smoothed:
        if not isinstance(model, RobustLinearProbe):
            raise ValueError("--smoothed needs a linear probe (encoder + linear head).")
        model = TransformationSmoothedClassifier.from_probe(
            model, n_samples=args.smoothed, generator=torch.Generator().manual_seed(args.seed)
        )
    report = evaluate_robustness(
        model,
        data,
        args.threats,
        n_images=args.n_images,
        batch_size=args.batch_size,
        seed=args.seed,
        eot_samples=args.eot_samples,
        progress=not args.no_progress,
    )
    report.info.update(
        {
            "model": str(args.model),
            "data": str(args.data),
            "split": args.split,
            "smoothed": args.smoothed,
            "weights_sha256": weights_checksums(_model_folder(args.model)),
        }
    )
    path = report.to_json(args.out)
    atomic_write_text(Path(path).with_suffix(".md"), report.to_markdown() + "\n")
    print(report.to_markdown())
    print(f"\nreport: {path} (and {Path(path).with_suffix('.md')})")
    if args.attach:
        split = _split_description(args, report.n_images, len(data))
        for folder in args.attach:
            card = attach_evaluation(folder, report, dataset=args.data, split=split)
            print(f"model card: {card}")
    return 0


def _split_description(args: argparse.Namespace, n_images: int, n_available: int) -> str:
    """Which images a report measured, for the model card (``n_images`` of ``n_available``)."""
    subset = (
        f"{n_images}" if n_images == n_available else f"a seeded random {n_images} of {n_available}"
    )
    if args.test_split:
        return f"official test split ({subset} images)"
    if args.split:
        return f"held-out validation images of the training set ({subset}, never trained on)"
    if str(args.data).lower() == "sample-held-out":
        return (
            f"the bundled held-out sample ({subset} images), never trained or selected on by the "
            "bundled models"
        )
    return f"images of the training set, not held out ({subset})"


def _cmd_card(args: argparse.Namespace) -> int:
    from .model_card import attach_evaluation, write_model_card

    path = None
    for report_path in args.report:
        report = _read_json_object(report_path, "a report of `robust-contrastive evaluate`")
        path = attach_evaluation(
            args.folder,
            report,
            dataset=args.dataset,
            split=args.split,
            description=args.description,
        )
    if path is None:
        path = write_model_card(args.folder, repo_id=args.repo_id, license=args.license)
    print(f"model card: {path}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_folder_to_hub
    from .model_card import write_model_card

    write_model_card(args.folder, repo_id=args.repo_id, license=args.license)
    url = push_folder_to_hub(
        args.folder,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.message,
    )
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0


def _cmd_list_pretrained(args: argparse.Namespace) -> int:
    from .registry import list_pretrained

    entries = list_pretrained()
    if not entries:
        print("no pretrained models are registered in this version.")
    for entry in entries:
        where = "bundled" if entry.bundled else "hub"
        pin = entry.revision[:10] if entry.revision else "unpublished"
        print(f"{entry.name}\t{entry.model_type}\t{entry.repo_id}@{pin} ({where})")
        if entry.description:
            print(f"    {entry.description}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_encoder, convert_projector

    encoder = convert_encoder(args.checkpoint)
    out = Path(args.out)
    # Both checkpoints are converted and checked before anything is written into OUT.
    projector = convert_projector(args.projector) if args.projector else None
    if projector is not None and projector.config.in_dim != encoder.feature_dim:
        raise ValueError(
            f"the projector takes {projector.config.in_dim} features but the encoder gives "
            f"{encoder.feature_dim}: the two checkpoints belong to different models."
        )
    encoder.save_pretrained(out)
    print(f"encoder ({encoder.config.arch}, width {encoder.config.width}): {out}")
    if projector is not None:
        projector.save_pretrained(out / PROJECTOR_DIR)
        print(f"projector: {out / 'projector'}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-contrastive",
        description=_paragraphs(
            "Adversarially robust image encoders without labels (RoCL, NeurIPS 2020): train "
            "them, probe them, attack them, publish them. `robust-contrastive COMMAND --help` "
            "describes each command."
        ),
        epilog="""examples:
  robust-contrastive quickstart          # SimCLR vs RoCL in miniature, on CPU, in minutes
  robust-contrastive train --data sample --out runs/rocl --width 16 --epochs 10
  robust-contrastive list-pretrained""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robust-contrastive {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages and show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    quick = _subcommand(
        sub,
        "quickstart",
        "train small SimCLR and RoCL encoders on the bundled sample, probe them and compare "
        "their clean and PGD accuracy (CPU, minutes)",
        f"""The paper's headline comparison in miniature, with no download and no GPU: holds out
{QUICKSTART_HELD_OUT} images per class of the bundled 5,000-image CIFAR-10 sample, trains both
encoders without labels on {QUICKSTART_PER_CLASS} images per class of the rest (a resnet18 of
width {QUICKSTART["width"]}, {QUICKSTART["epochs"]} epochs, plain SGD), fits a linear probe on
each ({QUICKSTART_PROBE_EPOCHS} epochs) and prints their clean and l-inf PGD-20 (8/255)
accuracy on the held-out images.

The console shows progress bars, warnings and the table; the details (per-epoch losses,
probe epochs) go to OUT/{QUICKSTART_LOG}. Every training option below (but --adversarial)
applies to both encoders.""",
        """  robust-contrastive quickstart
  robust-contrastive quickstart --epochs 1 --max-per-class 100   # a shorter run
  robust-contrastive quickstart --resume      # continue an interrupted run""",
    )
    _add_data_arguments(quick, required=False, max_per_class=QUICKSTART_PER_CLASS)
    quick.add_argument("--out", default="quickstart-run", help="output folder")
    quick.add_argument("--resume", action="store_true", help="resume from OUT/*/checkpoints")
    quick.add_argument(
        "--held-out-per-class",
        type=int,
        default=QUICKSTART_HELD_OUT,
        help=f"images per class held out for evaluation (default: {QUICKSTART_HELD_OUT})",
    )
    quick.add_argument(
        "--probe-epochs",
        type=int,
        default=QUICKSTART_PROBE_EPOCHS,
        help=f"linear probe epochs (default: {QUICKSTART_PROBE_EPOCHS})",
    )
    _add_config_arguments(quick, QUICKSTART)
    quick.set_defaults(func=_cmd_quickstart)

    probe = _subcommand(
        sub,
        "probe",
        "train a linear probe (or r-LE) on a frozen encoder",
        """Linear evaluation: a linear classifier on the frozen encoder's features, with the
labels (the original's 150 epochs, SGD, batch 1024). --adversarial trains it on PGD
examples instead (robust linear evaluation, r-LE, eq. 7). OUT receives the probe
(encoder + linear layer): RobustLinearProbe.from_pretrained(OUT), or
`robust-contrastive evaluate --model OUT`.""",
        """  robust-contrastive probe --encoder runs/rocl --data sample \\
      --split runs/rocl/split.json --out runs/rocl/probe --no-augment --epochs 50
  robust-contrastive probe --encoder runs/rocl --data sample \\
      --split runs/rocl/split.json --out runs/rocl/r-le --adversarial""",
    )
    probe.add_argument("--encoder", required=True, help="encoder folder (save_pretrained)")
    _add_data_arguments(probe, required=True)
    probe.add_argument(
        "--split",
        help="split.json of the training run: probe on its 'train' "
        "indices, never on its held-out 'val' images",
    )
    probe.add_argument("--out", required=True, help="output folder of the probe")
    probe.add_argument(
        "--adversarial",
        action="store_true",
        help="robust linear evaluation (r-LE, eq. 7): train on PGD examples",
    )
    probe.add_argument("--epochs", type=int, default=150, help="epochs (default: 150)")
    probe.add_argument("--batch-size", type=int, default=1024, help="batch size (default: 1024)")
    probe.add_argument("--lr", type=_number, default=0.1, help="learning rate (default: 0.1)")
    probe.add_argument(
        "--no-augment",
        action="store_true",
        help="no augmentation (clean probes then train on cached features)",
    )
    probe.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    probe.add_argument("--no-progress", action="store_true", help="no progress bar")
    probe.add_argument(
        "--val-per-class",
        type=int,
        default=0,
        help="hold out this many training images per class to select the best "
        "epoch on (default: 0, keep the last epoch)",
    )
    probe.add_argument(
        "--select",
        choices=("clean", "robust"),
        default="clean",
        help="with --val-per-class: pick the epoch on clean accuracy (default) or on PGD "
        "accuracy under the r-LE attack (robust; for --adversarial)",
    )
    probe.set_defaults(func=_cmd_probe)

    evaluate = _subcommand(
        sub,
        "evaluate",
        "clean, PGD, l2, l1 and AutoAttack accuracy of a classifier, as a report",
        """Runs the threats of the paper's Table 1 (all by default; AutoAttack needs
torchattacks) with sanity checks, prints a markdown table and writes the report as JSON
(OUT) with a .md beside it. Evaluate on images the model never saw: --split with the
training run's split.json, --test-split, or, for the bundled models, --data
sample-held-out (a model trained on --data sample has seen 189 of its images).""",
        """  robust-contrastive evaluate --model runs/rocl/probe --data sample \\
      --split runs/rocl/split.json --threats linf-8/255 l2-0.5 --out report.json
  robust-contrastive evaluate --model runs/rocl/probe --data cifar10 --data-root data \\
      --test-split --n-images 1000 --out test-report.json""",
    )
    evaluate.add_argument(
        "--model",
        required=True,
        help="a probe (robust-contrastive probe) or robust classifier folder, or a registered "
        "name (list-pretrained)",
    )
    _add_data_arguments(evaluate, required=True)
    evaluate.add_argument("--split", help="split.json: evaluate on its held-out 'val' indices")
    evaluate.add_argument(
        "--test-split", action="store_true", help="cifar10 / cifar100: use the official test split"
    )
    evaluate.add_argument("--out", required=True, help="report path (JSON; a .md beside it)")
    evaluate.add_argument(
        "--threats",
        nargs="+",
        default=list(THREAT_NAMES),
        choices=THREAT_NAMES,
        metavar="THREAT",
        help=f"threats to run, from: {', '.join(THREAT_NAMES)} (default: all)",
    )
    evaluate.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="evaluate a seeded random subset of N images (default: all)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256, help="attack batch size")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the attacks")
    evaluate.add_argument(
        "--smoothed",
        type=int,
        default=0,
        metavar="N",
        help="wrap the probe in a transformation-smoothed classifier with N "
        "samples (attacked with EOT)",
    )
    evaluate.add_argument(
        "--eot-samples",
        type=int,
        default=10,
        help="EOT samples per step for randomised models (default: 10)",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--attach",
        nargs="+",
        metavar="FOLDER",
        help="record the report in these folders' model cards (the model's folder and/or its "
        "encoder's; other weights are refused)",
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    card = _subcommand(
        sub,
        "card",
        "(re)generate a folder's model card, attaching evaluation reports",
        """Writes FOLDER/README.md from the folder's config and training records, with the
figures of the given reports (refused when a report does not belong to these weights).""",
        """  robust-contrastive card runs/rocl/probe --report report.json --dataset cifar10 \\
      --split 'held-out validation images (500)'""",
    )
    card.add_argument("folder", help="a save_pretrained folder")
    card.add_argument(
        "--report",
        nargs="*",
        default=[],
        help="report JSON files of `robust-contrastive evaluate` to record in the card",
    )
    card.add_argument("--dataset", default="cifar10", help="dataset id of the evaluated images")
    card.add_argument(
        "--split", default="held-out validation images", help="which images were evaluated"
    )
    card.add_argument("--description", default="", help="how the figures were obtained")
    card.add_argument("--repo-id", help="the Hub repo the card is for (loading snippet)")
    card.add_argument("--license", default="mit", help="license id of the weights (mit)")
    card.set_defaults(func=_cmd_card)

    push = _subcommand(
        sub,
        "push",
        "upload a save_pretrained folder to the Hugging Face Hub",
        """Regenerates the folder's model card, creates the Hub repo if needed and uploads the
folder (log in first with `hf auth login` or set HF_TOKEN).""",
        """  robust-contrastive push runs/rocl my-org/rocl-resnet18-cifar10
  robust-contrastive push runs/rocl my-org/rocl-resnet18-cifar10 --create-pr""",
    )
    push.add_argument("folder", help="a save_pretrained folder (its card is regenerated)")
    push.add_argument("repo_id", help="'org/name' of the Hub model repo (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (default: main)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    push.add_argument("--message", default="Upload model with robust-contrastive")
    push.add_argument("--license", default="mit", help="license id of the weights (mit)")
    push.set_defaults(func=_cmd_push)

    listed = _subcommand(
        sub,
        "list-pretrained",
        "list the registered pretrained models",
        """Each name loads offline when bundled (or from the Hub when published), e.g.
RoCLEncoder.from_pretrained(NAME) or RobustLinearProbe.from_pretrained(NAME + "-probe").""",
        "  robust-contrastive list-pretrained",
    )
    listed.set_defaults(func=_cmd_list_pretrained)

    convert = _subcommand(
        sub,
        "convert",
        "convert a checkpoint of the original RoCL code to this library's format",
        """Reads the original code's torch.save'd encoder (and projector) checkpoints, checks
them, and writes a save_pretrained folder: RoCLEncoder.from_pretrained(OUT).""",
        """  robust-contrastive convert rocl_encoder.pt --projector rocl_projector.pt \\
      --out converted/rocl""",
    )
    convert.add_argument("checkpoint", help="the original encoder checkpoint (torch.save'd)")
    convert.add_argument("--projector", help="the original projector checkpoint")
    convert.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
    convert.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robust-contrastive`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=_LOG_FORMAT,
        stream=sys.stderr,
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        # Console log lines are written above the progress bars instead of through them.
        with logging_redirect_tqdm():
            code: int = args.func(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", "OUT")
        parser.exit(
            130,
            f"interrupted; continue the run with the same command plus --resume "
            f"(checkpoints in {out}/checkpoints)\n",
        )
    # FloatingPointError: NonFiniteLossError (a NaN loss), without importing the trainer here.
    except (ValueError, TypeError, OSError, FloatingPointError) as err:
        if args.verbose:
            raise
        parser.exit(2, f"robust-contrastive {args.command}: error: {err}\n")
    return code
