"""What the CIFAR-10 experiments share: the reproduction's probes, its run split, check images.

The scripts of this folder import it as a sibling module (``python experiments/NAME.py`` puts
this folder on the path).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robust_contrastive import ImageDataset, RobustLinearProbe, RoCLEncoder, load_dataset
from robust_contrastive.data import first_per_class

HEADLINE = "linf-8/255"  # PGD-20, step 2/255
NUM_CLASSES = 10


def clean_probe(encoder: RoCLEncoder, epochs: int = 50) -> RobustLinearProbe:
    """The reproduction's LE: a linear head on cached clean, un-augmented features."""
    return RobustLinearProbe(encoder, NUM_CLASSES, augment=False, epochs=epochs, batch_size=256)


def robust_probe(
    encoder: RoCLEncoder, epochs: int, lr: float, augment: bool = True
) -> RobustLinearProbe:
    """The reproduction's r-LE (eq. 7): class-wise PGD-10 examples, a short cosine run."""
    return RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=epochs,
        batch_size=128,
        lr=lr,
        schedule="cosine",
        augment=augment,
    )


def check_parser(doc: str, encoder_help: str) -> argparse.ArgumentParser:
    """The options of a check on one encoder of a run: --data, --run, --encoder, --threads and
    --out (the check adds its own)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (cifar10-train)")
    parser.add_argument("--run", required=True, type=Path, help="the run folder (split.json)")
    parser.add_argument("--encoder", required=True, type=Path, help=encoder_help)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    return parser


def set_up(args: argparse.Namespace) -> None:
    """Log to stderr; set the torch threads of ``--threads``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)


def load_run(data: str, run: Path) -> tuple[ImageDataset, dict[str, Any]]:
    """The data folder and the splits (``split.json``) of a reproduction's run folder."""
    return load_dataset(data), json.loads((run / "split.json").read_text())


def check_images(dataset: ImageDataset, split: dict[str, Any], per_class: int) -> torch.Tensor:
    """Indices of pool images that trained neither the encoder nor any probe's selection: the
    first ``per_class`` per class of the pool after the encoder's training images."""
    trained = set(split["encoder_train"])
    unseen = torch.tensor([i for i in split["train"] if i not in trained])
    return unseen[first_per_class(dataset.labels[unseen], per_class)]


def logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS on standardised features.

    Args:
        features: (N, D) float features.
        labels: (N,) int64 classes.
        l2: weight of ``sum(W ** 2)`` (in standardised units) added to the mean cross-entropy.

    Returns:
        ``(weight (C, D), bias (C,))`` acting on the *raw* features: the standardisation
        ``(x - mean) / std`` is folded in.
    """
    mean, std = features.mean(dim=0), features.std(dim=0) + 1e-6
    x = (features - mean) / std  # (N, D) standardised
    weight = torch.zeros(NUM_CLASSES, features.shape[1], requires_grad=True)
    bias = torch.zeros(NUM_CLASSES, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=500,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, labels) + l2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    w = weight.detach() / std  # (C, D): W (x - mean) / std = (W / std) x - (W / std) mean
    return w, bias.detach() - w @ mean
