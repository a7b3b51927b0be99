"""TRADES' attack ascends the KL divergence from the clean prediction.

Its contract as an attack (ball, modes, gradients, errors) is tested in test_attacks_base.
"""

from __future__ import annotations

import torch
from torch import nn

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import TradesAttack


def test_raises_the_kl_over_clean_and_noise(
    tiny_encoder: RoCLEncoder, images: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(tiny_encoder, nn.Linear(tiny_encoder.feature_dim, 3)).eval()
    eps = 16 / 255
    attack = TradesAttack(model, eps=eps, alpha=4 / 255, steps=5)
    adversarial = attack(images, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kl_clean = attack.kl(images, images)
        noise = (torch.rand(images.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * eps
        kl_random = attack.kl(images, (images + noise).clamp(0, 1))
        kl_adv = attack.kl(images, adversarial)
    assert float(kl_clean.abs().max()) < 1e-6
    assert float(kl_adv.mean()) > 0
    assert float(kl_adv.mean()) > float(kl_random.mean())
