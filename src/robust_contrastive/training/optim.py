"""LARS on SGD and the warm-up + cosine learning-rate schedule of the original RoCL code."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    Follows torchlars, which the original RoCL code wraps around SGD: for every parameter tensor
    w with gradient g, the update uses

        g' = (g + wd * w) * trust * ||w|| / (||g|| + wd * ||w|| + eps)

    (the adaptive factor is 1 where ||w|| or ||g|| is 0), then SGD with momentum on g'. All
    parameters are adapted, biases and BatchNorm included, as in the original. The factor is
    computed on the device without host synchronisation.

    Args:
        lr: learning rate (set every step by the schedule).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay folded into the gradient (1e-6).
        trust_coefficient: LARS trust coefficient (0.001).
        eps: numerical guard of the denominator (1e-8).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, object]],
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(
                "LARS needs lr > 0, momentum in [0, 1), weight_decay >= 0, trust_coefficient > 0."
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, trust, eps = group["weight_decay"], group["trust_coefficient"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(p.grad)
                adaptive = trust * w_norm / (g_norm + wd * w_norm + eps)
                adaptive = torch.where(
                    (w_norm > 0) & (g_norm > 0), adaptive, torch.ones_like(adaptive)
                )
                d_p = p.grad.add(p, alpha=wd).mul_(adaptive)
                state = self.state[p]
                if group["momentum"] > 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p)
                    d_p = buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def warmup_cosine_lr(
    epoch: float, *, base_lr: float, multiplier: float, warmup_epochs: int, total_epochs: int
) -> float:
    """Learning rate at a (fractional) epoch: linear warm-up, then cosine decay to 0.

    The original warms up from ``base_lr`` to ``base_lr * multiplier`` over ``warmup_epochs``
    (GradualWarmupScheduler), then anneals with a cosine (CosineAnnealingLR). Here the schedule
    is evaluated every step, so the curve is smooth instead of a staircase of epochs.
    """
    peak = base_lr * multiplier
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * (1.0 + (multiplier - 1.0) * epoch / warmup_epochs)
    decay_epochs = max(total_epochs - warmup_epochs, 1)
    progress = min(max((epoch - warmup_epochs) / decay_epochs, 0.0), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
