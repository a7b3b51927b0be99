"""Robustness report of a classifier: clean accuracy and accuracy under several threats.

``evaluate_robustness(model, data, threats)`` attacks a classifier (images in [0, 1] -> logits)
with every threat of the list, runs sanity checks against gradient masking and weak attacks,
and returns a ``RobustnessReport`` in which every number carries the attack that produced it
(norm, eps, step, steps, protocol), the number of images and the seed.

The script

1. loads a linear probe saved by ``RobustLinearProbe.save_pretrained`` / ``robust-contrastive
   probe`` (``--probe DIR``, e.g. ``quickstart-run/rocl/probe``), or builds one: a small RoCL
   encoder and a clean linear probe on cached features;
2. evaluates it on held-out images (``--split RUN/split.json``: the run's ``val`` images; else
   images the probe never saw) under the threats given with ``--threats`` (names from
   ``THREATS``; default: the headline l-inf PGD-20, the weaker ``legacy`` protocol of the
   original evaluation, l2 and l1); ``--autoattack`` adds AutoAttack (needs torchattacks);
3. writes the report as ``OUT/report.json`` and ``OUT/report.md`` and prints the table.

Run (from the repository root)::

    python examples/evaluate_robustness.py --out runs/example-report
    python examples/evaluate_robustness.py --probe quickstart-run/rocl/probe \\
        --split quickstart-run/split.json --autoattack --out runs/report-quickstart
    python examples/evaluate_robustness.py --tiny --out /tmp/report-tiny   # seconds

Any warning in the report means a robust accuracy may be overestimated: read it before quoting
the number.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from robust_contrastive import (
    ImageDataset,
    RobustLinearProbe,
    RoCLTrainer,
    TrainConfig,
    evaluate_robustness,
    load_sample,
    train_val_split,
)
from robust_contrastive.evaluation import THREATS

logger = logging.getLogger("evaluate_robustness")

DEFAULT = ("linf-8/255", "linf-8/255-legacy", "l2-0.5", "l1-12")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Clean and robust accuracy of a linear probe.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-report"),
        help="output folder for report.json and report.md (default: runs/example-report)",
    )
    parser.add_argument(
        "--probe",
        type=Path,
        default=None,
        help="a saved RobustLinearProbe folder; default: train a small encoder and probe",
    )
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split.json of the run behind --probe: evaluate on its held-out 'val' indices "
        "(into the full bundled sample)",
    )
    parser.add_argument(
        "--threats",
        nargs="+",
        default=list(DEFAULT),
        choices=list(THREATS),
        help=f"threats to run (default: {' '.join(DEFAULT)})",
    )
    parser.add_argument(
        "--autoattack",
        action="store_true",
        help="add AutoAttack l-inf 8/255 (standard, or rand on a randomised model)",
    )
    parser.add_argument(
        "--n-images", type=int, default=500, help="held-out images evaluated (default: 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (default: 0)")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run: 8 images, a width-8 model"
    )
    return parser.parse_args(argv)


def build_probe(
    args: argparse.Namespace, train_set: ImageDataset, num_classes: int
) -> RobustLinearProbe:
    """A small RoCL encoder (trained without labels) and a clean linear probe on top of it."""
    config = TrainConfig(
        width=8 if args.tiny else 16,
        epochs=1 if args.tiny else 2,
        batch_size=min(128, len(train_set)),
        warmup_epochs=1,
        attack_steps=1 if args.tiny else 7,
        projection_hidden_dim=32 if args.tiny else 2048,
        seed=args.seed,
        progress=not args.tiny,
    )
    encoder = RoCLTrainer(config, args.out / "encoder").fit(train_set).encoder.eval()
    probe = RobustLinearProbe(
        encoder, num_classes, augment=False, epochs=3 if args.tiny else 50, batch_size=256
    )
    probe.fit(train_set, seed=args.seed, progress=not args.tiny)
    return probe


def subsample(data: ImageDataset, n: int, seed: int) -> ImageDataset:
    """``n`` images drawn at random (seeded). The sample is sorted by class: its first ``n``
    images could all be of one class."""
    if n >= len(data):
        return data
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.subset(index.sort().values)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    sample = load_sample()  # 5,000 CIFAR-10 images, 500 per class
    if args.split is not None:
        split = json.loads(args.split.read_text())
        train_set, held_out = sample.subset(split["train"]), sample.subset(split["val"])
    else:
        if args.tiny:  # the first 4 images of each class
            sample = sample.subset([i for c in range(10) for i in range(500 * c, 500 * c + 4)])
        train_idx, held_idx = train_val_split(
            sample.labels, val_per_class=1 if args.tiny else 50, seed=args.seed
        )
        train_set, held_out = sample.subset(train_idx), sample.subset(held_idx)
    if args.probe is not None:
        probe = RobustLinearProbe.from_pretrained(args.probe)
    else:
        probe = build_probe(args, train_set, len(sample.classes))

    if args.tiny:
        args.n_images = 8
    held_out = subsample(held_out, args.n_images, args.seed)
    threats = list(args.threats) + (["autoattack-linf-8/255"] if args.autoattack else [])
    report = evaluate_robustness(
        probe,
        held_out,
        threats,
        seed=args.seed,
        progress=not args.tiny,
    )
    report.info.update({"probe": str(args.probe or args.out / "encoder"), "split": str(args.split)})
    args.out.mkdir(parents=True, exist_ok=True)
    report.to_json(args.out / "report.json")
    (args.out / "report.md").write_text(report.to_markdown() + "\n")
    print(report.to_markdown())
    if report.warnings:
        logger.warning("%d sanity warning(s): see the end of the table", len(report.warnings))
    logger.info("wrote %s and %s", args.out / "report.json", args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
