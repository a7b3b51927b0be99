"""Train a plain SimCLR encoder (no attack) with the same trainer: ``adversarial=False``.

SimCLR is RoCL without the instance-wise adversary: two augmented views t(x), t'(x) per image
and the NT-Xent loss of eq. (3). It is the non-robust baseline of the paper (Table 1) and a
cheaper way to check a pipeline, since each step skips the attack's forward/backward passes.
``robust-contrastive train --simclr ...`` is the command-line equivalent.

Run (from the repository root)::

    python examples/train_simclr.py --out runs/example-simclr      # 1,000 images, about a minute
    python examples/train_simclr.py --tiny --out /tmp/simclr-tiny   # seconds: a smoke test

The output folder has the same layout as a RoCL run: ``OUT/model.safetensors`` +
``OUT/config.json`` (load with ``RoCLEncoder.from_pretrained``), ``OUT/projector/``,
``OUT/metrics.jsonl``, ``OUT/train_config.json`` and ``OUT/checkpoints/last.pt``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig, load_dataset


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train SimCLR on the bundled CIFAR-10 sample.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-simclr"),
        help="output folder (default: runs/example-simclr)",
    )
    parser.add_argument(
        "--images-per-class",
        type=int,
        default=100,
        help="images per class taken from the 500-per-class sample (default: 100)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument(
        "--width",
        type=int,
        default=16,
        help="ResNet18 width; 64 is the paper's network (default: 16)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run: 40 images, width 8, one epoch",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        args.images_per_class, args.epochs, args.batch_size, args.width = 4, 1, 20, 8

    data = load_dataset("sample", max_per_class=args.images_per_class)
    config = TrainConfig(
        adversarial=False,  # SimCLR: no instance-wise attack, two views, eq. (3)
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        warmup_epochs=max(1, args.epochs // 10),
        seed=args.seed,
        device=args.device,
        checkpoint_every=max(1, args.epochs),
        progress=not args.tiny,
        projection_hidden_dim=64 if args.tiny else 2048,
    )
    result = RoCLTrainer(config, args.out).fit(data)
    for record in result.history:
        # loss_regularizer is 0 for SimCLR: there is no adversarial term.
        print(json.dumps(record))

    encoder = RoCLEncoder.from_pretrained(args.out)
    print(f"SimCLR encoder saved to {args.out} ({encoder.config}, {encoder.feature_dim} features)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
