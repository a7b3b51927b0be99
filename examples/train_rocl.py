"""Train a RoCL encoder on the bundled CIFAR-10 sample, then load it back from disk.

RoCL (Kim, Tack & Hwang, NeurIPS 2020) trains an encoder without labels: every step attacks
one augmented view t(x) with the label-free instance-wise attack and pulls t(x), t'(x) and the
adversarial t(x)^adv together with the contrastive loss of eq. (6).

This script uses only the public API:

* ``load_dataset("sample", max_per_class=K)``: K images per class of the bundled sample;
* ``TrainConfig`` + ``RoCLTrainer(config, out_dir).fit(data)``: the training loop, which writes
  the encoder (``OUT/model.safetensors`` + ``OUT/config.json``), the projector
  (``OUT/projector/``), ``OUT/metrics.jsonl``, ``OUT/train_config.json`` and
  ``OUT/checkpoints/last.pt``;
* ``RoCLEncoder.from_pretrained(OUT)``: rebuilds the encoder from those files.

Run (from the repository root)::

    python examples/train_rocl.py --out runs/example-rocl          # 1,000 images, minutes on CPU
    python examples/train_rocl.py --tiny --out /tmp/rocl-tiny       # seconds: a smoke test

The defaults are CPU-sized (width 16, one epoch); the paper's run is ``TrainConfig()`` with
``epochs=1000`` on the full CIFAR-10 training set and a GPU.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig, load_dataset


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train RoCL on the bundled CIFAR-10 sample.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-rocl"),
        help="output folder (default: runs/example-rocl)",
    )
    parser.add_argument(
        "--images-per-class",
        type=int,
        default=100,
        help="images per class taken from the 500-per-class sample (default: 100)",
    )
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1)")
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
        help="a seconds-long smoke run: 40 images, width 8, 2 attack steps",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        args.images_per_class, args.epochs, args.batch_size, args.width = 4, 1, 20, 8

    data = load_dataset("sample", max_per_class=args.images_per_class)
    print(f"data: {data}")

    config = TrainConfig(
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        warmup_epochs=max(1, args.epochs // 10),
        seed=args.seed,
        device=args.device,
        checkpoint_every=max(1, args.epochs),
        progress=not args.tiny,
        # The paper's attack (8/255, step 0.007, 7 steps); fewer steps for the smoke run.
        attack_steps=2 if args.tiny else 7,
        projection_hidden_dim=64 if args.tiny else 2048,
    )
    result = RoCLTrainer(config, args.out).fit(data)
    for record in result.history:
        print(json.dumps(record))

    # The folder is a save_pretrained folder: rebuild the encoder from it alone.
    encoder = RoCLEncoder.from_pretrained(args.out)
    images = data.images[:8].float() / 255  # (8, 3, 32, 32) float in [0, 1]
    with torch.no_grad():
        loaded = encoder(images)
        trained = result.encoder.cpu()(images)
    if not torch.allclose(loaded, trained, atol=1e-5):
        raise SystemExit("the reloaded encoder does not reproduce the trained one")
    print(f"loaded {encoder.config} from {args.out}: features {tuple(loaded.shape)}")
    files = sorted(
        str(path.relative_to(args.out)) for path in args.out.rglob("*") if path.is_file()
    )
    print(f"files in {args.out}: {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
