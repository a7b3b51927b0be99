"""Robustness report of a classifier: clean accuracy and accuracy under several threats.

``evaluate_robustness(model, data, threats)`` attacks a classifier (images in [0, 1] -> logits)
with every threat of the list, runs sanity checks against gradient masking and weak attacks,
and returns a ``RobustnessReport`` in which every number carries the attack that produced it
(norm, eps, step, steps, protocol), the number of images and the seed.

The script

1. loads a linear probe: by default the bundled ``rocl-resnet18-w16-cifar10-cpu-probe`` (a
   RoCL resnet18 of width 16 trained on 8,000 CIFAR-10 images, with its clean linear probe),
   or any probe folder saved by ``RobustLinearProbe.save_pretrained`` / ``robust-contrastive
   probe`` (``--probe DIR``, e.g. ``quickstart-run/rocl/probe``) or registered name;
2. evaluates it on held-out images: the bundled held-out sample (``load_sample(held_out=True)``:
   2,000 CIFAR-10 images the bundled models never trained or selected on), or with ``--split
   RUN/split.json`` the ``val`` images of the run behind ``--probe``; ``--n-images`` of them,
   drawn at random and equally many per class; under the threats given with ``--threats``
   (names from ``THREATS``; default: the headline l-inf PGD-20, the weaker ``legacy`` protocol
   of the original evaluation, l2 and l1); ``--autoattack`` adds AutoAttack (needs
   torchattacks);
3. writes the report as ``OUT/report.json`` and ``OUT/report.md`` and prints the table.

Run (from the repository root)::

    python examples/evaluate_robustness.py --out runs/example-report      # minutes on a CPU
    python examples/evaluate_robustness.py --probe quickstart-run/rocl/probe \\
        --split quickstart-run/split.json --autoattack --out runs/report-quickstart
    python examples/evaluate_robustness.py --tiny --out /tmp/report-tiny   # seconds

``--tiny`` evaluates 100 images (10 per class) under l-inf 8/255 PGD with 10 steps of 2/255
only (``linf-8/255-pgd10``), without the sanity checks: its numbers are rough (one image is one
point). The published ones, on all 2,000 held-out images, are 37.9 % clean and 17.2 % under
PGD-20 (``experiments/results/cifar10_cpu.md``).

Any warning in the report means a robust accuracy may be overestimated: read it before quoting
the number.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from robust_contrastive import RobustLinearProbe, evaluate_robustness, load_sample
from robust_contrastive.evaluation import THREATS, Threat

logger = logging.getLogger("evaluate_robustness")

DEFAULT = ("linf-8/255", "linf-8/255-legacy", "l2-0.5", "l1-12")
BUNDLED = "rocl-resnet18-w16-cifar10-cpu-probe"
TINY = "linf-8/255-pgd10"


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
        default=BUNDLED,
        help=f"a saved RobustLinearProbe folder or registered name (default: {BUNDLED})",
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
        "--n-images",
        type=int,
        default=500,
        help="held-out images evaluated, equally many per class (default: 500)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (default: 0)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a quick run: 100 images, l-inf 8/255 PGD-10 only, no sanity checks",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    if args.split is not None and args.probe == BUNDLED:
        raise SystemExit(
            f"--split selects the held-out images of your own run; {BUNDLED} trained on most of "
            "the bundled sample: pass --probe RUN/probe with it, or leave --split out"
        )
    if args.split is not None:  # the held-out images of a run trained on the bundled sample
        split = json.loads(args.split.read_text())
        held_out = load_sample().subset(split["val"])
    else:  # 2,000 CIFAR-10 images that the bundled models never trained or selected on
        held_out = load_sample(held_out=True)
    probe = RobustLinearProbe.from_pretrained(args.probe)

    threats: list[str | Threat] = list(args.threats)
    if args.autoattack:
        threats.append("autoattack-linf-8/255")
    if args.tiny:  # the headline l-inf threat with 10 steps instead of 20, on 100 images
        args.n_images, threats = 100, [replace(THREATS["linf-8/255"], name=TINY, steps=10)]
    held_out = held_out.stratified(args.n_images // len(held_out.classes), seed=args.seed)
    logger.info("evaluating %s on %d held-out images", args.probe, len(held_out))
    report = evaluate_robustness(
        probe,
        held_out,
        threats,
        seed=args.seed,
        progress=not args.tiny,
        sanity_checks=not args.tiny,
    )
    report.info.update({"probe": str(args.probe), "split": str(args.split or "sample-held-out")})
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
