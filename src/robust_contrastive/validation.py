"""Input checks shared by the public entry points, each raising ``ValueError`` (or
``TypeError``) with the fix. Those that read tensor values (one host synchronisation each, e.g.
``check_images``' min and max) belong at public entry points, not in hot loops."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from ._names import NORMS
from .modes import eval_mode

__all__ = [
    "check_attack_labels",
    "check_budget",
    "check_classes",
    "check_generator",
    "check_images",
    "check_labels",
    "check_number",
    "check_positive_int",
    "model_device",
]


def check_number(name: str, value: object, *, positive: bool, example: str) -> None:
    """Raise unless ``value`` is a finite real number, > 0 if ``positive`` else >= 0.

    Raises:
        TypeError: not a real number (a string, a tensor, a bool...).
        ValueError: NaN, infinite, negative (or zero when ``positive``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number (e.g. {example}), got {type(value).__name__}.")
    bound = "> 0" if positive else ">= 0"
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {bound} (e.g. {example}), got {value}.")


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` >= 1 (a bool or a float is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_budget(eps: float, alpha: float, steps: int, norm: str) -> None:
    """Validate an attack's hyperparameters (``TypeError`` for a value that is not a number)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}.")
    check_number("eps", eps, positive=False, example="8/255 for l-inf")
    check_number("alpha (the step size)", alpha, positive=True, example="2/255")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}.")


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Validate a batch of images, (B, 3, H, W) float, finite, in [0, 1], and return it."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W), got shape {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be float in [0, 1], got {images.dtype}: use images.float() / 255."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch.")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or inf pixels.")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]: pass unnormalised "
            "images (normalisation belongs inside the model: RoCLEncoder(mean=..., std=...))."
        )
    return images


def check_training_images(data: object, caller: str) -> torch.Tensor:
    """The images of ``data``, an ImageDataset or (N, 3, H, W) uint8 or float in [0, 1], to
    train on; anything else, or no image, is a ``TypeError`` / ``ValueError`` naming ``caller``."""
    images = getattr(data, "images", data)  # an ImageDataset's images (labels are not used)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{caller} takes an ImageDataset or an image tensor, got {type(data).__name__}: "
            "load data with robust_contrastive.data.load_dataset(...)."
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise ValueError("the dataset is empty: nothing to train on.")
    if images.dtype != torch.uint8:
        check_images(images, "images")
    return images


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise if ``generator`` lives on another device than the data it must sample for."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the images are on {device}: create it "
            f"with torch.Generator(device=images.device)."
        )


def check_labels(labels: object, num_images: int, num_classes: int | None, name: str) -> None:
    """Validate the (N,) integer class labels of a data set, in [0, num_classes) when given."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}."
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {labels.dtype}: use labels.long()."
        )
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(labels.shape)}.")
    if labels.shape[0] != num_images:
        raise ValueError(
            f"{name} has {labels.shape[0]} entries but there are {num_images} images: pass one "
            "label per image."
        )
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a minimum of {low}.")
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"{name} go up to {high} but the probe has num_classes={num_classes}: build it with "
            f"num_classes >= {high + 1} (e.g. len(dataset.classes))."
        )


def check_attack_labels(labels: object, images: torch.Tensor) -> torch.Tensor:
    """Validate the labels of an attacked batch and return them: (B,) int64 or int32, >= 0, on
    the images' device (their upper bound is checked against the model by ``check_classes``)."""
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(
            f"labels must be an integer tensor of class indices, shape (B,), got {got}: use "
            "labels.long()."
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},) to match the images, got "
            f"{tuple(labels.shape)}."
        )
    if labels.device != images.device:
        raise ValueError(
            f"labels are on {labels.device} but the images on {images.device}: move them with "
            "labels.to(images.device)."
        )
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be class indices >= 0.")
    return labels


def check_classes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Check that ``model`` returns (B, K) logits and that every label is < K; return K.

    One eval-mode forward of a single image without gradients (the model's mode is restored),
    so that a label the model cannot predict is reported here rather than deep inside
    ``cross_entropy`` (or never, when the attack makes no step).
    """
    with eval_mode(model), torch.no_grad():
        logits = model(images[:1])
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the model must return (B, num_classes) logits, got {shape} for one image: attack "
            "a classifier (e.g. a RobustLinearProbe), not an encoder."
        )
    num_classes = int(logits.shape[1])
    high = int(labels.max())
    if high >= num_classes:
        raise ValueError(
            f"labels go up to {high} but the model outputs {num_classes} classes: labels must be "
            f"class indices in [0, {num_classes})."
        )
    return num_classes


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer), else ``fallback``."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback
