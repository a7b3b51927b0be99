"""``robust-contrastive evaluate``: clean and robust accuracy of a classifier, as a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import atomic_write_text
from .._names import THREAT_NAMES
from ..layout import CONFIG_NAME
from ._common import (
    _SHARED_SAMPLE_IMAGES,
    _add_data_arguments,
    _command,
    _load_data,
    _read_json_object,
    _subcommand,
)

if TYPE_CHECKING:
    from ..models.classifier import Classifier


def _load_classifier(folder: Path) -> Classifier:
    """The classifier saved in ``folder`` (a probe or a fine-tuned classifier)."""
    from ..evaluation.finetuning import RobustClassifier
    from ..evaluation.probe import RobustLinearProbe

    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: --model takes a folder written by "
            "`robust-contrastive probe` (a linear probe) or by fine-tuning (a robust classifier)."
        )
    model_type = _read_json_object(config_path, "a model's config").get("model_type")
    for cls in (RobustLinearProbe, RobustClassifier):
        if model_type == cls.model_type:
            return cls.from_pretrained(folder)
    raise ValueError(
        f"{folder} holds a {model_type!r}, not a classifier: train a probe on an encoder first "
        "(robust-contrastive probe --encoder DIR ...)."
    )


@_command(
    "clean, PGD, l2, l1 and AutoAttack accuracy of a classifier, as a report",
    f"""Runs the threats of the paper's Table 1 (all by default; AutoAttack needs
torchattacks) with sanity checks, prints a markdown table and writes the report as JSON
(OUT) with a .md beside it. Evaluate on images the model never saw: --split with the
training run's split.json, --test-split, or, for the bundled models, --data
sample-held-out (a model trained on --data sample has seen {_SHARED_SAMPLE_IMAGES} of its
images).""",
    """  robust-contrastive evaluate --model runs/rocl/probe --data sample \\
      --split runs/rocl/split.json --threats linf-8/255 l2-0.5 --out report.json
  robust-contrastive evaluate --model runs/rocl/probe --data cifar10 --data-root data \\
      --test-split --n-images 1000 --out test-report.json""",
)
def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from ..evaluation.probe import RobustLinearProbe
    from ..evaluation.smoothing import TransformationSmoothedClassifier
    from ..evaluation.suite import evaluate_robustness
    from ..model_card import attach_evaluation, weights_checksums
    from ..registry import resolve_model_folder

    if args.split and args.test_split:
        raise ValueError(
            "--split indexes the training images: do not combine it with --test-split."
        )
    # --model: a folder, a registered name (list-pretrained) or a Hub repo id, resolved (and
    # checksum-verified) once.
    folder = resolve_model_folder(args.model)
    model: torch.nn.Module = _load_classifier(folder)
    data = _load_data(args, "val", train=not args.test_split)
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
        model=str(args.model),
        data=str(args.data),
        split=args.split,
        smoothed=args.smoothed,
        weights_sha256=weights_checksums(folder),
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = _subcommand(sub, _cmd_evaluate)
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
