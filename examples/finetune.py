"""Adversarial full fine-tuning of a RoCL encoder (Table 1 of the paper): AT and TRADES.

Linear evaluation keeps the encoder frozen. Fine-tuning trains the encoder and a new linear
head end to end with a class-wise adversarial loss:

* ``"at"``: PGD adversarial training (Madry et al.), ``CE(f(PGD(x)), y)`` ("RoCL + AT");
* ``"trades"``: ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` with beta = 6 ("RoCL + TRADES");
* ``"at+ss"``: AT plus RoCL's self-supervised loss through the pretrained projector
  ("RoCL + AT + SS"; needs ``--model`` or the freshly trained encoder's projector).

``--scratch`` also trains the supervised AT baseline: the same recipe from a randomly
initialised encoder (``finetune(None, ...)``).

The script

1. splits the bundled sample into training, validation (model selection: the epoch with the
   best validation PGD accuracy is kept) and held-out images;
2. trains a small RoCL encoder (labels unused), or loads one with ``--model DIR`` (the
   projector from ``DIR/projector`` for ``at+ss``);
3. fine-tunes it with every method of ``--methods`` (default: ``at trades``) into
   ``OUT/<method>/`` (a ``RobustClassifier``: head at the folder, encoder in ``encoder/``,
   ``metrics.jsonl``, checkpoints);
4. reloads each classifier with ``RobustClassifier.from_pretrained``, measures its clean and
   l-inf PGD accuracy on the held-out images and writes ``OUT/finetune.json``.

Run (from the repository root)::

    python examples/finetune.py --out runs/example-finetune       # tens of minutes on a CPU
    python examples/finetune.py --model quickstart-run/rocl --methods at trades at+ss --scratch \\
        --out runs/finetune-quickstart
    python examples/finetune.py --tiny --out /tmp/finetune-tiny    # seconds: a smoke test

The paper gives no fine-tuning schedule; ``FinetuneConfig()``'s defaults are the standard
CIFAR-10 adversarial-training settings (SGD lr 0.1, PGD-10 with step 2/255, 100 epochs).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from robust_contrastive import (
    PGD,
    FinetuneConfig,
    ImageDataset,
    ProjectionHead,
    RobustClassifier,
    RoCLEncoder,
    RoCLTrainer,
    TrainConfig,
    finetune,
    load_sample,
    train_val_split,
)
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("finetune")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fine-tune an encoder with AT / TRADES.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-finetune"),
        help="output folder (default: runs/example-finetune)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a training run folder (encoder in DIR, projector in DIR/projector); default: "
        "train a small RoCL encoder first",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["at", "trades"],
        choices=["at", "trades", "at+ss"],
        help="fine-tuning objectives (default: at trades)",
    )
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="also train the supervised AT baseline from a random encoder (encoder=None)",
    )
    parser.add_argument(
        "--images-per-class", type=int, default=100, help="training images per class (default: 100)"
    )
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (default: 10)")
    parser.add_argument("--width", type=int, default=16, help="encoder width (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run: 20 training images, a width-8 encoder, 1 epoch",
    )
    return parser.parse_args(argv)


def split_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(train, val, held_out): stratified, seeded; held-out = 20 per class (2 for --tiny)."""
    sample = load_sample()  # 5,000 CIFAR-10 images, 500 per class
    val_per_class, held_per_class = (1, 1) if args.tiny else (20, 20)
    per_class = args.images_per_class + val_per_class + held_per_class
    sample = sample.subset([i for c in range(10) for i in range(500 * c, 500 * c + per_class)])
    rest_idx, held_idx = train_val_split(sample.labels, val_per_class=held_per_class, seed=0)
    rest = sample.subset(rest_idx)
    train_idx, val_idx = train_val_split(rest.labels, val_per_class=val_per_class, seed=0)
    return rest.subset(train_idx), rest.subset(val_idx), sample.subset(held_idx)


def get_encoder(args: argparse.Namespace, data: ImageDataset) -> tuple[RoCLEncoder, ProjectionHead]:
    """The encoder and projector of ``--model``, or a small RoCL pair trained on ``data``."""
    if args.model is not None:
        encoder = RoCLEncoder.from_pretrained(args.model)
        return encoder, ProjectionHead.from_pretrained(args.model / "projector")
    config = TrainConfig(
        width=args.width,
        epochs=1 if args.tiny else 2,
        batch_size=min(128, len(data)),
        warmup_epochs=1,
        attack_steps=1 if args.tiny else 7,
        projection_hidden_dim=32 if args.tiny else 2048,
        seed=args.seed,
        progress=not args.tiny,
    )
    result = RoCLTrainer(config, args.out / "pretrained").fit(data)
    return result.encoder.eval(), result.projector.eval()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.images_per_class, args.epochs, args.width = 2, 1, 8
    torch.manual_seed(args.seed)
    train_set, val_set, held_out = split_data(args)
    encoder, projector = get_encoder(args, train_set)

    base = FinetuneConfig(
        epochs=args.epochs,
        batch_size=10 if args.tiny else 128,
        attack_steps=2 if args.tiny else 10,  # PGD-10, eps 8/255, step 2/255 (the default)
        ss_attack_steps=1 if args.tiny else 7,
        val_attack_steps=2 if args.tiny else 10,
        lr_schedule="cosine",  # the default "step" staircase suits long runs
        seed=args.seed,
        progress=not args.tiny,
        checkpoint_every=max(1, args.epochs),
    )
    runs: list[tuple[str, RoCLEncoder | None, FinetuneConfig]] = [
        (method, encoder, replace(base, method=method)) for method in args.methods
    ]
    if args.scratch:  # the supervised baseline: the same budget from a random encoder
        runs.append(("scratch-at", None, replace(base, method="at")))

    test_steps = 2 if args.tiny else 20
    attack_generator = torch.Generator().manual_seed(args.seed)
    images = held_out.images.float() / 255  # (N, 3, 32, 32) float in [0, 1]
    results: dict[str, dict[str, float | int | None]] = {}
    for name, start, config in runs:
        logger.info("fine-tuning %s (%s)", name, "from scratch" if start is None else "RoCL")
        result = finetune(
            start,
            train_set,
            config,
            projector=projector if config.method == "at+ss" else None,
            val=val_set,
            out_dir=args.out / name,
            width=encoder.config.width,
        )
        model = RobustClassifier.from_pretrained(args.out / name)  # head + encoder/
        attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=test_steps)
        adversarial = attack(images, held_out.labels, generator=attack_generator)
        results[name] = {
            "best_epoch": result.best_epoch,
            "clean_accuracy": accuracy(model, held_out),
            f"pgd{test_steps}_accuracy": accuracy(model, adversarial, held_out.labels),
        }
        logger.info("%s on %d held-out images: %s", name, len(held_out), results[name])

    summary = {
        "encoder": str(args.model) if args.model is not None else str(args.out / "pretrained"),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "held_out_images": len(held_out),
        "epochs": args.epochs,
        "test_attack": f"l-inf PGD-{test_steps}, eps 8/255, step 2/255",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
