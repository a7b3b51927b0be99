"""RoCL's transformation smoothed classifier (eq. 8), its accuracy per sample count, and EOT.

The smoothed classifier averages the encoder's features over ``n_samples`` random
transformations t_i of the input and classifies the mean with the probe's linear layer:

    S(x) = argmax_c l_c( mean_i f(t_i(x)) )

Its inference is randomised, so plain PGD follows the gradient of one random draw and
overestimates its robustness. Expectation over Transformation (EOT) averages the gradient over
several draws per step: ``EOTPGD`` is the attack to report for it (with AutoAttack
``version="rand"``).

The script

1. loads a linear probe (``--probe DIR``, e.g. ``quickstart-run/rocl/probe``) or builds one: a
   small RoCL encoder and a clean linear probe on cached features;
2. wraps it in ``TransformationSmoothedClassifier.from_probe`` with a seeded generator;
3. measures the clean accuracy per number of samples with ``accuracy_vs_samples`` (the
   x-axis of the paper's Figure 3d);
4. attacks the smoothed classifier with plain PGD and with EOT-PGD (same budget, same seed)
   and compares the accuracies (EOT is the honest number);
5. writes ``OUT/smoothing.json``.

Run (from the repository root)::

    python examples/smoothed_classifier.py --out runs/example-smoothing
    python examples/smoothed_classifier.py --probe quickstart-run/rocl/probe \\
        --split quickstart-run/split.json --out runs/smoothing-quickstart
    python examples/smoothed_classifier.py --tiny --out /tmp/smoothing-tiny     # seconds
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from robust_contrastive import (
    EOTPGD,
    PGD,
    ImageDataset,
    RobustLinearProbe,
    RoCLTrainer,
    TrainConfig,
    TransformationSmoothedClassifier,
    load_sample,
    train_val_split,
)
from robust_contrastive.evaluation import accuracy, accuracy_vs_samples

logger = logging.getLogger("smoothed_classifier")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Transformation smoothed classifier and EOT.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-smoothing"),
        help="output folder for smoothing.json (default: runs/example-smoothing)",
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
        help="split.json of the run behind --probe: evaluate on its held-out 'val' indices",
    )
    parser.add_argument(
        "--sample-counts",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16],
        help="numbers of transformations to compare (default: 1 2 4 8 16)",
    )
    parser.add_argument(
        "--n-samples", type=int, default=8, help="samples of the attacked classifier (default: 8)"
    )
    parser.add_argument(
        "--eot-samples", type=int, default=10, help="EOT gradient samples per step (default: 10)"
    )
    parser.add_argument("--steps", type=int, default=20, help="PGD steps (default: 20)")
    parser.add_argument(
        "--n-images", type=int, default=100, help="held-out images attacked (default: 100)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run: 8 images, 2 samples"
    )
    return parser.parse_args(argv)


def build_probe(args: argparse.Namespace, train_set: ImageDataset) -> RobustLinearProbe:
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
        encoder,
        len(train_set.classes),
        augment=False,
        epochs=3 if args.tiny else 50,
        batch_size=256,
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
    if args.tiny:
        args.sample_counts, args.n_samples, args.eot_samples = [1, 2], 2, 2
        args.steps, args.n_images = 2, 8
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
    probe = (
        RobustLinearProbe.from_pretrained(args.probe)
        if args.probe is not None
        else build_probe(args, train_set)
    )
    held_out = subsample(held_out, args.n_images, args.seed)

    # Figure 3d's x-axis: clean accuracy per number of transformations (same seed for each).
    per_count = accuracy_vs_samples(
        probe.encoder, probe.head, held_out, sample_counts=args.sample_counts, seed=args.seed
    )
    logger.info("clean accuracy per number of samples: %s", per_count)
    base_accuracy = accuracy(probe, held_out)  # the deterministic probe, for comparison

    # The smoothed classifier (eq. 8): every forward pass draws new transformations.
    smoothed = TransformationSmoothedClassifier.from_probe(
        probe, n_samples=args.n_samples, generator=torch.Generator().manual_seed(args.seed)
    )
    images, labels = held_out.images.float() / 255, held_out.labels  # float in [0, 1]
    budget = {"eps": 8 / 255, "alpha": 2 / 255, "steps": args.steps}
    pgd = PGD(smoothed, **budget)  # follows one random draw per step: too optimistic
    eot = EOTPGD(smoothed, **budget, eot_samples=args.eot_samples)  # averages the gradients
    robust = {}
    for name, attack in (("pgd", pgd), ("eot-pgd", eot)):
        adversarial = attack(images, labels, generator=torch.Generator().manual_seed(args.seed))
        robust[name] = accuracy(smoothed, adversarial, labels)
        logger.info("smoothed classifier under %r: %.3f", attack, robust[name])

    summary = {
        "probe": str(args.probe) if args.probe is not None else str(args.out / "encoder"),
        "images": len(held_out),
        "probe_clean_accuracy": base_accuracy,
        "smoothed_clean_accuracy_per_samples": {str(k): v for k, v in per_count.items()},
        "attacked_n_samples": args.n_samples,
        "attack": f"l-inf 8/255, step 2/255, {args.steps} steps",
        "eot_samples": args.eot_samples,
        "smoothed_accuracy_pgd": robust["pgd"],
        "smoothed_accuracy_eot_pgd": robust["eot-pgd"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smoothing.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
