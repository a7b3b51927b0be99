"""The projected-gradient step shared by every attack of this library.

Instance-wise and class-wise attacks differ only in the loss they ascend; the random start, the
ascent step, the projection onto the eps-ball and the clamp to [0, 1] live here, once, so that a
fix to any of them fixes every attack.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch

from .._names import NORMS as NORMS

Norm = Literal["linf", "l2", "l1"]
_TINY = 1e-12
L1_SPARSITY = 0.99  # the l1 step moves the top 1 % of gradient coordinates (SLIDE's default)


def _per_image_norm(x: torch.Tensor, p: int = 2) -> torch.Tensor:
    """The l_p norm of each image, shaped (B, 1, 1, 1) for broadcasting."""
    norms: torch.Tensor = x.flatten(1).norm(p=p, dim=1).clamp_min(_TINY)  # (B,)
    return norms.view(-1, *([1] * (x.dim() - 1)))  # (B,) -> (B, 1, 1, 1)


def random_start(
    images: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniformly random point of the eps-ball around ``images``, clamped to [0, 1].

    l-inf: every pixel offset uniform in [-eps, eps] (as in Madry et al. and RoCL).
    l2 / l1: a random direction (Gaussian / Laplace) scaled to a radius uniform in [0, eps].

    Args:
        images: (B, C, H, W) float in [0, 1].

    Returns:
        (B, C, H, W) float in [0, 1], within eps of ``images``.
    """
    shape, device, dtype = images.shape, images.device, images.dtype
    if norm == "linf":
        delta = (torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1) * eps
    else:
        direction = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if norm == "l1":  # Laplace directions, normalised in l1
            direction = direction.sign() * -torch.log1p(
                -torch.rand(shape, generator=generator, device=device, dtype=dtype)
            )
        radius = torch.rand(shape[0], generator=generator, device=device, dtype=dtype) * eps
        unit = direction / _per_image_norm(direction, 1 if norm == "l1" else 2)
        delta = unit * radius.view(-1, *([1] * (len(shape) - 1)))  # (B,) -> (B, 1, 1, 1)
    return (images + delta).clamp(0.0, 1.0)


def ascent_step(x_adv: torch.Tensor, grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    """One steepest-ascent step of size ``alpha`` for the given norm.

    l-inf: the sign of the gradient (eq. 1 and 4 of the paper). l2: the l2-normalised gradient.
    l1: sparse l1 descent (SLIDE, Tramer & Boneh 2019): the signs of the largest 1 % of the
    gradient's coordinates, normalised to unit l1 norm, ignoring coordinates that the [0, 1]
    box would clip anyway.
    """
    if norm == "linf":
        return x_adv + alpha * grad.sign()
    if norm == "l2":
        return x_adv + alpha * grad / _per_image_norm(grad)
    blocked = ((x_adv >= 1) & (grad > 0)) | ((x_adv <= 0) & (grad < 0))
    grad = grad.masked_fill(blocked, 0.0)
    flat = grad.abs().flatten(1)  # (B, D)
    k = max(1, round(flat.shape[1] * (1 - L1_SPARSITY)))
    threshold = flat.topk(k, dim=1).values[:, -1:]  # (B, 1), the k-th largest magnitude
    direction = (grad.sign() * (flat >= threshold).view_as(grad)).masked_fill(blocked, 0.0)
    return x_adv + alpha * direction / _per_image_norm(direction, 1)


def project(x_adv: torch.Tensor, images: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``images`` (Pi_B of eq. 1), then clamp to [0, 1].

    Clamping after the projection never leaves the ball: the box [0, 1] contains ``images``, so
    clamping only moves pixels towards them.
    """
    delta = x_adv - images
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        delta = delta * (eps / _per_image_norm(delta)).clamp(max=1.0)
    else:
        delta = _project_l1(delta, eps)
    return (images + delta).clamp(0.0, 1.0)


def _project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of every image's ``delta`` onto the l1 ball of radius ``eps``
    (Duchi et al. 2008, the sorting algorithm, batched)."""
    if eps == 0:
        return torch.zeros_like(delta)
    flat = delta.flatten(1)  # (B, D)
    magnitude = flat.abs()
    inside = magnitude.sum(dim=1, keepdim=True) <= eps  # (B, 1)
    mu = magnitude.sort(dim=1, descending=True).values  # (B, D)
    cumulative = mu.cumsum(dim=1)
    ranks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    rho = (mu * ranks > cumulative - eps).sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
    theta = (cumulative.gather(1, rho - 1) - eps) / rho.to(delta.dtype)  # (B, 1)
    projected = flat.sign() * (magnitude - theta).clamp(min=0)
    return torch.where(inside, flat, projected).view_as(delta)  # (B, D) -> (B, C, H, W)


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


def check_budget(eps: float, alpha: float, steps: int, norm: str) -> None:
    """Validate an attack's hyperparameters, raising ``ValueError`` (``TypeError`` for a value
    that is not a number) with the fix."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}.")
    check_number("eps", eps, positive=False, example="8/255 for l-inf")
    check_number("alpha (the step size)", alpha, positive=True, example="2/255")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}.")


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Validate a batch of images: (B, 3, H, W) float, finite, in [0, 1].

    This reads the tensor's min and max (one host synchronisation): public entry points call it,
    hot loops inside the library do not.
    """
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


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise if ``generator`` lives on another device than the data it must sample for."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the images are on {device}: create it "
            f"with torch.Generator(device=images.device)."
        )
