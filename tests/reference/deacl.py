"""DeACL's stage 2 as the official code computes it, written plainly from its formulas: the
reference ``tests/test_deacl.py`` checks the library against.

Source: github.com/pantheon5100/DeACL, ``solo/methods/mocov2_distillation_AT.py``
(``MoCoV2KDAT.training_step`` and ``generate_training_AE``), with the projectors
``nn.Identity()`` (the default ``--projector_ablation remove``): the student's and the teacher's
features are the backbones' outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def official_adv_loss(
    student_logits_clean: torch.Tensor,
    student_logits_ae: torch.Tensor,
    away_target: torch.Tensor,
    trades_k: float,
) -> torch.Tensor:
    """``adv_loss`` of ``training_step``: (B, D) features each -> scalar."""
    adv_loss = -F.cosine_similarity(student_logits_clean, away_target).mean()
    adv_loss += -trades_k * F.cosine_similarity(student_logits_ae, student_logits_clean).mean()
    return adv_loss


def official_attack_loss(f_proj: torch.Tensor, away_target: torch.Tensor) -> torch.Tensor:
    """The loss ``generate_training_AE`` ascends: (B, D) features each -> scalar."""
    return -F.cosine_similarity(f_proj, away_target, dim=1).sum() * 256


def official_generate_training_ae(
    backbone: nn.Module,
    image: torch.Tensor,
    away_target: torch.Tensor,
    start: torch.Tensor,
    epsilon: float = 8 / 255,
    num_steps: int = 5,
    step_size: float = 2 / 255,
) -> torch.Tensor:
    """``generate_training_AE``: PGD from ``start`` (the official code draws
    ``image + U(-epsilon, epsilon)``, not clamped to [0, 1]; here it is passed in), the
    backbone in eval mode, then back to train mode. Images (B, 3, H, W); targets (B, D)."""
    x_cl = start.clone().detach()
    backbone.eval()
    for _ in range(num_steps):
        x_cl.requires_grad_()
        with torch.enable_grad():
            loss = official_attack_loss(backbone(x_cl), away_target)
        grad_x_cl = torch.autograd.grad(loss, x_cl)[0]
        x_cl = x_cl.detach() + step_size * torch.sign(grad_x_cl.detach())
        x_cl = torch.min(torch.max(x_cl, image - epsilon), image + epsilon)
        x_cl = torch.clamp(x_cl, 0, 1)
    backbone.train()
    return x_cl


def official_lr_per_epoch(
    base_lr: float, warmup_epochs: int, max_epochs: int, warmup_start_lr: float, eta_min: float
) -> list[float]:
    """The learning rate of each epoch under pl_bolts' ``LinearWarmupCosineAnnealingLR`` as
    solo-learn steps it (once per epoch), in its chainable (recursive) form."""
    lrs: list[float] = []
    lr = base_lr
    for epoch in range(max_epochs):
        if epoch == warmup_epochs:
            lr = base_lr
        elif epoch == 0:
            lr = warmup_start_lr
        elif epoch < warmup_epochs:
            lr = lr + (base_lr - warmup_start_lr) / (warmup_epochs - 1)
        elif (epoch - 1 - max_epochs) % (2 * (max_epochs - warmup_epochs)) == 0:
            lr = (
                lr
                + (base_lr - eta_min) * (1 - math.cos(math.pi / (max_epochs - warmup_epochs))) / 2
            )
        else:
            period = max_epochs - warmup_epochs
            lr = (1 + math.cos(math.pi * (epoch - warmup_epochs) / period)) / (
                1 + math.cos(math.pi * (epoch - warmup_epochs - 1) / period)
            ) * (lr - eta_min) + eta_min
        lrs.append(lr)
    return lrs
