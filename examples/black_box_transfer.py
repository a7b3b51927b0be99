"""Black-box transfer attacks (Table 2 of RoCL): adversaries made on one model, tested on another.

The attacker has no access to the target: it crafts l-inf adversarial examples on a *source*
model and the target is tested on them. Two sources, as in Table 2:

* ``PGD``: class-wise PGD on the source encoder + its linear probe;
* ``inst.``: RoCL's label-free instance-wise attack (eq. 4) on the source encoder + its
  projector (each clean image is its own positive).

``transfer_accuracy(target, data, attack)`` runs either attack batch by batch and returns the
target's accuracy on the transferred images.

The script

1. loads a source and a target model: by default the bundled RoCL encoder
   ``rocl-resnet18-w16-cifar10-cpu`` (source: its projector and its linear probe
   ``...-probe``) and the bundled SimCLR twin ``simclr-resnet18-w16-cifar10-cpu`` (target),
   or two runs (``--source RUN --target RUN``: folders with the encoder at RUN, the projector
   in RUN/projector and a linear probe in RUN/probe, as written by ``robust-contrastive
   quickstart``); held-out images: the bundled held-out sample (``load_sample(held_out=True)``,
   never trained or selected on by the bundled models), or with ``--split RUN/split.json`` the
   ``val`` images of your runs;
2. measures the target's clean accuracy, its white-box PGD accuracy (for reference) and its
   accuracy on PGD and instance-wise examples transferred from the source;
3. writes ``OUT/transfer.json``.

Run (from the repository root)::

    python examples/black_box_transfer.py --out runs/example-transfer
    python examples/black_box_transfer.py --source quickstart-run/rocl \\
        --target quickstart-run/simclr --split quickstart-run/split.json --out runs/transfer-qs
    python examples/black_box_transfer.py --tiny --out /tmp/transfer-tiny     # seconds

``--tiny`` attacks 100 images (10 per class) with 5 steps: rough numbers, for a quick look.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from robust_contrastive import (
    PGD,
    InstanceWiseAttack,
    ProjectionHead,
    RobustLinearProbe,
    load_sample,
    transfer_accuracy,
)
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("black_box_transfer")

SOURCE, TARGET = "rocl-resnet18-w16-cifar10-cpu", "simclr-resnet18-w16-cifar10-cpu"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Black-box transfer of PGD and inst. attacks.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-transfer"),
        help="output folder for transfer.json (default: runs/example-transfer)",
    )
    parser.add_argument(
        "--source",
        default=SOURCE,
        help=f"source run (encoder, projector/, probe/) or registered encoder (default: {SOURCE})",
    )
    parser.add_argument(
        "--target",
        default=TARGET,
        help=f"target run (encoder, probe/) or registered encoder (default: {TARGET})",
    )
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split.json of the runs: evaluate on its held-out 'val' indices",
    )
    parser.add_argument("--steps", type=int, default=20, help="attack steps (default: 20)")
    parser.add_argument(
        "--n-images",
        type=int,
        default=500,
        help="held-out images attacked, equally many per class (default: 500)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--tiny", action="store_true", help="a quick run: 100 images, 5 steps")
    return parser.parse_args(argv)


def load_run(spec: str) -> tuple[RobustLinearProbe, ProjectionHead]:
    """The probe (encoder + linear head) and the projector of a run folder or registered name.

    A quickstart-style run folder holds the probe in ``probe/`` and the projector in
    ``projector/``; a registered encoder ``NAME`` has its probe registered as ``NAME-probe``.
    """
    folder = Path(spec)
    if folder.is_dir():
        probe = RobustLinearProbe.from_pretrained(folder / "probe")
        return probe, ProjectionHead.from_pretrained(folder / "projector")
    probe = RobustLinearProbe.from_pretrained(f"{spec}-probe")
    return probe, ProjectionHead.from_pretrained(spec)  # the encoder's projector/


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.steps, args.n_images = 5, 100
    runs_given = Path(args.source).is_dir() and Path(args.target).is_dir()
    if args.split is not None and not runs_given:
        raise SystemExit(
            "--split selects the held-out images of your own runs; the bundled models trained "
            "on most of the bundled sample: pass --source RUN --target RUN, or leave --split out"
        )
    torch.manual_seed(args.seed)
    if args.split is not None:  # the held-out images of runs trained on the bundled sample
        split = json.loads(args.split.read_text())
        held_out = load_sample().subset(split["val"])
    else:  # 2,000 CIFAR-10 images that the bundled models never trained or selected on
        held_out = load_sample(held_out=True)
    source, source_projector = load_run(args.source)
    target, _ = load_run(args.target)
    held_out = held_out.stratified(args.n_images // len(held_out.classes), seed=args.seed)

    # Both attacks: l-inf, eps 8/255, with the same number of steps.
    pgd_source = PGD(source, eps=8 / 255, alpha=2 / 255, steps=args.steps)
    instance_source = InstanceWiseAttack(
        source.encoder, source_projector, eps=8 / 255, alpha=2 / 255, steps=args.steps
    )
    pgd_target = PGD(target, eps=8 / 255, alpha=2 / 255, steps=args.steps)  # white box

    images, labels = held_out.images.float() / 255, held_out.labels  # float in [0, 1]
    white_box = pgd_target(images, labels, generator=torch.Generator().manual_seed(args.seed))
    progress = not args.tiny
    results = {
        "target_clean": accuracy(target, held_out),
        "target_white_box_pgd": accuracy(target, white_box, labels),
        "transfer_pgd_from_source": transfer_accuracy(
            target, held_out, pgd_source, seed=args.seed, progress=progress
        ),
        "transfer_inst_from_source": transfer_accuracy(
            target, held_out, instance_source, seed=args.seed, progress=progress
        ),
        "source_clean": accuracy(source, held_out),
    }
    for name, value in results.items():
        logger.info("%-26s %.3f", name, value)

    summary = {
        "source": str(args.source),
        "target": str(args.target),
        "data": str(args.split or "sample-held-out"),
        "images": len(held_out),
        "attack": f"l-inf 8/255, step 2/255, {args.steps} steps",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
