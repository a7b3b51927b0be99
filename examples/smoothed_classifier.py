"""RoCL's transformation smoothed classifier (eq. 8), its accuracy per sample count, and EOT.

The smoothed classifier averages the encoder's features over ``n_samples`` random
transformations t_i of the input and classifies the mean with the probe's linear layer:

    S(x) = argmax_c l_c( mean_i f(t_i(x)) )

Its inference is randomised, so plain PGD follows the gradient of one random draw and
overestimates its robustness. Expectation over Transformation (EOT) averages the gradient over
several draws per step: ``EOTPGD`` is the attack to report for it (with AutoAttack
``version="rand"``).

The script

1. loads a linear probe: by default the bundled ``rocl-resnet18-w16-cifar10-cpu-probe`` (a RoCL
   resnet18 of width 16 with its clean linear probe), or a probe folder or registered name
   (``--probe``, e.g. ``quickstart-run/rocl/probe``), and held-out images: the bundled held-out
   sample (``load_sample(held_out=True)``, images the bundled models never trained or selected
   on), or with ``--split RUN/split.json`` the ``val`` images of your own run;
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

``--tiny`` uses 100 images (10 per class), 1 and 4 samples, and attacks a 2-sample smoothed
classifier with 3 PGD steps (2 EOT samples): rough numbers from a weak attack, for a quick
look. The reproduction's figures on the bundled RoCL probe are in
``experiments/results/cifar10_cpu.md``.
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
    RobustLinearProbe,
    TransformationSmoothedClassifier,
    load_sample,
)
from robust_contrastive.evaluation import accuracy, accuracy_vs_samples

logger = logging.getLogger("smoothed_classifier")

BUNDLED = "rocl-resnet18-w16-cifar10-cpu-probe"


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
        default=BUNDLED,
        help=f"a saved RobustLinearProbe folder or registered name (default: {BUNDLED})",
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
        "--n-images",
        type=int,
        default=100,
        help="held-out images, equally many per class (default: 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a quick run: 100 images, 1 and 4 samples, a 3-step attack on 2 samples",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.sample_counts, args.n_samples, args.eot_samples = [1, 4], 2, 2
        args.steps, args.n_images = 3, 100
    if args.split is not None and args.probe == BUNDLED:
        raise SystemExit(
            f"--split selects the held-out images of your own run; {BUNDLED} trained on most of "
            "the bundled sample: pass --probe RUN/probe with it, or leave --split out"
        )
    torch.manual_seed(args.seed)
    if args.split is not None:  # the held-out images of a run trained on the bundled sample
        split = json.loads(args.split.read_text())
        held_out = load_sample().subset(split["val"])
    else:  # 2,000 CIFAR-10 images that the bundled models never trained or selected on
        held_out = load_sample(held_out=True)
    probe = RobustLinearProbe.from_pretrained(args.probe)
    held_out = held_out.stratified(args.n_images // len(held_out.classes), seed=args.seed)

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
        "probe": str(args.probe),
        "data": str(args.split or "sample-held-out"),
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
