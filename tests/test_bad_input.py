# ruff: noqa: E501  (the tables below keep one case per line)
"""Bad input at every public entry point, as one table: entry point, input, error, message.

Every row expects a ``ValueError`` or ``TypeError`` (``FileNotFoundError`` for a missing file)
whose message says what was wrong; a fragment of it is matched. The table of
``docs/reliability.md`` lists the same cases. Below the table: the data loaders (corrupt files,
links), the command line (an existing output folder stays byte-identical) and safe loading
(pickles refused, paths from files kept inside their folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.io import write_png

from robust_contrastive import (
    EOTPGD,
    PGD,
    FinetuneConfig,
    ImageDataset,
    InstanceWiseAttack,
    PretrainedModel,
    ProjectionHead,
    RobustLinearProbe,
    RoCLEncoder,
    RoCLTrainer,
    SimCLRAugmentation,
    Threat,
    TrainConfig,
    TransformationSmoothedClassifier,
    autoattack,
    evaluate_robustness,
    finetune,
    load_dataset,
    nt_xent_loss,
    train_val_split,
)
from robust_contrastive.cli import main
from robust_contrastive.data import load_image_folder
from robust_contrastive.evaluation.probe import accuracy
from robust_contrastive.training.checkpoint import load_checkpoint

NUM_CLASSES = 10
COMMIT = "0" * 40


@dataclass(frozen=True)
class Ctx:
    """Tiny models and data shared by the rows (built once per module)."""

    encoder: RoCLEncoder  # width 4, 32 features
    projector: ProjectionHead
    classifier: nn.Module  # encoder + Linear(32, 10)
    probe: RobustLinearProbe  # 10 classes
    images: torch.Tensor  # (4, 3, 16, 16) float in [0, 1]
    labels: torch.Tensor  # (4,) int64 in [0, 10)
    dataset: ImageDataset  # the same images as uint8, 3 classes


@pytest.fixture(scope="module")
def ctx() -> Ctx:
    torch.manual_seed(0)
    encoder = RoCLEncoder(width=4)
    projector = ProjectionHead(encoder.feature_dim, 16, 8)
    classifier = nn.Sequential(encoder, nn.Linear(encoder.feature_dim, NUM_CLASSES))
    probe = RobustLinearProbe(
        RoCLEncoder(width=4), NUM_CLASSES, epochs=1, batch_size=4, augment=False
    )
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0])
    dataset = ImageDataset((images * 255).to(torch.uint8), labels, ("a", "b", "c"))
    return Ctx(encoder, projector, classifier, probe, images, labels, dataset)


@dataclass(frozen=True)
class Case:
    """One row: calling ``call(ctx)`` raises ``error`` with a message matching ``match``."""

    entry: str
    input: str
    call: Callable[[Ctx], object]
    error: type[Exception]
    match: str

    def param(self) -> Any:
        return pytest.param(self, id=f"{self.entry} | {self.input}")


# ------------------------------------------------------------------------ bad image batches
def _set_first(x: torch.Tensor, value: float) -> torch.Tensor:
    y = x.clone()
    y[0, 0, 0, 0] = value
    return y


# name -> (make the bad batch from good images, error, message)
IMAGE_VARIANTS: dict[str, tuple[Callable[[torch.Tensor], Any], type[Exception], str]] = {
    "rank 3 (C, H, W)": (lambda x: x[0], ValueError, r"\([BN], 3, H, W\)"),
    "1 channel": (lambda x: x[:, :1], ValueError, r"\([BN], 3, H, W\)"),
    "4 channels": (lambda x: torch.cat([x, x[:, :1]], 1), ValueError, r"\([BN], 3, H, W\)"),
    "uint8 pixels": (lambda x: (x * 255).to(torch.uint8), TypeError, "float"),
    "int64 pixels": (lambda x: (x * 255).long(), TypeError, "float"),
    "float in [0, 255]": (lambda x: x * 255, ValueError, r"in \[0, 1\]"),
    "negative (normalised)": (lambda x: x - 0.5, ValueError, r"in \[0, 1\]"),
    "a NaN pixel": (lambda x: _set_first(x, float("nan")), ValueError, "NaN or inf"),
    "an inf pixel": (lambda x: _set_first(x, float("inf")), ValueError, "NaN or inf"),
    "empty batch": (lambda x: x[:0], ValueError, "empty"),
    "a list, not a tensor": (lambda x: x.tolist(), TypeError, "[Tt]ensor"),
}
VALUES = ("float in [0, 255]", "negative (normalised)", "a NaN pixel", "an inf pixel")


def _image_rows(
    entry: str, call: Callable[[Ctx, Any], object], skip: tuple[str, ...] = ()
) -> list[Case]:
    """One row per bad image batch, ``call(ctx, images)`` (the labels follow the batch size)."""
    rows = []
    for name, (make, error, match) in IMAGE_VARIANTS.items():
        if name in skip:
            continue

        def run(c: Ctx, make: Callable[[torch.Tensor], Any] = make) -> object:
            return call(c, make(c.images))

        rows.append(Case(entry, f"images: {name}", run, error, match))
    return rows


def _labels_for(c: Ctx, images: Any) -> torch.Tensor:
    """Labels matching the batch size of (possibly bad) images."""
    n = images.shape[0] if isinstance(images, torch.Tensor) and images.dim() == 4 else 4
    return c.labels[:n]


def _iwa(c: Ctx, **kwargs: Any) -> InstanceWiseAttack:
    return InstanceWiseAttack(c.encoder, c.projector, **{"steps": 1, **kwargs})


def _evaluate(c: Ctx, data: Any, threats: Any = ("linf-8/255",), **kwargs: Any) -> object:
    kwargs = {"sanity_checks": False, "progress": False, **kwargs}
    return evaluate_robustness(c.classifier, data, threats, **kwargs)


def _trainer(out_dir: Path | None = None, **kwargs: Any) -> RoCLTrainer:
    config = TrainConfig(
        **{
            "width": 4,
            "projection_hidden_dim": 8,
            "projection_dim": 8,
            "epochs": 1,
            "batch_size": 2,
            "attack_steps": 1,
            "image_size": 16,
            "lars": False,
            "progress": False,
            "device": "cpu",
            **kwargs,
        }
    )
    return RoCLTrainer(config, out_dir)


def _finetune_config(**kwargs: Any) -> FinetuneConfig:
    values = {"epochs": 1, "batch_size": 2, "attack_steps": 1, "val_attack_steps": 1}
    return FinetuneConfig(**{**values, "progress": False, **kwargs})


def _ds(labels: list[int], classes: tuple[str, ...] = ("a", "b", "c")) -> ImageDataset:
    images = torch.zeros(len(labels), 3, 16, 16, dtype=torch.uint8)
    return ImageDataset(images, torch.tensor(labels), classes)


class _ReturnsFeatures(nn.Module):
    """A 'classifier' that returns (B, 3, H, W) maps instead of logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# fmt: off
