"""Linear evaluation of a frozen encoder: the clean probe and robust linear evaluation (r-LE).

A self-supervised encoder f_theta has no classifier. Linear evaluation trains only a linear
layer l_psi on top of the frozen encoder; RoCL's robust linear evaluation (r-LE, eq. 7) trains
the same layer on class-wise PGD examples instead:

    argmin_psi E_(x,y) [ max_{delta in B(x, eps)} CE(l_psi(f_theta(x + delta)), y) ]

The script

1. splits the bundled CIFAR-10 sample into held-out images (never trained, probed or selected
   on), a validation split (used only to pick the probe's best epoch) and the images to fit on;
   with ``--split RUN/split.json`` it uses the training run's split instead;
2. trains a small RoCL encoder on the fit images (labels unused) with ``RoCLTrainer``, or
   loads one with ``--model DIR``;
3. fits a clean probe (``augment=False``: the fast path, on features computed once) and an r-LE
   probe (``adversarial=True``: PGD examples against the probe at every step), both with
   model selection on the validation split;
4. measures each probe's clean and l-inf PGD accuracy on the held-out images;
5. saves both probes (``save_pretrained``: the head, its config and the encoder), loads them
   back (``from_pretrained``) and checks that they give the same logits;
6. writes ``OUT/linear_probe.json``.

Run (from the repository root)::

    python examples/linear_probe.py --out runs/example-probe            # minutes on a CPU
    python examples/linear_probe.py --model quickstart-run/rocl --split quickstart-run/split.json \\
        --out runs/probe-quickstart
    python examples/linear_probe.py --tiny --out /tmp/probe-tiny         # seconds: a smoke test

The robust accuracies of this CPU-sized run say little: the paper's numbers need the full
ResNet18 trained for 1000 epochs and the full CIFAR-10 (see the evaluation guide).
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
    RobustLinearProbe,
    RoCLEncoder,
    RoCLTrainer,
    TrainConfig,
    load_sample,
    train_val_split,
)
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("linear_probe")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Clean linear probe and r-LE on an encoder.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-probe"),
        help="output folder (default: runs/example-probe)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="an encoder folder (RoCLEncoder.save_pretrained, e.g. a training run); default: "
        "train a small RoCL encoder first",
    )
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split.json of the run that trained --model (its 'val' images are held out); "
        "indices into the full bundled sample",
    )
    parser.add_argument(
        "--held-out-per-class", type=int, default=50, help="held-out images per class (default: 50)"
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=20,
        help="validation images per class, for model selection only (default: 20)",
    )
    parser.add_argument(
        "--pretrain-epochs", type=int, default=2, help="encoder training epochs (default: 2)"
    )
    parser.add_argument("--width", type=int, default=16, help="encoder width (default: 16)")
    parser.add_argument("--epochs", type=int, default=30, help="clean probe epochs (default: 30)")
    parser.add_argument("--rle-epochs", type=int, default=5, help="r-LE epochs (default: 5)")
    parser.add_argument(
        "--rle-steps", type=int, default=10, help="r-LE PGD steps (default: 10, as the original)"
    )
    parser.add_argument(
        "--test-steps", type=int, default=20, help="PGD steps of the held-out test (default: 20)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run: 60 images, a width-8 encoder, 2-step attacks",
    )
    return parser.parse_args(argv)


def split_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset]:
    """(train, held_out): the run's split.json, or a fresh stratified split of the sample."""
    sample = load_sample()  # 5,000 CIFAR-10 images, 500 per class, (N, 3, 32, 32) uint8
    if args.split is not None:
        split = json.loads(args.split.read_text())
        return sample.subset(split["train"]), sample.subset(split["val"])
    if args.tiny:  # the first 6 images of each class
        sample = sample.subset([i for c in range(10) for i in range(500 * c, 500 * c + 6)])
    train_idx, held_idx = train_val_split(
        sample.labels, val_per_class=args.held_out_per_class, seed=args.seed
    )
    return sample.subset(train_idx), sample.subset(held_idx)


