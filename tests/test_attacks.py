from __future__ import annotations

import pytest
import torch

from robust_contrastive import InstanceWiseAttack, ProjectionHead, RoCLEncoder, nt_xent_loss
from robust_contrastive.attacks._steps import project, random_start


def _views(images: torch.Tensor) -> torch.Tensor:
    """A second 'view': a flipped, slightly brightened copy, still in [0, 1]."""
    return (images.flip(-1) * 0.9 + 0.05).clamp(0, 1)


def _loss(attack: InstanceWiseAttack, x: torch.Tensor, positives: torch.Tensor) -> float:
    with torch.no_grad():
        return float(attack.objective(x, attack.embed(positives)))


def test_raises_contrastive_loss_over_clean_and_noise(
    tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead, images: torch.Tensor
) -> None:
    tiny_encoder.eval()
    tiny_projector.eval()
    positives = _views(images)
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, eps=8 / 255, alpha=2 / 255, steps=10)
    adv = attack(images, positives, generator=torch.Generator().manual_seed(0))
    noise = random_start(images, 8 / 255, "linf", torch.Generator().manual_seed(1))
    clean_loss = _loss(attack, images, positives)
    noise_loss = _loss(attack, noise, positives)
    adv_loss = _loss(attack, adv, positives)
    assert adv_loss > clean_loss
    assert adv_loss > noise_loss
    # And the contrastive loss is exactly nt_xent_loss of the two latents.
    with torch.no_grad():
        z_adv = tiny_projector(tiny_encoder(adv))
        z_pos = tiny_projector(tiny_encoder(positives))
    assert adv_loss == pytest.approx(float(nt_xent_loss(z_adv, z_pos)), rel=1e-5)


def _recomputing_every_step(
    encoder: RoCLEncoder,
    projector: ProjectionHead,
    images: torch.Tensor,
    positives: torch.Tensor,
    start: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """The original RoCL attack loop: every step forwards cat(x_adv, positives) in eval mode."""
    encoder.eval()
    projector.eval()
    x = start.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        z = projector(encoder(torch.cat((x, positives))))  # both views, every step
        z_adv, z_pos = z.chunk(2)  # (2B, D) -> 2 x (B, D)
        (grad,) = torch.autograd.grad(nt_xent_loss(z_adv, z_pos), x)
        x = torch.min(torch.max(x.detach() + alpha * grad.sign(), images - eps), images + eps)
        x = x.clamp(0, 1)
    return x.detach()


def test_cached_positives_equal_recomputing_every_step(
    tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead, images: torch.Tensor
) -> None:
    """The original forwards cat(x_adv, positives) at every step; caching the positives'
    latents once per call gives the same attack.

    The two paths batch the convolutions differently (B vs 2B images), so in float32 they agree
    only to rounding, and a sign ascent turns a rounding difference that flips the sign of a
    near-zero gradient coordinate into a 2 * alpha step (it did, on AVX-512 and AVX2 kernels).
    Hence, in float32, the objective and its input gradient at a fixed point (well-conditioned:
    equal to rounding), and, in float64, the whole ascent: there the two paths agree to ~1e-16,
    far below any gradient coordinate the sign reads, so the iterates must match to 1e-12. A
    stale or wrong cached positive (another image, train-mode statistics) moves them by alpha.
    """
    eps, alpha, steps = 8 / 255, 0.007, 4
    positives = _views(images)
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, eps=eps, alpha=alpha, steps=steps)

    # float64: the whole sign ascent, iterate for iterate, called in train mode as the trainer
    # does (the cache must be made in eval mode too).
    encoder, projector = tiny_encoder.double(), tiny_projector.double()
    assert encoder.training
    images64, positives64 = images.double(), positives.double()
    ours = attack(images64, positives64, generator=torch.Generator().manual_seed(5))
    start = random_start(images64, eps, "linf", torch.Generator().manual_seed(5))
    reference = _recomputing_every_step(
        encoder, projector, images64, positives64, start, eps, alpha, steps
    )
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    assert not torch.equal(ours, start)  # the ascent did move

    # float32: the objective the attack ascends (cached positives) and its input gradient at a
    # fixed point (the end of that ascent), against the 2B-image forward of the original.
    encoder, projector = encoder.float().eval(), projector.float().eval()
    x = reference.float().requires_grad_(True)
    with torch.no_grad():
        z_positives = attack.embed(positives)
    cached = attack.objective(x, z_positives)
    (grad_cached,) = torch.autograd.grad(cached, x)
    z_adv, z_pos = projector(encoder(torch.cat((x, positives)))).chunk(2)  # (2B, D) -> 2 x (B, D)
    recomputed = nt_xent_loss(z_adv, z_pos)
    (grad_recomputed,) = torch.autograd.grad(recomputed, x)
    torch.testing.assert_close(cached, recomputed, rtol=1e-5, atol=0)
    scale = float(grad_recomputed.abs().max())
    torch.testing.assert_close(grad_cached, grad_recomputed, rtol=0, atol=1e-4 * scale)


def test_projection_is_exact_at_eps_zero(images: torch.Tensor) -> None:
    for norm in ("linf", "l2", "l1"):
        assert torch.equal(project(images + 0.1, images, 0.0, norm), images)