ROWS: list[Case] = [
    # ------------------------------------------------------------------ InstanceWiseAttack
    *_image_rows("InstanceWiseAttack()", lambda c, x: _iwa(c)(x, x)),
    Case("InstanceWiseAttack", "eps=-1/255", lambda c: _iwa(c, eps=-1 / 255), ValueError, "eps"),
    Case("InstanceWiseAttack", "eps=inf", lambda c: _iwa(c, eps=float("inf")), ValueError, "finite"),
    Case("InstanceWiseAttack", "eps=NaN", lambda c: _iwa(c, eps=float("nan")), ValueError, "eps"),
    Case("InstanceWiseAttack", "eps='8/255' (a string)", lambda c: _iwa(c, eps="8/255"), TypeError, "eps must be a number"),
    Case("InstanceWiseAttack", "alpha=0", lambda c: _iwa(c, alpha=0.0), ValueError, "alpha"),
    Case("InstanceWiseAttack", "steps=-1", lambda c: _iwa(c, steps=-1), ValueError, "steps"),
    Case("InstanceWiseAttack", "steps=2.0 (a float)", lambda c: _iwa(c, steps=2.0), ValueError, "steps"),
    Case("InstanceWiseAttack", "norm='l3'", lambda c: _iwa(c, norm="l3"), ValueError, "unknown norm"),
    Case("InstanceWiseAttack", "loss='kl'", lambda c: _iwa(c, loss="kl"), ValueError, "unknown attack loss"),
    Case("InstanceWiseAttack", "temperature=0", lambda c: _iwa(c, temperature=0.0), ValueError, "temperature"),
    Case("InstanceWiseAttack", "temperature=NaN", lambda c: _iwa(c, temperature=float("nan")), ValueError, "temperature"),
    Case("InstanceWiseAttack()", "a single image (contrastive loss)", lambda c: _iwa(c)(c.images[:1], c.images[:1]), ValueError, "at least 2 images"),
    Case("InstanceWiseAttack()", "positives of another batch size (4 vs 3)", lambda c: _iwa(c)(c.images, c.images[:3]), ValueError, "positives must have the images' shape"),
    Case("InstanceWiseAttack()", "positives of another size (16 vs 8 px)", lambda c: _iwa(c)(c.images, c.images[..., :8, :8]), ValueError, "positives must have the images' shape"),
    Case("InstanceWiseAttack()", "positives float64, images float32", lambda c: _iwa(c)(c.images, c.images.double()), ValueError, "dtype and device"),
    Case("InstanceWiseAttack()", "positives with a NaN pixel", lambda c: _iwa(c)(c.images, _set_first(c.images, float("nan"))), ValueError, "positives contains NaN"),
    # ------------------------------------------------------------------ PGD / EOTPGD
    *_image_rows("PGD()", lambda c, x: PGD(c.classifier, steps=1)(x, _labels_for(c, x))),
    Case("PGD", "eps=-8/255", lambda c: PGD(c.classifier, eps=-8 / 255), ValueError, "eps"),
    Case("PGD", "alpha=NaN", lambda c: PGD(c.classifier, alpha=float("nan")), ValueError, "alpha"),
    Case("PGD", "steps=-1", lambda c: PGD(c.classifier, steps=-1), ValueError, "steps"),
    Case("PGD", "norm='linf ' (typo)", lambda c: PGD(c.classifier, norm="linf "), ValueError, "unknown norm"),
    Case("PGD()", "labels float", lambda c: PGD(c.classifier, steps=1)(c.images, c.labels.float()), TypeError, "integer"),
    Case("PGD()", "labels (B, 1)", lambda c: PGD(c.classifier, steps=1)(c.images, c.labels[:, None]), ValueError, "shape"),
    Case("PGD()", "3 labels for 4 images", lambda c: PGD(c.classifier, steps=1)(c.images, c.labels[:3]), ValueError, "shape"),
    Case("PGD()", "a negative label", lambda c: PGD(c.classifier, steps=1)(c.images, c.labels - 1), ValueError, ">= 0"),
    Case("PGD()", "label 10 for a 10-class model", lambda c: PGD(c.classifier, steps=1)(c.images, c.labels + 8), ValueError, "outputs 10 classes"),
    Case("PGD()", "label 99, steps=0, no random start", lambda c: PGD(c.classifier, steps=0, random_start=False)(c.images, c.labels + 99), ValueError, "outputs 10 classes"),
    Case("PGD()", "a model returning (B, 3, H, W), not logits", lambda c: PGD(_ReturnsFeatures(), steps=1)(c.images, c.labels), ValueError, "logits"),
    Case("EOTPGD", "eot_samples=0", lambda c: EOTPGD(c.classifier, eot_samples=0), ValueError, "eot_samples"),
    Case("EOTPGD", "eot_samples=2.5", lambda c: EOTPGD(c.classifier, eot_samples=2.5), ValueError, "eot_samples"),
    Case("EOTPGD()", "a NaN pixel", lambda c: EOTPGD(c.classifier, steps=1, eot_samples=1)(_set_first(c.images, float("nan")), c.labels), ValueError, "NaN or inf"),
    # ------------------------------------------------------------------ autoattack
    *_image_rows("autoattack", lambda c, x: autoattack(c.classifier, x, _labels_for(c, x))),
    Case("autoattack", "norm='l1'", lambda c: autoattack(c.classifier, c.images, c.labels, norm="l1"), ValueError, "'linf' or 'l2'"),
    Case("autoattack", "version='fast'", lambda c: autoattack(c.classifier, c.images, c.labels, version="fast"), ValueError, "version"),
    Case("autoattack", "eps=-1", lambda c: autoattack(c.classifier, c.images, c.labels, eps=-1.0), ValueError, "eps"),
    Case("autoattack", "label 12 for a 10-class model", lambda c: autoattack(c.classifier, c.images, c.labels + 10), ValueError, "outputs 10 classes"),
    Case("autoattack", "num_classes=5 for a 10-class model", lambda c: autoattack(c.classifier, c.images, c.labels % 5, num_classes=5), ValueError, "pass num_classes=10"),
    Case("autoattack", "num_classes=3 (standard needs >= 4)", lambda c: autoattack(c.classifier, c.images, c.labels, num_classes=3), ValueError, "num_classes >= 4"),
    Case("autoattack", "labels float", lambda c: autoattack(c.classifier, c.images, c.labels.float()), TypeError, "integer"),
    # ------------------------------------------------------------------ nt_xent_loss
    Case("nt_xent_loss", "one view", lambda c: nt_xent_loss(torch.randn(4, 8)), ValueError, "at least 2 views"),
    Case("nt_xent_loss", "views (B,)", lambda c: nt_xent_loss(torch.randn(4), torch.randn(4)), ValueError, r"\(B, D\)"),
    Case("nt_xent_loss", "views (B, D, 1)", lambda c: nt_xent_loss(torch.randn(4, 8, 1), torch.randn(4, 8, 1)), ValueError, r"\(B, D\)"),
    Case("nt_xent_loss", "views (B, 0)", lambda c: nt_xent_loss(torch.randn(4, 0), torch.randn(4, 0)), ValueError, "D >= 1"),
    Case("nt_xent_loss", "a single image (B=1)", lambda c: nt_xent_loss(torch.randn(1, 8), torch.randn(1, 8)), ValueError, "at least 2 images"),
    Case("nt_xent_loss", "an empty batch (B=0)", lambda c: nt_xent_loss(torch.randn(0, 8), torch.randn(0, 8)), ValueError, "at least 2 images"),
    Case("nt_xent_loss", "batch sizes 4 and 3", lambda c: nt_xent_loss(torch.randn(4, 8), torch.randn(3, 8)), ValueError, "same shape"),
    Case("nt_xent_loss", "dims 8 and 6", lambda c: nt_xent_loss(torch.randn(4, 8), torch.randn(4, 6)), ValueError, "same shape"),
    Case("nt_xent_loss", "3 views, the third of batch 2", lambda c: nt_xent_loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(2, 8)), ValueError, "same shape"),
    Case("nt_xent_loss", "integer views", lambda c: nt_xent_loss(torch.ones(4, 8, dtype=torch.long), torch.ones(4, 8, dtype=torch.long)), TypeError, "floating-point"),
    Case("nt_xent_loss", "lists, not tensors", lambda c: nt_xent_loss([[1.0, 0.0]] * 4, [[0.0, 1.0]] * 4), TypeError, "floating-point tensors"),
    Case("nt_xent_loss", "temperature=0", lambda c: nt_xent_loss(*_pair_z(), temperature=0.0), ValueError, "temperature"),
    Case("nt_xent_loss", "temperature=-0.5", lambda c: nt_xent_loss(*_pair_z(), temperature=-0.5), ValueError, "temperature"),
    Case("nt_xent_loss", "temperature=NaN", lambda c: nt_xent_loss(*_pair_z(), temperature=float("nan")), ValueError, "temperature"),
    Case("nt_xent_loss", "temperature=inf", lambda c: nt_xent_loss(*_pair_z(), temperature=float("inf")), ValueError, "temperature"),
    Case("nt_xent_loss", "temperature=torch.tensor(0.5)", lambda c: nt_xent_loss(*_pair_z(), temperature=torch.tensor(0.5)), TypeError, "temperature must be a number"),  # type: ignore[arg-type]
    # ------------------------------------------------------------------ RobustLinearProbe
    Case("RobustLinearProbe", "encoder = an nn.Linear", lambda c: RobustLinearProbe(nn.Linear(2, 2), 3), TypeError, "RoCLEncoder"),  # type: ignore[arg-type]
    Case("RobustLinearProbe", "num_classes=1", lambda c: RobustLinearProbe(c.encoder, 1), ValueError, "num_classes"),
    Case("RobustLinearProbe", "num_classes=2.0", lambda c: RobustLinearProbe(c.encoder, 2.0), ValueError, "num_classes"),  # type: ignore[arg-type]
    Case("RobustLinearProbe", "eps=-1", lambda c: RobustLinearProbe(c.encoder, 3, eps=-1.0), ValueError, "eps"),
    Case("RobustLinearProbe", "eps=inf", lambda c: RobustLinearProbe(c.encoder, 3, eps=float("inf")), ValueError, "finite"),
    Case("RobustLinearProbe", "attack_steps=-1", lambda c: RobustLinearProbe(c.encoder, 3, attack_steps=-1), ValueError, "steps"),
    Case("RobustLinearProbe", "epochs=0", lambda c: RobustLinearProbe(c.encoder, 3, epochs=0), ValueError, "epochs"),
    Case("RobustLinearProbe", "batch_size=0", lambda c: RobustLinearProbe(c.encoder, 3, batch_size=0), ValueError, "batch_size"),
    Case("RobustLinearProbe", "lr=0", lambda c: RobustLinearProbe(c.encoder, 3, lr=0.0), ValueError, "lr"),
    Case("RobustLinearProbe", "lr=inf", lambda c: RobustLinearProbe(c.encoder, 3, lr=float("inf")), ValueError, "lr"),
    Case("RobustLinearProbe", "momentum=1", lambda c: RobustLinearProbe(c.encoder, 3, momentum=1.0), ValueError, "momentum"),
    Case("RobustLinearProbe", "weight_decay=NaN", lambda c: RobustLinearProbe(c.encoder, 3, weight_decay=float("nan")), ValueError, "weight_decay"),
    Case("RobustLinearProbe", "schedule='linear'", lambda c: RobustLinearProbe(c.encoder, 3, schedule="linear"), ValueError, "schedule"),
    Case("RobustLinearProbe", "attack=3 (not callable)", lambda c: RobustLinearProbe(c.encoder, 3, attack=3), TypeError, "callable"),  # type: ignore[arg-type]
    *_image_rows("RobustLinearProbe.fit", lambda c, x: c.probe.fit(x, _labels_for(c, x), progress=False)),
    Case("RobustLinearProbe.fit", "labels float", lambda c: c.probe.fit(c.images, c.labels.float(), progress=False), TypeError, "integer"),
    Case("RobustLinearProbe.fit", "labels bool", lambda c: c.probe.fit(c.images, c.labels.bool(), progress=False), TypeError, "integer"),
    Case("RobustLinearProbe.fit", "3 labels for 4 images", lambda c: c.probe.fit(c.images, c.labels[:3], progress=False), ValueError, "one label per image"),
    Case("RobustLinearProbe.fit", "labels (N, 1)", lambda c: c.probe.fit(c.images, c.labels[:, None], progress=False), ValueError, "1-D"),
    Case("RobustLinearProbe.fit", "a negative label", lambda c: c.probe.fit(c.images, c.labels - 1, progress=False), ValueError, ">= 0"),
    Case("RobustLinearProbe.fit", "label 10 with num_classes=10", lambda c: c.probe.fit(c.images, c.labels + 8, progress=False), ValueError, "num_classes=10"),
    Case("RobustLinearProbe.fit", "an image tensor without labels", lambda c: c.probe.fit(c.images, progress=False), ValueError, "pass its labels"),
    Case("RobustLinearProbe.fit", "an ImageDataset and labels", lambda c: c.probe.fit(c.dataset, c.labels, progress=False), ValueError, "carries its own labels"),
    Case("RobustLinearProbe.fit", "val=(images, labels, extra)", lambda c: c.probe.fit(c.images, c.labels, val=(c.images, c.labels, c.labels), progress=False), ValueError, "val must be"),  # type: ignore[arg-type]
    Case("RobustLinearProbe.fit", "val labels out of range", lambda c: c.probe.fit(c.images, c.labels, val=(c.images, c.labels + 10), progress=False), ValueError, "val labels"),
    Case("RobustLinearProbe.fit", "val images with a NaN", lambda c: c.probe.fit(c.images, c.labels, val=(_set_first(c.images, float("nan")), c.labels), progress=False), ValueError, "NaN"),
    Case("RobustLinearProbe.fit", "seed='0' (a string)", lambda c: c.probe.fit(c.images, c.labels, seed="0", progress=False), TypeError, "seed"),  # type: ignore[arg-type]
    # ------------------------------------------------------------------ accuracy
    *_image_rows("accuracy", lambda c, x: accuracy(c.probe, x, _labels_for(c, x))),
    Case("accuracy", "label 10 for a 10-class model", lambda c: accuracy(c.probe, c.images, c.labels + 8), ValueError, "outputs 10 classes"),
    Case("accuracy", "3 labels for 4 images", lambda c: accuracy(c.probe, c.images, c.labels[:3]), ValueError, "one label per image"),
    Case("accuracy", "batch_size=0", lambda c: accuracy(c.probe, c.images, c.labels, batch_size=0), ValueError, "batch_size"),
    Case("accuracy", "a model returning (B,)", lambda c: accuracy(nn.Flatten(0), c.images, c.labels), ValueError, "logits"),
    # ------------------------------------------------------------------ TransformationSmoothedClassifier
    Case("TransformationSmoothedClassifier", "n_samples=0", lambda c: TransformationSmoothedClassifier(c.encoder, c.probe.head, n_samples=0), ValueError, "n_samples"),
    Case("TransformationSmoothedClassifier", "encoder = a function", lambda c: TransformationSmoothedClassifier(lambda x: x, c.probe.head), TypeError, "nn.Modules"),  # type: ignore[arg-type]
    Case("TransformationSmoothedClassifier", "transform=3", lambda c: TransformationSmoothedClassifier(c.encoder, c.probe.head, transform=3), TypeError, "callable"),  # type: ignore[arg-type]
    Case("TransformationSmoothedClassifier", "generator=0", lambda c: TransformationSmoothedClassifier(c.encoder, c.probe.head, generator=0), TypeError, "generator"),  # type: ignore[arg-type]
    Case("TransformationSmoothedClassifier.from_probe", "an encoder, not a probe", lambda c: TransformationSmoothedClassifier.from_probe(c.encoder), TypeError, "RobustLinearProbe"),  # type: ignore[arg-type]
    *_image_rows(
        "TransformationSmoothedClassifier()",
        lambda c, x: TransformationSmoothedClassifier.from_probe(c.probe, n_samples=2)(x),
        skip=VALUES,
    ),
    Case("TransformationSmoothedClassifier()", "a transform that drops images", lambda c: TransformationSmoothedClassifier(c.encoder, c.probe.head, transform=lambda x: x[:1])(c.images), ValueError, "one image per input image"),
    # ------------------------------------------------------------------ evaluate_robustness
    *_image_rows("evaluate_robustness", lambda c, x: _evaluate(c, (x, _labels_for(c, x))), skip=("uint8 pixels",)),
    Case("evaluate_robustness", "data = an image tensor alone", lambda c: _evaluate(c, c.images), TypeError, "ImageDataset or a pair"),
    Case("evaluate_robustness", "labels float", lambda c: _evaluate(c, (c.images, c.labels.float())), TypeError, "integer"),
    Case("evaluate_robustness", "3 labels for 4 images", lambda c: _evaluate(c, (c.images, c.labels[:3])), ValueError, "one label per image"),
    Case("evaluate_robustness", "a negative label", lambda c: _evaluate(c, (c.images, c.labels - 1)), ValueError, ">= 0"),
    Case("evaluate_robustness", "label 10 for a 10-class model", lambda c: _evaluate(c, (c.images, c.labels + 8)), ValueError, "outputs 10 classes"),
    Case("evaluate_robustness", "threats='linf-8/255' (a string)", lambda c: _evaluate(c, (c.images, c.labels), threats="linf-8/255"), TypeError, r"pass \['linf-8/255'\]"),
    Case("evaluate_robustness", "unknown threat 'linf-9/255'", lambda c: _evaluate(c, (c.images, c.labels), threats=["linf-9/255"]), ValueError, "unknown threat"),
    Case("evaluate_robustness", "a threat listed twice", lambda c: _evaluate(c, (c.images, c.labels), threats=["l2-0.5", "l2-0.5"]), ValueError, "more than once"),
    Case("evaluate_robustness", "Threat(eps=-1)", lambda c: _evaluate(c, (c.images, c.labels), threats=[Threat("t", "linf", -1.0, 0.1)]), ValueError, "eps"),
    Case("evaluate_robustness", "Threat(norm='l3')", lambda c: _evaluate(c, (c.images, c.labels), threats=[Threat("t", "l3", 1.0, 0.1)]), ValueError, "unknown norm"),
    Case("evaluate_robustness", "Threat(steps=-1)", lambda c: _evaluate(c, (c.images, c.labels), threats=[Threat("t", "linf", 0.1, 0.1, steps=-1)]), ValueError, "steps"),
    Case("evaluate_robustness", "Threat(attack='cw')", lambda c: _evaluate(c, (c.images, c.labels), threats=[Threat("t", "linf", 0.1, 0.1, attack="cw")]), ValueError, "unknown attack"),
    Case("evaluate_robustness", "Threat(attack='autoattack', norm='l1')", lambda c: _evaluate(c, (c.images, c.labels), threats=[Threat("t", "l1", 1.0, attack="autoattack")]), ValueError, "'linf' or 'l2'"),
    Case("evaluate_robustness", "batch_size=0", lambda c: _evaluate(c, (c.images, c.labels), batch_size=0), ValueError, "batch_size"),
    Case("evaluate_robustness", "n_images=0", lambda c: _evaluate(c, (c.images, c.labels), n_images=0), ValueError, "n_images"),
    Case("evaluate_robustness", "n_images=1.5", lambda c: _evaluate(c, (c.images, c.labels), n_images=1.5), ValueError, "n_images"),
    Case("evaluate_robustness", "eot_samples=0", lambda c: _evaluate(c, (c.images, c.labels), eot_samples=0), ValueError, "eot_samples"),
    Case("evaluate_robustness", "num_classes=5 for a 10-class model", lambda c: _evaluate(c, (c.images, c.labels), num_classes=5), ValueError, "outputs 10 classes"),
    # ------------------------------------------------------------------ finetune
    Case("finetune", "config = a dict", lambda c: finetune(c.encoder, c.dataset, {"epochs": 1}), TypeError, "FinetuneConfig"),  # type: ignore[arg-type]
    Case("finetune", "data = an image tensor", lambda c: finetune(c.encoder, c.images, _finetune_config()), TypeError, "ImageDataset"),  # type: ignore[arg-type]
    Case("finetune", "data of 1 image", lambda c: finetune(c.encoder, c.dataset.subset([0]), _finetune_config()), ValueError, "at least 2"),
    Case("finetune", "num_classes=2, labels up to 2", lambda c: finetune(c.encoder, c.dataset, _finetune_config(), num_classes=2), ValueError, "num_classes=3"),
    Case("finetune", "num_classes=1", lambda c: finetune(c.encoder, c.dataset, _finetune_config(), num_classes=1), ValueError, "num_classes"),
    Case("finetune", "val = (images, labels)", lambda c: finetune(c.encoder, c.dataset, _finetune_config(), val=(c.images, c.labels)), TypeError, "val must be an ImageDataset"),  # type: ignore[arg-type]
    Case("finetune", "val labels out of range", lambda c: finetune(c.encoder, c.dataset, _finetune_config(), val=_ds([0, 3], ("a", "b", "c", "d"))), ValueError, "val labels"),
    Case("finetune", "encoder = an nn.Linear", lambda c: finetune(nn.Linear(2, 2), c.dataset, _finetune_config()), TypeError, "RoCLEncoder"),  # type: ignore[arg-type]
    Case("finetune", "from scratch, arch='vgg16'", lambda c: finetune(None, c.dataset, _finetune_config(), arch="vgg16"), ValueError, "unknown arch"),
    Case("finetune", "method='at+ss' without a projector", lambda c: finetune(c.encoder, c.dataset, _finetune_config(method="at+ss")), ValueError, "needs the projector"),
    Case("finetune", "projector = an nn.Linear", lambda c: finetune(c.encoder, c.dataset, _finetune_config(method="at+ss"), projector=nn.Linear(2, 2)), TypeError, "ProjectionHead"),  # type: ignore[arg-type]
    Case("finetune", "resume=True without out_dir", lambda c: finetune(c.encoder, c.dataset, _finetune_config(), resume=True), ValueError, "out_dir"),
    Case("FinetuneConfig", "eps=-1", lambda c: _finetune_config(eps=-1.0), ValueError, "eps"),
    Case("FinetuneConfig", "lr=inf", lambda c: _finetune_config(lr=float("inf")), ValueError, "lr"),
    Case("FinetuneConfig", "attack_norm='l3'", lambda c: _finetune_config(attack_norm="l3"), ValueError, "attack_norm"),
    Case("FinetuneConfig", "method='pgd'", lambda c: _finetune_config(method="pgd"), ValueError, "method"),
    Case("FinetuneConfig", "attack_steps=-1", lambda c: _finetune_config(attack_steps=-1), ValueError, "attack_steps"),
    Case("FinetuneConfig", "batch_size=1", lambda c: _finetune_config(batch_size=1), ValueError, "batch_size"),
    Case("FinetuneConfig", "device='gpu'", lambda c: _finetune_config(device="gpu"), ValueError, "device"),
    # ------------------------------------------------------------------ RoCLTrainer / TrainConfig
    *_image_rows("RoCLTrainer.fit", lambda c, x: _trainer().fit(x), skip=("uint8 pixels",)),
    Case("RoCLTrainer.fit", "a single image (batch_size=2)", lambda c: _trainer().fit(c.images[:1]), ValueError, "fewer than batch_size"),
    Case("RoCLTrainer.fit", "3 images, batch_size=4", lambda c: _trainer(batch_size=4).fit(c.images[:3]), ValueError, "fewer than batch_size"),
    Case("RoCLTrainer.fit", "a single image, drop_last=False", lambda c: _trainer(drop_last=False).fit(c.images[:1]), ValueError, "no batch of at least 2"),
    Case("RoCLTrainer.fit", "resume=True without out_dir", lambda c: _trainer().fit(c.images, resume=True), ValueError, "out_dir"),
    Case("TrainConfig", "arch='vgg16'", lambda c: TrainConfig(arch="vgg16"), ValueError, "unknown arch"),
    Case("TrainConfig", "attack_norm='l3'", lambda c: TrainConfig(attack_norm="l3"), ValueError, "attack_norm"),
    Case("TrainConfig", "attack_loss='kl'", lambda c: TrainConfig(attack_loss="kl"), ValueError, "attack_loss"),
    Case("TrainConfig", "eps=-1", lambda c: TrainConfig(eps=-1.0), ValueError, "eps"),
    Case("TrainConfig", "eps=inf", lambda c: TrainConfig(eps=float("inf")), ValueError, "finite"),
    Case("TrainConfig", "attack_steps=-1", lambda c: TrainConfig(attack_steps=-1), ValueError, "steps"),
    Case("TrainConfig", "batch_size=1", lambda c: TrainConfig(batch_size=1), ValueError, "batch_size"),
    Case("TrainConfig", "temperature=NaN", lambda c: TrainConfig(temperature=float("nan")), ValueError, "temperature"),
    Case("TrainConfig", "precision='fp16'", lambda c: TrainConfig(precision="fp16"), ValueError, "precision"),
    Case("TrainConfig", "device='gpu'", lambda c: TrainConfig(device="gpu"), ValueError, "not a torch device"),
    Case("RoCLTrainer", "a dict instead of a TrainConfig", lambda c: RoCLTrainer({"epochs": 1}), TypeError, "TrainConfig.from_dict"),
    # ------------------------------------------------------------------ SimCLRAugmentation
    *_image_rows(
        "SimCLRAugmentation()",
        lambda c, x: SimCLRAugmentation(size=8)(x),
        skip=(*VALUES, "uint8 pixels"),
    ),
    Case("SimCLRAugmentation", "size=0", lambda c: SimCLRAugmentation(size=0), ValueError, "size"),
    Case("SimCLRAugmentation", "scale=(0.5, 0.1)", lambda c: SimCLRAugmentation(scale=(0.5, 0.1)), ValueError, "scale"),
    Case("SimCLRAugmentation", "grayscale_p=2", lambda c: SimCLRAugmentation(grayscale_p=2.0), ValueError, "grayscale_p"),
    Case("SimCLRAugmentation", "hue=0.7", lambda c: SimCLRAugmentation(hue=0.7), ValueError, "hue"),
    # ------------------------------------------------------------------ models
    Case("RoCLEncoder()", "1-channel images", lambda c: c.encoder(c.images[:, :1]), ValueError, r"\(B, 3, H, W\)"),
    Case("RoCLEncoder()", "uint8 images", lambda c: c.encoder((c.images * 255).byte()), TypeError, "float"),
    Case("RoCLEncoder", "arch='resnet9'", lambda c: RoCLEncoder("resnet9"), ValueError, "unknown arch"),
    Case("RoCLEncoder", "width=0", lambda c: RoCLEncoder(width=0), ValueError, "width"),
    Case("ProjectionHead()", "features of the wrong width", lambda c: c.projector(torch.randn(4, 7)), ValueError, "in_dim"),
    # ------------------------------------------------------------------ ImageDataset / train_val_split / load_dataset
    Case("ImageDataset", "float images", lambda c: ImageDataset(c.images, c.labels, ("a", "b", "c")), ValueError, "uint8"),
    Case("ImageDataset", "1-channel images", lambda c: ImageDataset(c.dataset.images[:, :1], c.labels, ("a", "b", "c")), ValueError, r"\(N, 3, H, W\)"),
    Case("ImageDataset", "labels int32", lambda c: ImageDataset(c.dataset.images, c.labels.int(), ("a", "b", "c")), ValueError, "int64"),
    Case("ImageDataset", "label 2 with 2 classes", lambda c: ImageDataset(c.dataset.images, c.labels, ("a", "b")), ValueError, "labels must lie in"),
    Case("ImageDataset", "3 labels for 4 images", lambda c: ImageDataset(c.dataset.images, c.labels[:3], ("a", "b", "c")), ValueError, "same length"),
    Case("ImageDataset", "classes='abc' (a string)", lambda c: ImageDataset(c.dataset.images, c.labels, "abc"), TypeError, "the string"),  # type: ignore[arg-type]
    Case("ImageDataset", "classes=(1, 2, 3)", lambda c: ImageDataset(c.dataset.images, c.labels, (1, 2, 3)), TypeError, "strings"),  # type: ignore[arg-type]
    Case("ImageDataset.subset", "index 10 of 4 images", lambda c: c.dataset.subset([10]), ValueError, "indices must lie in"),
    Case("ImageDataset.subset", "float indices", lambda c: c.dataset.subset(torch.tensor([0.5])), TypeError, "integers"),
    Case("train_val_split", "float labels", lambda c: train_val_split(c.labels.float(), val_per_class=1), ValueError, "integers"),
    Case("train_val_split", "labels as a list", lambda c: train_val_split([0, 1], val_per_class=1), ValueError, "torch.Tensor"),  # type: ignore[arg-type]
    Case("train_val_split", "empty labels", lambda c: train_val_split(c.labels[:0], val_per_class=1), ValueError, "non-empty"),
    Case("train_val_split", "both val_per_class and val_fraction", lambda c: train_val_split(c.labels, val_per_class=1, val_fraction=0.5), ValueError, "exactly one"),
    Case("train_val_split", "val_per_class=2 for a class of 2", lambda c: train_val_split(c.labels, val_per_class=2), ValueError, "leaves no training images"),
    Case("train_val_split", "val_fraction=1.0", lambda c: train_val_split(c.labels, val_fraction=1.0), ValueError, r"\(0, 1\)"),
    Case("train_val_split", "a class of a single image, val_fraction", lambda c: train_val_split(c.labels, val_fraction=0.5), ValueError, "single image"),
    Case("load_dataset", "'cifar11' (unknown name, no such folder)", lambda c: load_dataset("cifar11"), FileNotFoundError, "neither a known name nor an existing path"),
    Case("load_dataset", "'cifar10' without root", lambda c: load_dataset("cifar10"), ValueError, "root="),
    Case("load_dataset", "image_size=0", lambda c: load_dataset("sample", image_size=0), ValueError, "image_size"),
    Case("load_dataset", "max_per_class=-1", lambda c: load_dataset("sample", max_per_class=-1), ValueError, "max_per_class"),
]
# fmt: on


