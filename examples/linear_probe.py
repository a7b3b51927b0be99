"""Linear evaluation of a frozen encoder: the clean probe and robust linear evaluation (r-LE).

A self-supervised encoder f_theta has no classifier. Linear evaluation trains only a linear
layer l_psi on top of the frozen encoder; RoCL's robust linear evaluation (r-LE, eq. 7) trains
the same layer on class-wise PGD examples instead:

    argmin_psi E_(x,y) [ max_{delta in B(x, eps)} CE(l_psi(f_theta(x + delta)), y) ]

The script

1. loads a frozen encoder: by default the bundled ``rocl-resnet18-w16-cifar10-cpu`` (a RoCL
   resnet18 of width 16 trained without labels on 8,000 CIFAR-10 images), or an encoder folder
   or registered name (``--model``);
2. fits on images of the bundled 5,000-image sample, less the 189 that are also in the held-out
   sample, with a validation split of them used only to pick each probe's best epoch, and tests
   on the bundled held-out sample (``load_sample(held_out=True)``: 2,000 images that the bundled
   models never trained or selected on); with ``--split RUN/split.json`` (the run that trained
   ``--model`` on the bundled sample) it fits on the run's ``train`` and tests on its ``val``
   images instead;
3. fits a clean probe (``augment=False``: the fast path, on features computed once) and an r-LE
   probe (``adversarial=True``: PGD examples against the probe at every step, starting from the
   clean probe's head), both with model selection on the validation split;
4. measures each probe's clean and l-inf PGD accuracy on ``--n-images`` held-out images;
5. saves both probes (``save_pretrained``: the head, its config and the encoder), loads them
   back (``from_pretrained``) and checks that they give the same logits;
6. writes ``OUT/linear_probe.json``.

Run (from the repository root)::

    python examples/linear_probe.py --out runs/example-probe            # tens of minutes on a CPU
    python examples/linear_probe.py --model quickstart-run/rocl --split quickstart-run/split.json \\
        --out runs/probe-quickstart
    python examples/linear_probe.py --tiny --out /tmp/probe-tiny         # seconds

``--tiny`` fits on 200 images (20 per class; 10 per class more for validation), trains r-LE for
one epoch with 2-step PGD and tests 100 held-out images with PGD-5: rough numbers, for a quick
look. The bundled probe ``rocl-resnet18-w16-cifar10-cpu-probe``, fitted on 47,000 images, scores
37.9 % clean and 17.2 % under PGD-20 on all 2,000 held-out images
(``experiments/results/cifar10_cpu.md``); the paper's numbers need the full ResNet18 trained for
1000 epochs on all of CIFAR-10 (see the evaluation guide).
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
    load_sample,
    train_val_split,
)
from robust_contrastive.data import sample_indices
from robust_contrastive.evaluation import accuracy

logger = logging.getLogger("linear_probe")

BUNDLED = "rocl-resnet18-w16-cifar10-cpu"


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
        default=BUNDLED,
        help=f"an encoder folder (RoCLEncoder.save_pretrained, e.g. a training run) or "
        f"registered name (default: {BUNDLED})",
    )
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split.json of the run that trained --model on the bundled sample (its 'val' "
        "images are held out); indices into the full bundled sample",
    )
    parser.add_argument(
        "--fit-per-class",
        type=int,
        default=None,
        help="fit on at most this many images per class (default: all)",
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=20,
        help="validation images per class, for model selection only (default: 20)",
    )
    parser.add_argument(
        "--n-images",
        type=int,
        default=500,
        help="held-out images tested, equally many per class (default: 500)",
    )
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
        help="a quick run: 300 images to fit and select on, 100 to test, short attacks",
    )
    return parser.parse_args(argv)


def split_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset]:
    """(train, held_out): the run's split.json, or the sample and the held-out sample."""
    sample = load_sample()  # 5,000 CIFAR-10 images, 500 per class, (N, 3, 32, 32) uint8
    if args.split is not None:
        split = json.loads(args.split.read_text())
        return sample.subset(split["train"]), sample.subset(split["val"])
    # 189 images of the sample are also in the held-out sample: leave them out of the fit.
    shared = torch.isin(sample_indices(), sample_indices(held_out=True))
    return sample.subset(~shared), load_sample(held_out=True)


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
        args.fit_per_class, args.val_per_class, args.n_images = 20, 10, 100
        args.epochs, args.rle_epochs, args.rle_steps, args.test_steps = 20, 1, 2, 5
    if args.split is not None and args.model == BUNDLED:
        raise SystemExit(
            f"--split selects the images of your own run; {BUNDLED} trained on most of the "
            "bundled sample: pass --model RUN with it, or leave --split out"
        )
    torch.manual_seed(args.seed)

    train_set, held_out = split_data(args)
    fit_idx, val_idx = train_val_split(
        train_set.labels, val_per_class=args.val_per_class, seed=args.seed
    )
    fit_set, val_set = train_set.subset(fit_idx), train_set.subset(val_idx)
    if args.fit_per_class is not None:
        fit_set = fit_set.stratified(args.fit_per_class, seed=args.seed)
    held_out = held_out.stratified(args.n_images // len(held_out.classes), seed=args.seed)
    logger.info(
        "fit on %d images, select on %d, test on %d held-out images",
        len(fit_set),
        len(val_set),
        len(held_out),
    )
    encoder = RoCLEncoder.from_pretrained(args.model)  # eval mode; the probes freeze it
    num_classes = len(train_set.classes)

    # Clean linear evaluation. augment=False (and adversarial=False) takes the fast path: the
    # frozen encoder's features are computed once and the linear layer trains on them.
    batch_size = 50 if args.tiny else 256
    clean_probe = RobustLinearProbe(
        encoder, num_classes, augment=False, epochs=args.epochs, batch_size=batch_size
    )
    clean_probe.fit(fit_set, val=val_set, seed=args.seed, progress=not args.tiny)
    logger.info("clean probe: kept epoch %s of %d", clean_probe.best_epoch, args.epochs)

    # Robust linear evaluation (r-LE, eq. 7): PGD examples against the current probe, every step.
    # The encoder is shared with the clean probe: it stays frozen, so neither probe changes it.
    # A short r-LE starts from the clean probe's head with a small lr (warm_start=True), as the
    # CIFAR-10 reproduction does: from a fresh head a few epochs barely leave chance.
    rle_probe = RobustLinearProbe(
        encoder,
        num_classes,
        adversarial=True,
        attack_steps=args.rle_steps,
        epochs=args.rle_epochs,
        batch_size=batch_size,
        lr=0.01,
        schedule="cosine",
    )
    rle_probe.head.load_state_dict(clean_probe.head.state_dict())
    rle_probe.fit(
        fit_set,
        val=val_set,
        seed=args.seed,
        warm_start=True,
        # the epoch with the best PGD accuracy on the validation images (--tiny: clean accuracy,
        # which saves one attack of the validation images per epoch)
        select="clean" if args.tiny else "robust",
        progress=not args.tiny,
    )
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
        "model": str(args.model),
        "data": str(args.split or "sample (fit) / sample-held-out (test)"),
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
