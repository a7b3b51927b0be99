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


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["contrastive", "mse", "cosine", "l1"])
def test_output_in_ball_and_unit_box(
    tiny_encoder: RoCLEncoder,
    tiny_projector: ProjectionHead,
    images: torch.Tensor,
    norm: str,
    loss: str,
) -> None:
    eps = 8 / 255 if norm == "linf" else 0.5
    attack = InstanceWiseAttack(
        tiny_encoder, tiny_projector, eps=eps, alpha=eps / 4, steps=3, norm=norm, loss=loss
    )
    adv = attack(images, _views(images), generator=torch.Generator().manual_seed(0))
    assert adv.shape == images.shape
    assert not adv.requires_grad
    assert adv.min() >= 0
    assert adv.max() <= 1
    delta = (adv - images).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert delta.abs().max() > 0


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


@pytest.mark.parametrize("modes", [(True, True), (False, True), (True, False), (False, False)])
def test_restores_modes_and_leaves_grads(
    tiny_encoder: RoCLEncoder,
    tiny_projector: ProjectionHead,
    images: torch.Tensor,
    modes: tuple[bool, bool],
) -> None:
    tiny_encoder.train(modes[0])
    tiny_projector.train(modes[1])
    # Some parameters with an existing .grad, the others with none.
    first = next(tiny_encoder.parameters())
    first.grad = torch.full_like(first, 0.25)
    running_mean = tiny_encoder.bn1.running_mean.clone()
    seen_modes = []
    hook = tiny_encoder.register_forward_pre_hook(
        lambda module, _: seen_modes.append(module.training)
    )
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, steps=2)
    attack(images, _views(images))
    hook.remove()
    assert seen_modes
    assert not any(seen_modes)
    assert tiny_encoder.training == modes[0]
    assert tiny_projector.training == modes[1]
    assert torch.equal(first.grad, torch.full_like(first, 0.25))
    assert all(p.grad is None for p in list(tiny_encoder.parameters())[1:])
    assert all(p.grad is None for p in tiny_projector.parameters())
    assert torch.equal(tiny_encoder.bn1.running_mean, running_mean)  # no BN statistics update


def test_restores_modes_on_error(tiny_encoder: RoCLEncoder, images: torch.Tensor) -> None:
    wrong_head = ProjectionHead(tiny_encoder.feature_dim + 1, 8, 4)  # in_dim mismatch
    tiny_encoder.train()
    attack = InstanceWiseAttack(tiny_encoder, wrong_head, steps=1)
    with pytest.raises(ValueError, match="in_dim"):
        attack(images, _views(images))
    assert tiny_encoder.training
    assert wrong_head.training


def test_reproducible_with_generator(
    tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead, images: torch.Tensor
) -> None:
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, steps=2)
    positives = _views(images)
    a = attack(images, positives, generator=torch.Generator().manual_seed(3))
    b = attack(images, positives, generator=torch.Generator().manual_seed(3))
    c = attack(images, positives, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_eps_zero_returns_input(
    tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead, images: torch.Tensor
) -> None:
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, eps=0.0, steps=5)
    adv = attack(images, _views(images))
    assert torch.equal(adv, images)
    # The projection itself is exact at eps = 0 too.
    assert torch.equal(project(images + 0.1, images, 0.0, "linf"), images)
    assert torch.equal(project(images + 0.1, images, 0.0, "l2"), images)


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": -0.1}, "eps"),
        ({"steps": -1}, "steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"norm": "l3"}, "norm"),
        ({"loss": "kl"}, "attack loss"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_hyperparameters(
    tiny_encoder: RoCLEncoder,
    tiny_projector: ProjectionHead,
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        InstanceWiseAttack(tiny_encoder, tiny_projector, **kwargs)  # type: ignore[arg-type]


def test_bad_images(
    tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead, images: torch.Tensor
) -> None:
    attack = InstanceWiseAttack(tiny_encoder, tiny_projector, steps=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        attack(images[:, :1], images[:, :1])
    with pytest.raises(TypeError, match="float"):
        attack((images * 255).to(torch.uint8), images)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(images * 2, images)
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        attack(nan, images)
    with pytest.raises(ValueError, match="shape"):
        attack(images, images[:4])
    with pytest.raises(ValueError, match="at least 2"):
        attack(images[:1], images[:1])
    with pytest.raises(ValueError, match="empty"):
        attack(images[:0], images[:0])