def _pair_z() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 8), torch.randn(4, 8)


@pytest.mark.parametrize("case", [row.param() for row in ROWS])
def test_bad_input_is_refused_with_a_clear_message(ctx: Ctx, case: Case) -> None:
    with pytest.raises(case.error, match=case.match):
        case.call(ctx)


def test_every_entry_point_has_rows() -> None:
    entries = {row.entry.rstrip("()").split(".")[0] for row in ROWS}
    for name in (
        "InstanceWiseAttack",
        "PGD",
        "EOTPGD",
        "autoattack",
        "nt_xent_loss",
        "RobustLinearProbe",
        "accuracy",
        "TransformationSmoothedClassifier",
        "evaluate_robustness",
        "finetune",
        "RoCLTrainer",
        "SimCLRAugmentation",
        "ImageDataset",
        "train_val_split",
        "load_dataset",
    ):
        assert name in entries


def test_good_input_next_to_the_bad_rows_works(ctx: Ctx) -> None:
    """The boundaries the table refuses just beyond: int32 labels, eps=0, steps=0, B=2."""
    adversarial = PGD(ctx.classifier, steps=1)(ctx.images, ctx.labels.int())
    assert adversarial.shape == ctx.images.shape
    assert torch.equal(PGD(ctx.classifier, eps=0.0)(ctx.images, ctx.labels), ctx.images)
    assert torch.equal(_iwa(ctx, steps=0, random_start=False)(ctx.images, ctx.images), ctx.images)
    assert torch.isfinite(nt_xent_loss(torch.randn(2, 8), torch.randn(2, 8)))
    parameter_free = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 3) "logits"
    report = evaluate_robustness(
        parameter_free, (ctx.images, ctx.labels % 3), [], sanity_checks=False, progress=False
    )
    assert report.n_images == 4


