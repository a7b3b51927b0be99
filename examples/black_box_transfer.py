"""Black-box transfer attacks (Table 2 of RoCL): adversaries made on one model, tested on another.

The attacker has no access to the target: it crafts l-inf adversarial examples on a *source*
model and the target is tested on them. Two sources, as in Table 2:

* ``PGD``: class-wise PGD on the source encoder + its linear probe;
* ``inst.``: RoCL's label-free instance-wise attack (eq. 4) on the source encoder + its
  projector (each clean image is its own positive).

``transfer_accuracy(target, data, attack)`` runs either attack batch by batch and returns the
target's accuracy on the transferred images.

The script

1. loads a source and a target run (``--source RUN --target RUN``: folders with the encoder at
   RUN, the projector in RUN/projector and a linear probe in RUN/probe, as written by
   ``robust-contrastive quickstart``), or trains both itself: a RoCL source and a SimCLR target,
   each with a clean linear probe on cached features;
2. measures the target's clean accuracy, its white-box PGD accuracy (for reference) and its
   accuracy on PGD and instance-wise examples transferred from the source;
3. writes ``OUT/transfer.json``.

Run (from the repository root)::

    python examples/black_box_transfer.py --out runs/example-transfer
    python examples/black_box_transfer.py --source quickstart-run/rocl \\
        --target quickstart-run/simclr --split quickstart-run/split.json --out runs/transfer-qs
    python examples/black_box_transfer.py --tiny --out /tmp/transfer-tiny     # seconds
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
    ImageDataset,
    InstanceWiseAttack,
    ProjectionHead,
    RobustLinearProbe,
    RoCLTrainer,
    TrainConfig,
    load_sample,
    train_val_split,
    transfer_accuracy,
)
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("black_box_transfer")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Black-box transfer of PGD and inst. attacks.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-transfer"),
        help="output folder for transfer.json (default: runs/example-transfer)",
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="source run (encoder, projector/, probe/)"
    )
    parser.add_argument("--target", type=Path, default=None, help="target run (encoder, probe/)")
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split.json of the runs: evaluate on its held-out 'val' indices",
    )
    parser.add_argument("--steps", type=int, default=20, help="attack steps (default: 20)")
    parser.add_argument(
        "--n-images", type=int, default=500, help="held-out images attacked (default: 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run: 8 images, 2 steps"
    )
    return parser.parse_args(argv)


def load_run(folder: Path) -> tuple[RobustLinearProbe, ProjectionHead]:
    """The probe (encoder + linear head) and the projector of a quickstart-style run folder."""
    probe = RobustLinearProbe.from_pretrained(folder / "probe")
    projector = ProjectionHead.from_pretrained(folder / "projector")
    return probe, projector


def train_run(
    args: argparse.Namespace, data: ImageDataset, adversarial: bool
) -> tuple[RobustLinearProbe, ProjectionHead]:
    """A small RoCL (or SimCLR) encoder trained without labels, and a clean probe on it."""
    name = "rocl" if adversarial else "simclr"
    config = TrainConfig(
        adversarial=adversarial,
        width=8 if args.tiny else 16,
        epochs=1 if args.tiny else 2,
        batch_size=min(128, len(data)),
        warmup_epochs=1,
        attack_steps=1 if args.tiny else 7,
        projection_hidden_dim=32 if args.tiny else 2048,
        seed=args.seed,
        progress=not args.tiny,
    )
    result = RoCLTrainer(config, args.out / name).fit(data)
    probe = RobustLinearProbe(
        result.encoder.eval(),
        len(data.classes),
        augment=False,
        epochs=3 if args.tiny else 50,
        batch_size=256,
    )
    probe.fit(data, seed=args.seed, progress=not args.tiny)
    probe.save_pretrained(args.out / name / "probe")
    return probe, result.projector.eval()


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
        args.steps, args.n_images = 2, 8
    if (args.source is None) != (args.target is None):
        raise SystemExit("pass both --source and --target, or neither")
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
    if args.source is not None and args.target is not None:
        source, source_projector = load_run(args.source)
        target, _ = load_run(args.target)
    else:
        source, source_projector = train_run(args, train_set, adversarial=True)
        target, _ = train_run(args, train_set, adversarial=False)
    held_out = subsample(held_out, args.n_images, args.seed)

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
        "source": str(args.source or args.out / "rocl"),
        "target": str(args.target or args.out / "simclr"),
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
