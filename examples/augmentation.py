"""Show SimCLR's augmentation (the views t(x), t'(x) of RoCL) on images of the bundled sample.

``SimCLRAugmentation`` applies, to a whole batch at once and on the batch's device, RoCL's
augmentation: colour jitter (0.4, 0.4, 0.4, 0.1) with probability 0.8, grayscale with
probability 0.2, a horizontal flip with probability 0.5 and a random resized crop back to 32x32.
Every image gets its own random parameters; a ``torch.Generator`` makes them reproducible.

The script writes ``OUT/augmentations.png``: one row per image, the original first, then
``--views`` augmented views of it, each magnified ``--zoom`` times (nearest neighbour) so
that 32x32 CIFAR images are easy to see.

Run (from the repository root)::

    python examples/augmentation.py --out runs/example-augmentation
    python examples/augmentation.py --tiny --out /tmp/augmentation-tiny
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from robust_contrastive import SimCLRAugmentation, load_sample


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Save a grid of SimCLR augmentations.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-augmentation"),
        help="output folder for augmentations.png",
    )
    parser.add_argument(
        "--images", type=int, default=10, help="images shown, one per class first (default: 10)"
    )
    parser.add_argument(
        "--views", type=int, default=7, help="augmented views per image (default: 7)"
    )
    parser.add_argument("--zoom", type=int, default=3, help="magnification (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--tiny", action="store_true", help="a small grid: 3 images, 3 views")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        args.images, args.views = 3, 3

    sample = load_sample()
    # One image of each class in turn: the first image of class 0, of class 1, ...
    firsts = [int((sample.labels == k).nonzero()[0]) for k in range(len(sample.classes))]
    index = torch.tensor((firsts * (args.images // len(firsts) + 1))[: args.images])
    index = index + torch.arange(args.images) // len(firsts)  # later rounds: the next images
    images = sample.images[index]  # (N, 3, 32, 32) uint8
    print("classes:", [sample.classes[int(k)] for k in sample.labels[index]])

    augment = SimCLRAugmentation(size=32)
    print(augment)
    generator = torch.Generator().manual_seed(args.seed)
    views = [augment(images, generator) for _ in range(args.views)]  # each (N, 3, 32, 32) float

    grid = torch.stack([images.float() / 255, *views], dim=1)  # (N, 1 + views, 3, 32, 32)
    grid = grid.flatten(0, 1)  # row-major: image 0 and its views, then image 1, ...
    grid = F.interpolate(grid, scale_factor=args.zoom, mode="nearest")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "augmentations.png"
    save_image(grid, path, nrow=1 + args.views, padding=2, pad_value=1.0)
    print(f"wrote {path}: {args.images} images x (original + {args.views} views)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