# ------------------------------------------------------------------------------ data loaders
def _png(path: Path, size: int = 8, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    write_png(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g), str(path))


def test_a_folder_without_class_folders_or_images(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path / "root")
    (tmp_path / "root" / "cat").mkdir()
    (tmp_path / "root" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="contains no images"):
        load_image_folder(tmp_path / "root")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a file"):
        load_image_folder(tmp_path / "root" / "cat" / "notes.txt")


def test_corrupt_image_files_are_skipped_with_a_warning_naming_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    for i in range(3):
        _png(root / "cat" / f"{i}.png", seed=i)
        _png(root / "dog" / f"{i}.png", seed=10 + i)
    (root / "cat" / "garbage.png").write_bytes(b"\x89PNG but not really" * 10)
    (root / "dog" / "empty.jpg").write_bytes(b"")
    whole = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.data"):
        data = load_image_folder(root)
    assert len(data) == 6
    assert data.classes == ("cat", "dog")
    messages = [r.getMessage() for r in caplog.records]
    for name in ("garbage.png", "empty.jpg", "truncated.png"):
        assert any(name in m and "Skipping undecodable image" in m for m in messages)
    assert any("Skipped 3 of 9 image files" in m for m in messages)


def test_many_corrupt_files_name_ten_in_warnings_and_the_rest_at_debug_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _png(tmp_path / "cat" / "ok.png")
    for i in range(13):
        (tmp_path / "cat" / f"bad{i:02d}.png").write_bytes(b"garbage")
    with caplog.at_level(logging.DEBUG, logger="robust_contrastive.data"):
        data = load_image_folder(tmp_path)
    assert len(data) == 1
    skipped = [r for r in caplog.records if "Skipping undecodable image" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING] * 10 + [logging.DEBUG] * 3
    assert {f"bad{i:02d}.png" for i in range(13)} == {
        Path(r.getMessage().split()[3].rstrip(":")).name for r in skipped
    }
    summary = [r.getMessage() for r in caplog.records if "Skipped 13 of 14" in r.getMessage()]
    assert len(summary) == 1
    assert "DEBUG level" in summary[0]


