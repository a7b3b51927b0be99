"""Property tests (hypothesis) of the attacks and the contrastive loss over random settings.

Attacks (InstanceWiseAttack with every loss, PGD): for any batch of 2-6 images of side 8-16
(pixels exactly 0 and 1 included), any radius, step size and number of steps (0-3; negative
counts are refused) and with or without a random start, the output stays in the eps-ball of the
input and in [0, 1], is detached, has the input's shape, dtype and device, leaves the input,
the models' modes and their ``.grad`` untouched, and equals the input when eps = 0.

nt_xent_loss: finite and >= 0 for any 2-4 views of 2-6 rows (zero rows and huge values
included), invariant to one permutation of the batch applied to every view, and to the order of
the views.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robust_contrastive import PGD, InstanceWiseAttack, ProjectionHead, RoCLEncoder, nt_xent_loss
from robust_contrastive.attacks import ATTACK_LOSSES

# Few examples, no deadline (the first call of a model is slower), no example database in the
# repository: the file runs in about 15 s on 2 CPU cores.
SETTINGS = settings(max_examples=20, deadline=None, database=None)

# Radius and step ranges per norm, in the units of the paper's threat models (Table 1): l-inf
# up to 16/255, l2 up to 1 (0.25 and 0.5 in the paper), l1 up to 16 (7.84 and 12).
MAX_EPS = {"linf": 16 / 255, "l2": 1.0, "l1": 16.0}
ALPHA = {"linf": (1e-4, 8 / 255), "l2": (1e-3, 0.5), "l1": (1e-2, 8.0)}


def _tolerance(eps: float) -> float:
    """Float32 slack of a projection onto a ball of radius eps (sums of up to 768 terms)."""
    return 1e-5 * max(1.0, eps) + 1e-6


@functools.cache
def _models() -> tuple[RoCLEncoder, ProjectionHead, nn.Module]:
    torch.manual_seed(0)
    encoder = RoCLEncoder(width=4)
    projector = ProjectionHead(encoder.feature_dim, 16, 8)
    classifier = nn.Sequential(RoCLEncoder(width=4), nn.Linear(encoder.feature_dim, 5))
    return encoder, projector, classifier


@st.composite
def attack_settings(draw: st.DrawFn, norm: str) -> dict[str, object]:
    batch = draw(st.integers(2, 6))
    side = draw(st.integers(8, 16))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, side, side, generator=g)
    saturated = torch.rand(batch, 3, side, side, generator=g) < 0.2  # pixels at exactly 0 or 1
    images = torch.where(saturated, images.round(), images)
    eps = draw(st.one_of(st.just(0.0), st.floats(0.0, MAX_EPS[norm])))
    low, high = ALPHA[norm]
    return {
        "images": images,
        "eps": eps,
        "alpha": draw(st.floats(low, high)),
        "steps": draw(st.integers(0, 3)),
        "random_start": draw(st.booleans()),
        "seed": seed,
    }


def _check_adversarial(
    adversarial: torch.Tensor, images: torch.Tensor, eps: float, norm: str
) -> None:
    assert adversarial.shape == images.shape
    assert adversarial.dtype == images.dtype
    assert adversarial.device == images.device
    assert not adversarial.requires_grad
    assert adversarial.grad_fn is None
    assert bool(torch.isfinite(adversarial).all())
    assert float(adversarial.min()) >= 0.0
    assert float(adversarial.max()) <= 1.0
    delta = (adversarial - images).flatten(1).double()
    size = {"linf": delta.abs().amax(dim=1), "l2": delta.norm(dim=1), "l1": delta.abs().sum(dim=1)}
    assert float(size[norm].max()) <= eps + _tolerance(eps)
    if eps == 0:
        assert torch.equal(adversarial, images)


def _check_models_untouched(*models: nn.Module, modes: tuple[bool, ...]) -> None:
    assert tuple(m.training for m in models) == modes
    for model in models:
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("loss", ATTACK_LOSSES)
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@SETTINGS
@given(data=st.data())
def test_instance_wise_attack_stays_in_the_ball(norm: str, loss: str, data: st.DataObject) -> None:
    s = data.draw(attack_settings(norm))
    encoder, projector, _ = _models()
    encoder.train()
    projector.eval()
    images: torch.Tensor = s["images"]  # type: ignore[assignment]
    positives = images.flip(-1)
    original = images.clone()
    attack = InstanceWiseAttack(
        encoder,
        projector,
        eps=s["eps"],  # type: ignore[arg-type]
        alpha=s["alpha"],  # type: ignore[arg-type]
        steps=s["steps"],  # type: ignore[arg-type]
        norm=norm,
        random_start=s["random_start"],  # type: ignore[arg-type]
        loss=loss,
    )
    generator = torch.Generator().manual_seed(s["seed"])  # type: ignore[arg-type]
    adversarial = attack(images, positives, generator=generator)
    _check_adversarial(adversarial, images, float(s["eps"]), norm)  # type: ignore[arg-type]
    assert torch.equal(images, original)
    _check_models_untouched(encoder, projector, modes=(True, False))


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@SETTINGS
@given(data=st.data(), keep_first_success=st.booleans())
def test_pgd_stays_in_the_ball(norm: str, data: st.DataObject, keep_first_success: bool) -> None:
    s = data.draw(attack_settings(norm))
    _, _, classifier = _models()
    classifier.train()
    images: torch.Tensor = s["images"]  # type: ignore[assignment]
    labels = torch.arange(images.shape[0]) % 5
    original = images.clone()
    attack = PGD(
        classifier,
        eps=s["eps"],  # type: ignore[arg-type]
        alpha=s["alpha"],  # type: ignore[arg-type]
        steps=s["steps"],  # type: ignore[arg-type]
        norm=norm,
        random_start=s["random_start"],  # type: ignore[arg-type]
        keep_first_success=keep_first_success,
    )
    generator = torch.Generator().manual_seed(s["seed"])  # type: ignore[arg-type]
    adversarial = attack(images, labels, generator=generator)
    _check_adversarial(adversarial, images, float(s["eps"]), norm)  # type: ignore[arg-type]
    assert torch.equal(images, original)
    _check_models_untouched(classifier, modes=(True,))


@SETTINGS
@given(
    norm=st.sampled_from(["linf", "l2", "l1"]),
    eps=st.floats(max_value=-1e-12) | st.just(float("nan")) | st.just(float("inf")),
)
def test_a_negative_or_non_finite_eps_is_refused(norm: str, eps: float) -> None:
    _, _, classifier = _models()
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        PGD(classifier, eps=eps, norm=norm)


@SETTINGS
@given(steps=st.integers(max_value=-1) | st.floats(0, 10).filter(lambda v: v != int(v)))
def test_steps_must_be_a_non_negative_integer(steps: float) -> None:
    encoder, projector, _ = _models()
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        InstanceWiseAttack(encoder, projector, steps=steps)  # type: ignore[arg-type]


@st.composite
def views(draw: st.DrawFn) -> list[torch.Tensor]:
    num_views = draw(st.integers(2, 4))
    batch = draw(st.integers(2, 6))
    dim = draw(st.integers(1, 16))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3, 1e30]))
    out = [
        torch.randn(batch, dim, generator=g, dtype=torch.float64) * scale for _ in range(num_views)
    ]
    if draw(st.booleans()):  # a zero row: its direction is undefined, the loss must stay finite
        out[draw(st.integers(0, num_views - 1))][draw(st.integers(0, batch - 1))] = 0.0
    return out


@SETTINGS
@given(zs=views(), temperature=st.floats(0.05, 2.0), seed=st.integers(0, 2**16))
def test_nt_xent_is_finite_and_blind_to_the_batch_order(
    zs: list[torch.Tensor], temperature: float, seed: int
) -> None:
    loss = nt_xent_loss(*zs, temperature=temperature)
    assert loss.shape == ()
    assert bool(torch.isfinite(loss))
    assert float(loss) >= -1e-9
    permutation = torch.randperm(zs[0].shape[0], generator=torch.Generator().manual_seed(seed))
    permuted = nt_xent_loss(*(z[permutation] for z in zs), temperature=temperature)
    torch.testing.assert_close(permuted, loss, rtol=1e-9, atol=1e-9)
    reversed_views = nt_xent_loss(*zs[::-1], temperature=temperature)
    torch.testing.assert_close(reversed_views, loss, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(zs=views())
def test_nt_xent_in_float32_is_finite(zs: list[torch.Tensor]) -> None:
    loss = nt_xent_loss(*(z.float() for z in zs))
    assert loss.dtype == torch.float32
    assert bool(torch.isfinite(loss))