def get_encoder(args: argparse.Namespace, data: ImageDataset) -> RoCLEncoder:
    """The encoder of ``--model``, or a small RoCL encoder trained on ``data`` (no labels)."""
    if args.model is not None:
        return RoCLEncoder.from_pretrained(args.model)
    config = TrainConfig(
        width=args.width,
        epochs=args.pretrain_epochs,
        batch_size=min(128, len(data)),
        warmup_epochs=1,
        attack_steps=1 if args.tiny else 7,
        projection_hidden_dim=32 if args.tiny else 2048,
        seed=args.seed,
        progress=not args.tiny,
        checkpoint_every=args.pretrain_epochs,
    )
    logger.info("training a RoCL encoder on %d images", len(data))
    return RoCLTrainer(config, args.out / "encoder").fit(data).encoder.eval()


def robust_accuracy(model: torch.nn.Module, data: ImageDataset, steps: int, seed: int) -> float:
    """Accuracy under l-inf PGD (eps 8/255, step 2/255, random start) on ``data``."""
    images = data.images.float() / 255  # (N, 3, 32, 32) float in [0, 1]
    attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=steps)
    adversarial = attack(images, data.labels, generator=torch.Generator().manual_seed(seed))
    return accuracy(model, adversarial, data.labels)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.held_out_per_class, args.val_per_class = 2, 1
        args.pretrain_epochs, args.width = 1, 8
        args.epochs, args.rle_epochs, args.rle_steps, args.test_steps = 3, 1, 2, 2
    torch.manual_seed(args.seed)

    train_set, held_out = split_data(args)
    fit_idx, val_idx = train_val_split(
        train_set.labels, val_per_class=args.val_per_class, seed=args.seed
    )
    fit_set, val_set = train_set.subset(fit_idx), train_set.subset(val_idx)
    logger.info(
        "fit on %d images, select on %d, test on %d held-out images",
        len(fit_set),
        len(val_set),
        len(held_out),
    )
    encoder = get_encoder(args, fit_set)
    num_classes = len(train_set.classes)

    # Clean linear evaluation. augment=False (and adversarial=False) takes the fast path: the
    # frozen encoder's features are computed once and the linear layer trains on them.
    clean_probe = RobustLinearProbe(
        encoder, num_classes, augment=False, epochs=args.epochs, batch_size=256
    )
    clean_probe.fit(fit_set, val=val_set, seed=args.seed, progress=not args.tiny)
    logger.info("clean probe: kept epoch %s of %d", clean_probe.best_epoch, args.epochs)

    # Robust linear evaluation (r-LE, eq. 7): PGD examples against the current probe, every step.
    # The encoder is shared with the clean probe: it stays frozen, so neither probe changes it.
    rle_probe = RobustLinearProbe(
        encoder,
        num_classes,
        adversarial=True,
        attack_steps=args.rle_steps,
        epochs=args.rle_epochs,
        batch_size=256,
    )
    rle_probe.fit(fit_set, val=val_set, seed=args.seed, progress=not args.tiny)
    logger.info("r-LE probe: kept epoch %s of %d", rle_probe.best_epoch, args.rle_epochs)

    results: dict[str, dict[str, float]] = {}
    for name, probe in (("clean probe", clean_probe), ("r-LE probe", rle_probe)):
        results[name] = {
            "clean_accuracy": accuracy(probe, held_out),
            f"pgd{args.test_steps}_accuracy": robust_accuracy(
                probe, held_out, args.test_steps, args.seed
            ),
        }
        logger.info("%s on the held-out images: %s", name, results[name])

    # Save and load: OUT/<probe>/ holds config.json, model.safetensors (the head) and encoder/.
    images = held_out.images[:8].float() / 255
    for folder, probe in (("probe-clean", clean_probe), ("probe-rle", rle_probe)):
        probe.save_pretrained(args.out / folder)
        loaded = RobustLinearProbe.from_pretrained(args.out / folder)
        with torch.no_grad():
            if not torch.allclose(loaded(images), probe(images), atol=1e-5):
                raise SystemExit(f"the reloaded {folder} does not reproduce the trained probe")
        logger.info("saved and reloaded %s: identical logits", args.out / folder)

    summary = {
        "model": str(args.model) if args.model is not None else str(args.out / "encoder"),
        "fit_images": len(fit_set),
        "val_images": len(val_set),
        "held_out_images": len(held_out),
        "clean_probe_best_epoch": clean_probe.best_epoch,
        "rle_probe_best_epoch": rle_probe.best_epoch,
        "test_attack": f"l-inf PGD-{args.test_steps}, eps 8/255, step 2/255",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "linear_probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
