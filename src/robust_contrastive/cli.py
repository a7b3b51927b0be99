"""The ``robust-contrastive`` command line (train, quickstart, probe, evaluate, card, push...)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from ._io import atomic_write_text
from .data import ImageDataset, first_per_class, load_dataset, train_val_split
from .evaluation.finetuning import RobustClassifier
from .evaluation.probe import RobustLinearProbe
from .evaluation.smoothing import TransformationSmoothedClassifier
from .evaluation.suite import DEFAULT_THREATS, THREATS, evaluate_robustness
from .hub import push_folder_to_hub
from .model_card import attach_evaluation, weights_checksums, write_model_card
from .models.pretrained import CONFIG_NAME
from .registry import list_pretrained
from .training import NonFiniteLossError, RoCLTrainer, TrainConfig, distributed

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
    "attack_source": "the image perturbed: augmented = t(x) (paper) or original = x (Table 5)",
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
        atomic_write_text(out / SPLIT_FILE, json.dumps(split))
    last = result.history[-1] if result.history else {}
    return {"seconds": seconds, "images": len(train_set), "last": last, "out": out}


def _cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    existing = Path(args.out) / "checkpoints" / "last.pt"
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


# The quickstart: a CPU-sized RoCL run (resnet18 at width 16, 2,000 of the sample's images,
# 2 epochs): a few minutes on 2 CPU cores. Everything else is the paper's setting.
# The quickstart: CPU-sized SimCLR and RoCL runs, a linear probe on each, and clean / PGD-20
# accuracy on 500 held-out images: the paper's headline claim in miniature, in minutes on 2 CPU
# cores. The paper's optimiser (LARS with trust 0.001, 10 warm-up epochs) is tuned for 1000
# epochs and barely moves the weights in 60 steps, so this short run uses plain SGD (lr 0.5,
# momentum 0.9, cosine, no warm-up) on a width-8 resnet18; every other setting is the paper's.
QUICKSTART = TrainConfig(
    width=8,
    epochs=4,
    batch_size=128,
    lars=False,
    lr=0.5,
    lr_warmup_multiplier=1.0,
    warmup_epochs=0,
    checkpoint_every=1,
)
QUICKSTART_PER_CLASS = 200  # images per class used for self-supervised training
QUICKSTART_HELD_OUT = 50  # images per class held out for evaluation (never trained or probed on)
QUICKSTART_PROBE_EPOCHS = 50  # linear probe epochs (on cached features: seconds)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    out = Path(args.out)
    start = time.perf_counter()
    dataset = load_dataset(args.data, root=args.data_root, download=args.download)
    train_idx, held_idx = train_val_split(
        dataset.labels, val_per_class=args.held_out_per_class, seed=config.seed
    )
    train_set, held_out = dataset.subset(train_idx), dataset.subset(held_idx)
    pretrain_set = train_set.subset(
        first_per_class(train_set.labels, args.max_per_class or len(train_set))
    )
    out.mkdir(parents=True, exist_ok=True)
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
    seconds = time.perf_counter() - start
    # Written once the models it describes exist (a refused or interrupted run leaves an earlier
    # run's records untouched).
    atomic_write_text(out / SPLIT_FILE, json.dumps(split))
    atomic_write_text(
        out / "quickstart.json", json.dumps({"rows": rows, "seconds": seconds}, indent=2)
    )
    print()
    print(
        f"Quickstart: resnet18 (width {config.width}) trained without labels on "
        f"{len(pretrain_set)} bundled CIFAR-10 images for {config.epochs} epochs; linear probe on "
        f"{len(train_set)} images; evaluated on {len(held_out)} held-out images."
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
        f"Done in {seconds:.0f} s. Models in {out}/simclr and {out}/rocl (encoder, projector/, "
        "probe/), reports in */report.json."
    )
    print("Next:")
    print(
        f"  robust-contrastive evaluate --model {out}/rocl/probe --data {args.data} "
        f"--split {out}/{SPLIT_FILE} --out report.json"
    )
    print("  from robust_contrastive import RoCLEncoder")
    print(f"  encoder = RoCLEncoder.from_pretrained('{out}/rocl')")
    return 0


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


def _load_classifier(folder: str) -> RobustLinearProbe | RobustClassifier:
    config_path = Path(folder) / CONFIG_NAME
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
            "weights_sha256": weights_checksums(args.model),
        }
    )
    path = report.to_json(args.out)
    Path(path).with_suffix(".md").write_text(report.to_markdown() + "\n")
    print(report.to_markdown())
    print(f"\nreport: {path} (and {Path(path).with_suffix('.md')})")
    if args.attach:
        split = _split_description(args, report.n_images)
        for folder in args.attach:
            card = attach_evaluation(folder, report, dataset=args.data, split=split)
            print(f"model card: {card}")
    return 0


def _split_description(args: argparse.Namespace, n_images: int) -> str:
    if args.test_split:
        return f"official test split, first {n_images} images"
    if args.split:
        return f"held-out validation images of the training set ({n_images}, never trained on)"
    return f"first {n_images} images of the training set (not held out)"


def _cmd_card(args: argparse.Namespace) -> int:
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
        projector.save_pretrained(out / "projector")
        print(f"projector: {out / 'projector'}")
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
    _add_data_arguments(train, required=True, holdout=True)
    train.add_argument("--out", required=True, help="output folder (encoder, projector, logs)")
    train.add_argument("--resume", action="store_true", help="resume from OUT/checkpoints")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start from scratch even if OUT holds a run (its checkpoint is replaced)",
    )
    train.add_argument("--simclr", action="store_true", help="plain SimCLR (no attack)")
    _add_config_arguments(train, TrainConfig())
    train.set_defaults(func=_cmd_train)

    quick = sub.add_parser(
        "quickstart",
        help="train small SimCLR and RoCL encoders on the bundled sample, probe them and "
        "compare clean and PGD accuracy (CPU, minutes)",
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

    probe = sub.add_parser("probe", help="train a linear probe (or r-LE) on a frozen encoder")
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

    evaluate = sub.add_parser(
        "evaluate", help="clean, PGD, l2, l1 and AutoAttack accuracy of a classifier, as a report"
    )
    evaluate.add_argument(
        "--model",
        required=True,
        help="a probe (robust-contrastive probe) or robust classifier folder",
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
        default=list(DEFAULT_THREATS),
        choices=list(THREATS),
        help="threats to run (default: all)",
    )
    evaluate.add_argument("--n-images", type=int, default=None, help="evaluate the first N")
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

    card = sub.add_parser(
        "card", help="(re)generate a folder's model card, attaching evaluation reports"
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

    push = sub.add_parser("push", help="upload a save_pretrained folder to the Hugging Face Hub")
    push.add_argument("folder", help="a save_pretrained folder (its card is regenerated)")
    push.add_argument("repo_id", help="'org/name' of the Hub model repo (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (default: main)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    push.add_argument("--message", default="Upload model with robust-contrastive")
    push.add_argument("--license", default="mit", help="license id of the weights (mit)")
    push.set_defaults(func=_cmd_push)

    listed = sub.add_parser("list-pretrained", help="list the registered pretrained models")
    listed.set_defaults(func=_cmd_list_pretrained)

    convert = sub.add_parser(
        "convert", help="convert a checkpoint of the original RoCL code to this library's format"
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
