"""The random start, ascent step and projection onto the eps-ball and [0, 1] of every attack:
the attacks differ only in the loss they ascend."""

from __future__ import annotations

import torch

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
    ``images`` (B, C, H, W) and the result are float in [0, 1].
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