def test_a_class_left_empty_by_corrupt_files_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _png(tmp_path / "cat" / "0.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "0.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.data"):
        data = load_image_folder(tmp_path)
    assert data.classes == ("cat", "dog")
    assert data.labels.tolist() == [0]
    assert any("['dog'] have no decodable image" in r.getMessage() for r in caplog.records)


def test_only_corrupt_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"garbage")
    (tmp_path / "cat" / "b.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 2 image files"):
        load_image_folder(tmp_path)


def test_images_of_different_sizes_need_image_size(tmp_path: Path) -> None:
    _png(tmp_path / "cat" / "a.png", size=8)
    _png(tmp_path / "cat" / "b.png", size=12)
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, image_size=8).images.shape == (2, 3, 8, 8)


def test_a_16_bit_png_is_rescaled_to_8_bits(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    (tmp_path / "cat").mkdir()
    Image.fromarray(values).save(tmp_path / "cat" / "deep.png")
    data = load_image_folder(tmp_path)
    assert data.images.dtype == torch.uint8
    assert data.images.shape == (1, 3, 1, 4)
    assert data.images[0, :, 0].tolist() == [[0, 1, 128, 255]] * 3


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_link_back_up_the_tree_does_not_load_images_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _png(tmp_path / "root" / "cat" / "a.png")
    _png(tmp_path / "root" / "dog" / "b.png")
    (tmp_path / "root" / "cat" / "loop").symlink_to(tmp_path / "root" / "cat")
    (tmp_path / "root" / "cat" / "up").symlink_to(tmp_path / "root")
    _png(tmp_path / "elsewhere" / "c.png")
    (tmp_path / "root" / "cat" / "more").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.data"):
        data = load_image_folder(tmp_path / "root")
    assert data.labels.tolist() == [0, 0, 1]  # cat/a.png, cat/more/c.png, dog/b.png
    assert sum("already loaded" in r.getMessage() for r in caplog.records) == 2


# -------------------------------------------------------------------------------- the CLI
TINY = [
    "--width", "4", "--projection-hidden-dim", "16", "--projection-dim", "8", "--epochs", "1",
    "--batch-size", "4", "--image-size", "16", "--attack-steps", "1", "--no-progress",
    "--device", "cpu",
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An image folder, a finished run (with split.json), a probe, and checkpoint files."""
    root = tmp_path_factory.mktemp("cli")
    images = root / "images"
    for c, name in enumerate(("cat", "dog")):
        for i in range(6):
            _png(images / name / f"{i}.png", size=16, seed=10 * c + i)
    run = root / "run"
    code = main(["train", "--data", str(images), "--out", str(run), "--val-per-class", "2", *TINY])
    assert code == 0
    assert (run / "split.json").is_file()
    probe = root / "probe"
    RobustLinearProbe(RoCLEncoder(width=4), 2, augment=False).save_pretrained(probe)
    report = root / "report.json"
    report.write_text('{"old": "report"}\n')
    converted = root / "converted"
    RoCLEncoder(width=4).save_pretrained(converted)
    torch.manual_seed(1)
    torch.save({"model": RoCLEncoder(width=4).state_dict()}, root / "encoder.t7")
    projector = ProjectionHead(5, 4, 2).state_dict()
    torch.save({"model": projector}, root / "projector-for-5-features.t7")
    (root / "garbage.t7").write_bytes(b"not a checkpoint")
    splits = {
        "broken": "{",
        "list": "[1, 2]",
        "strings": '{"train": ["a"], "val": ["a"]}',
        "out-of-range": '{"train": [100], "val": [100]}',
        "nested": '{"train": [[1]], "val": [[1]]}',
        "no-val": '{"train": [0, 1]}',
    }
    for name, text in splits.items():
        (root / f"split-{name}.json").write_text(text)
    bad_model = root / "bad-model"
    bad_model.mkdir()
    (bad_model / "config.json").write_text("[1, 2]")
    return {
        "root": root,
        "images": images,
        "run": run,
        "probe": probe,
        "report": report,
        "converted": converted,
        "bad_model": bad_model,
    }


def _train(w: dict[str, Path], *extra: str) -> list[str]:
    return ["train", "--data", str(w["images"]), "--out", str(w["run"]), *TINY, *extra]


def _evaluate_cli(w: dict[str, Path], *extra: str) -> list[str]:
    return [
        "evaluate", "--model", str(w["probe"]), "--data", str(w["images"]),
        "--out", str(w["report"]), "--threats", "linf-8/255", "--no-progress", *extra,
    ]  # fmt: skip


def _split(w: dict[str, Path], name: str) -> str:
    return str(w["root"] / f"split-{name}.json")


# fmt: off
CLI_ROWS: list[tuple[str, Callable[[dict[str, Path]], list[str]], str]] = [
    ("train --eps -1", lambda w: _train(w, "--eps", "-1"), "eps"),
    ("train --eps inf", lambda w: _train(w, "--eps", "inf"), "finite"),
    ("train --eps abc", lambda w: _train(w, "--eps", "abc"), "not a number"),
    # Choice options are refused by the parser, which lists the allowed values.
    ("train --arch vgg16", lambda w: _train(w, "--arch", "vgg16"), "--arch: invalid choice"),
    ("train --attack-norm l3", lambda w: _train(w, "--attack-norm", "l3"), "--attack-norm: invalid"),
    ("train --attack-loss kl", lambda w: _train(w, "--attack-loss", "kl"), "--attack-loss: invalid"),
    ("train --attack-steps -1", lambda w: _train(w, "--attack-steps", "-1"), "steps"),
    (
        "train --data missing folder",
        lambda w: [*_train(w, "--resume"), "--data", str(w["root"] / "nope")],
        "neither a known name nor an existing path",
    ),
    (
        "train --data folder without images",
        lambda w: [*_train(w, "--resume"), "--data", str(w["bad_model"])],
        "no class folders",
    ),
    ("train --resume --seed 5 (another run)", lambda w: _train(w, "--resume", "--seed", "5", "--val-per-class", "2"), "cannot resume"),
    ("train --resume --batch-size 64 (> images)", lambda w: _train(w, "--resume", "--batch-size", "64", "--val-per-class", "2"), "fewer than batch_size"),
    ("train --val-per-class 6 (all images)", lambda w: _train(w, "--resume", "--val-per-class", "6"), "leaves no training images"),
    ("train --max-per-class 0", lambda w: _train(w, "--resume", "--max-per-class", "0"), "max_per_class"),
    ("probe --split broken JSON", lambda w: ["probe", "--encoder", str(w["run"]), "--data", str(w["images"]), "--split", _split(w, "broken"), "--out", str(w["run"] / "probe")], "is not valid JSON"),
    ("probe --split out-of-range", lambda w: ["probe", "--encoder", str(w["run"]), "--data", str(w["images"]), "--split", _split(w, "out-of-range"), "--out", str(w["run"] / "probe")], "indices must lie in"),
    ("probe --epochs 0", lambda w: ["probe", "--encoder", str(w["run"]), "--data", str(w["images"]), "--epochs", "0", "--out", str(w["run"] / "probe")], "epochs"),
    ("probe --encoder missing folder", lambda w: ["probe", "--encoder", str(w["root"] / "nope"), "--data", str(w["images"]), "--out", str(w["run"] / "probe")], "neither a folder"),
    ("evaluate --threats linf-9", lambda w: _evaluate_cli(w, "--threats", "linf-9"), "invalid choice"),
    ("evaluate --batch-size 0", lambda w: _evaluate_cli(w, "--batch-size", "0"), "batch_size"),
    ("evaluate --n-images 0", lambda w: _evaluate_cli(w, "--n-images", "0"), "n_images"),
    ("evaluate --smoothed 2 --eot-samples 0", lambda w: _evaluate_cli(w, "--smoothed", "2", "--eot-samples", "0"), "eot_samples"),
    ("evaluate --split broken JSON", lambda w: _evaluate_cli(w, "--split", _split(w, "broken")), "split-broken.json is not valid JSON"),
    ("evaluate --split a JSON list", lambda w: _evaluate_cli(w, "--split", _split(w, "list")), "holds a JSON list"),
    ("evaluate --split string indices", lambda w: _evaluate_cli(w, "--split", _split(w, "strings")), "list of integer image indices"),
    ("evaluate --split nested lists", lambda w: _evaluate_cli(w, "--split", _split(w, "nested")), "list of integer image indices"),
    ("evaluate --split without 'val'", lambda w: _evaluate_cli(w, "--split", _split(w, "no-val")), "has no 'val' indices"),
    ("evaluate --model config.json a list", lambda w: [*_evaluate_cli(w), "--model", str(w["bad_model"])], "holds a JSON list"),
    ("evaluate --model an encoder", lambda w: [*_evaluate_cli(w), "--model", str(w["run"])], "not a classifier"),
    ("card --report a JSON list", lambda w: ["card", str(w["run"]), "--report", _split(w, "list")], "holds a JSON list"),
    ("convert garbage bytes", lambda w: ["convert", str(w["root"] / "garbage.t7"), "--out", str(w["converted"])], "refused to load"),
    ("convert a missing file", lambda w: ["convert", str(w["root"] / "nope.t7"), "--out", str(w["converted"])], "does not exist"),
    (
        "convert with a projector of another model",
        lambda w: [
            "convert", str(w["root"] / "encoder.t7"), "--projector",
            str(w["root"] / "projector-for-5-features.t7"), "--out", str(w["converted"]),
        ],
        "different models",
    ),
]
# fmt: on


@pytest.mark.parametrize(
    ("make_args", "message"),
    [pytest.param(make, message, id=name) for name, make, message in CLI_ROWS],
)
def test_cli_bad_arguments_leave_existing_outputs_byte_identical(
    workspace: dict[str, Path],
    make_args: Callable[[dict[str, Path]], list[str]],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    watched = ("run", "probe", "report", "converted")
    before = {k: _snapshot(workspace[k]) if workspace[k].is_dir() else {} for k in watched}
    report_before = workspace["report"].read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(make_args(workspace))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    for key in ("run", "probe", "converted"):
        assert _snapshot(workspace[key]) == before[key], f"{key} was modified"
    assert workspace["report"].read_bytes() == report_before


# ---------------------------------------------------------------------------- safe loading
class _Exploit:
    """Unpickling it would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


# load_checkpoint lets torch's UnpicklingError through; a ValueError would do as well.
REFUSED = (pickle.UnpicklingError, ValueError)


def test_a_checkpoint_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"format_version": 1, "epoch": 1, "payload": _Exploit(marker)}, path)
    with pytest.raises(REFUSED):
        load_checkpoint(path)
    assert not marker.exists()


