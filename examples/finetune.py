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

1. takes training and validation images (model selection: the epoch with the best validation
   PGD accuracy is kept) from the bundled 5,000-image sample, less the 189 images it shares
   with the held-out sample, and held-out images from the bundled held-out sample
   (``load_sample(held_out=True)``: images the bundled models never trained or selected on);
2. loads the bundled RoCL encoder ``rocl-resnet18-w16-cifar10-cpu`` and its projector (for
   ``at+ss``), or another registered name or training run folder (``--model``: the encoder in
   DIR, the projector in DIR/projector);
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

``--tiny`` fine-tunes for one epoch on 200 images (lr 0.01, PGD-2) and tests 100 held-out
images with PGD-5: it shows the pipeline, not what fine-tuning achieves. For comparison, the
bundled encoder's linear probe scores 37.9 % clean and 17.2 % under PGD-20 on all 2,000
held-out images (``experiments/results/cifar10_cpu.md``).

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
    RobustLinearProbe,
    RoCLEncoder,
    finetune,
    load_sample,
    train_val_split,
)
from robust_contrastive.data import sample_indices
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("finetune")

BUNDLED = "rocl-resnet18-w16-cifar10-cpu"


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
        default=BUNDLED,
        help="a registered encoder name or a training run folder (encoder in DIR, projector in "
        f"DIR/projector) (default: {BUNDLED})",
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
    parser.add_argument(
        "--lr", type=float, default=0.1, help="learning rate (default: 0.1; --tiny: 0.01)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a quick run: 200 training images, 1 epoch, 100 held-out images",
    )
    return parser.parse_args(argv)


def first(data: ImageDataset, per_class: int) -> ImageDataset:
    """The first ``per_class`` images of each class."""
    keep = [(data.labels == c).nonzero().flatten()[:per_class] for c in range(len(data.classes))]
    return data.subset(torch.cat(keep).sort().values)


def split_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(train, val, held_out): train and val from the sample, held-out from the held-out sample.

    Stratified and seeded; 20 validation and 20 held-out images per class (10 for --tiny).
    """
    sample = load_sample()  # 5,000 CIFAR-10 images, 500 per class
    shared = torch.isin(sample_indices(), sample_indices(held_out=True))
    sample = sample.subset(~shared)  # no image of the held-out sample
    per_class = 10 if args.tiny else 20
    sample = first(sample, args.images_per_class + per_class)
    train_idx, val_idx = train_val_split(sample.labels, val_per_class=per_class, seed=0)
    held_out = first(load_sample(held_out=True), per_class)
    return sample.subset(train_idx), sample.subset(val_idx), held_out


def get_encoder(model: str) -> tuple[RoCLEncoder, ProjectionHead]:
    """The encoder and projector of a registered name or a training run folder."""
    return RoCLEncoder.from_pretrained(model), ProjectionHead.from_pretrained(model)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.images_per_class, args.epochs, args.lr = 20, 1, 0.01
    torch.manual_seed(args.seed)
    train_set, val_set, held_out = split_data(args)
    encoder, projector = get_encoder(args.model)

    base = FinetuneConfig(
        epochs=args.epochs,
        batch_size=50 if args.tiny else 128,
        lr=args.lr,
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

    test_steps = 5 if args.tiny else 20
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

    # The reference: the encoder before fine-tuning, with its linear probe (bundled models only).
    reference: dict[str, float] = {}
    if args.model == BUNDLED:
        probe = RobustLinearProbe.from_pretrained(f"{BUNDLED}-probe")
        attack = PGD(probe, eps=8 / 255, alpha=2 / 255, steps=test_steps)
        adversarial = attack(images, held_out.labels, generator=attack_generator)
        reference = {
            "clean_accuracy": accuracy(probe, held_out),
            f"pgd{test_steps}_accuracy": accuracy(probe, adversarial, held_out.labels),
        }
        logger.info("before fine-tuning (%s-probe): %s", BUNDLED, reference)
    note = None
    if args.tiny:
        note = (
            f"--tiny: {args.epochs} epoch of {len(train_set) // base.batch_size} steps cannot "
            "train a new linear head: these accuracies are near chance (10 %) and show the "
            "pipeline only; 'reference' is the bundled linear probe on the same images"
        )
        logger.warning("%s", note)

    summary = {
        "encoder": str(args.model),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "held_out_images": len(held_out),
        "epochs": args.epochs,
        "test_attack": f"l-inf PGD-{test_steps}, eps 8/255, step 2/255",
        "results": results,
        "reference": {f"{BUNDLED}-probe (before fine-tuning)": reference} if reference else {},
        "note": note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