def test_resuming_from_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    trainer = _trainer(tmp_path / "run")
    path = trainer.checkpoint_path
    assert path is not None
    path.parent.mkdir(parents=True)
    torch.save({"format_version": 1, "epoch": 1, "payload": _Exploit(marker)}, path)
    images = torch.rand(4, 3, 16, 16)
    with pytest.raises(REFUSED):
        trainer.fit(images, resume=True)
    assert not marker.exists()


def test_resuming_fine_tuning_from_a_crafted_checkpoint_runs_no_code(
    ctx: Ctx, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format_version": 1, "epoch": 1, "payload": _Exploit(marker)}, path)
    with pytest.raises(REFUSED):
        finetune(
            ctx.encoder, ctx.dataset, _finetune_config(), out_dir=tmp_path / "run", resume=True
        )
    assert not marker.exists()


def test_from_pretrained_refuses_pickles_and_names_a_broken_config(tmp_path: Path) -> None:
    torch.save(RoCLEncoder(width=4).state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only pickle files"):
        RoCLEncoder.from_pretrained(tmp_path)
    folder = RoCLEncoder(width=4).save_pretrained(tmp_path / "enc")
    (folder / "config.json").write_text('{"model_type": ')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        RoCLEncoder.from_pretrained(folder)


def test_a_mistyped_local_folder_is_not_reported_as_a_hub_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no folder runs/rocl-typo exists"):
        RoCLEncoder.from_pretrained(
            "runs/rocl-typo", local_files_only=True, cache_dir=tmp_path / "hf"
        )


def _entry(**overrides: Any) -> PretrainedModel:
    values: dict[str, Any] = {
        "name": "tiny",
        "repo_id": "org/tiny",
        "revision": COMMIT,
        "model_type": "rocl-encoder",
        "sha256": {"model.safetensors": "a" * 64},
    }
    return PretrainedModel(**{**values, **overrides})


@pytest.mark.parametrize(
    "file",
    [
        "../model.safetensors",
        "encoder/../../model.safetensors",
        "..\\model.safetensors",
        "C:model.safetensors",
        "C:\\model.safetensors",
        "/etc/passwd",
        "\\\\server\\share\\model.safetensors",
        "",
    ],
)
def test_registry_weight_paths_cannot_leave_the_model_folder(file: str) -> None:
    with pytest.raises(ValueError, match="relative path inside the model's folder"):
        _entry(sha256={file: "a" * 64})


@pytest.mark.parametrize("repo_id", ["org/..", "../tiny", "org/tiny/extra", "tiny", "org/"])
def test_registry_repo_ids_are_plain_org_name(repo_id: str) -> None:
    with pytest.raises(ValueError, match="org/name"):
        _entry(repo_id=repo_id)


@pytest.mark.parametrize("name", ["../tiny", "a/b", "..", ".hidden", "Tiny"])
def test_registry_names_cannot_name_another_folder(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        _entry(name=name)


def test_a_report_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    from robust_contrastive import attach_evaluation

    folder = RoCLEncoder(width=4).save_pretrained(tmp_path / "enc")
    before = _snapshot(folder)
    for report in ([1, 2], "report", {"clean_accuracy": 0.5}):
        with pytest.raises(ValueError, match="must be a RobustnessReport"):
            attach_evaluation(folder, report, dataset="cifar10", split="val")
    assert _snapshot(folder) == before
    assert json.loads((folder / "config.json").read_text())["model_type"] == "rocl-encoder"
