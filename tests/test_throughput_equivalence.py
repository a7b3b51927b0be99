"""The original algorithm (``tests.reference``, the benchmark's baseline) and RoCLTrainer compute
the same loss.

``tests/reference/original_rocl.py`` holds a plain implementation of the original RoCL step;
these tests feed it the views t(x), t'(x) and the attack start that ``RoCLTrainer.compute_loss``
draws, and compare the losses, the adversaries and BatchNorm's running statistics. They also check
the BatchNorm folding used by the attack and the encoder-work counts the benchmark reports.

The step comparisons run in float64 (models, views and attack start). The two implementations
order their float operations differently (cached positives, clamp-then-project, folded
BatchNorm, channels_last convolutions), so in float32 they agree only to rounding, and the
attack's sign ascent turns a rounding difference that flips the sign of a near-zero gradient
coordinate into a 2 * alpha step: whether that happens depends on the CPU's kernels (AVX2,
AVX-512, the default ones). In float64 the paths agree to ~1e-16, far below any gradient
coordinate the sign reads, so the adversaries must match to 1e-12 and every later difference is
rounding. The loss itself stays float32 (``RoCLTrainer`` casts the latents to float32), hence the
1e-5 relative tolerance on the losses (1e-4 of their scale on the gradients).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig
from robust_contrastive.losses import nt_xent_loss
from robust_contrastive.training.folding import FoldedEncoder
from tests.reference import (
    OriginalRoCL,
    counted_units,
    library_views,
    original_nt_xent,
    units_baseline,
    units_library,
)

# Width 8: torch 2.14.1's CPU conv backward crashes on channels_last layers of 4 channels.
SMALL = TrainConfig(
    width=8,
    projection_hidden_dim=32,
    projection_dim=16,
    batch_size=8,
    image_size=16,
    epochs=1,
    device="cpu",
    progress=False,
    channels_last=False,
    attack_fold_batchnorm=False,
)


@pytest.fixture
def batch() -> torch.Tensor:
    """(8, 3, 16, 16) uint8."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=generator)


def _trained_statistics(trainer: RoCLTrainer) -> RoCLTrainer:
    """The trainer, its encoder's BatchNorms given :func:`_random_batchnorm` statistics."""
    _random_batchnorm(trainer.encoder)
    return trainer


def _random_batchnorm(encoder: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters (the same for
    every encoder of a config), so that the eval-mode attack depends on them."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))


def _float64(trainer: RoCLTrainer) -> RoCLTrainer:
    """The trainer, its encoder and projector cast to float64 in place (the optimiser keeps the
    same parameters); feed it float64 images in [0, 1]."""
    trainer.encoder.double()
    trainer.projector.double()
    return trainer


def _baseline(cfg: TrainConfig) -> OriginalRoCL:
    return OriginalRoCL.from_trainer(_float64(_trained_statistics(RoCLTrainer(cfg))))


def _buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


def test_original_nt_xent_equals_the_library_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(6, 5, generator=generator) for _ in range(3)]
    for v in (2, 3):
        expected = nt_xent_loss(*views[:v], temperature=0.5)
        actual = original_nt_xent(torch.cat(views[:v]), v, 0.5)
        assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def _library_adversary(library: RoCLTrainer, images: torch.Tensor) -> torch.Tensor:
    """The adversary ``library.compute_loss(images)`` will make next: its step's attack, with a
    copy of its generator where compute_loss's will be after the two views (the trainer's own
    state is left as it is)."""
    generator = torch.Generator()
    generator.set_state(library.generator.get_state())
    t1 = library.augment(images, generator)
    t2 = library.augment(images, generator)
    return library._step_attack().perturb(t1, t2, generator)


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """max |actual - expected| <= rel * max |expected|: rounding relative to the tensor's scale
    (entries near zero get no relative tolerance of their own)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * float(expected.abs().max()))


def test_baseline_loss_equals_compute_loss(batch: torch.Tensor) -> None:
    library = _float64(_trained_statistics(RoCLTrainer(SMALL)))
    baseline = _baseline(SMALL)
    images = batch.double() / 255
    t1, t2, start = library_views(library, images)  # what compute_loss draws next
    assert t1.dtype == start.dtype == torch.float64

    # The attack alone: the library's (cached positives, project-then-clamp) starts from
    # ``start`` and reaches the baseline's adversary (every step forwards cat(x, t'(x))).
    adv = _library_adversary(library, images)
    torch.testing.assert_close(adv, baseline.attack(t1, t2, start), rtol=0, atol=1e-12)

    loss, parts = library.compute_loss(images)
    loss_b, parts_b = baseline.loss(t1, t2, start)
    torch.testing.assert_close(parts.double(), parts_b, rtol=1e-5, atol=0)
    # The regulariser's forward runs first in both: BatchNorm's running statistics agree.
    stats, stats_b = _buffers(library.encoder), _buffers(baseline.encoder)
    assert stats.keys() == stats_b.keys()
    for key in stats:
        torch.testing.assert_close(stats[key], stats_b[key], rtol=1e-12, atol=1e-12)
    # And so do the gradients of the step.
    loss.backward()
    loss_b.backward()
    for p, q in zip(library.encoder.parameters(), baseline.encoder.parameters()):
        assert p.grad is not None
        assert q.grad is not None
        _assert_close_to_scale(p.grad, q.grad, 1e-4)


@pytest.mark.parametrize(
    "changes",
    [
        {"attack_fold_batchnorm": True},
        {"attack_fold_batchnorm": True, "channels_last": True},
    ],
)
def test_exact_speed_options_keep_the_loss(batch: torch.Tensor, changes: dict[str, Any]) -> None:
    cfg = replace(SMALL, **changes)
    library = _float64(_trained_statistics(RoCLTrainer(cfg)))
    baseline = _baseline(SMALL)
    images = batch.double() / 255
    t1, t2, start = library_views(library, images)
    # The folded (and channels_last) attack reaches the baseline's adversary...
    adv = _library_adversary(library, images)
    torch.testing.assert_close(adv, baseline.attack(t1, t2, start), rtol=0, atol=1e-12)
    # ... and the step's loss is the baseline's.
    _, parts = library.compute_loss(images)
    _, parts_b = baseline.loss(t1, t2, start)
    torch.testing.assert_close(parts.double(), parts_b, rtol=1e-5, atol=0)


def test_step_attack_refreshes_the_folded_encoder(batch: torch.Tensor) -> None:
    trainer = RoCLTrainer(replace(SMALL, attack_fold_batchnorm=True))
    trainer.fit(torch.cat([batch, batch]))  # two steps: the weights move after the first
    attack = trainer._step_attack()  # refreshes from the trained weights
    folded = attack.encoder
    assert folded is not trainer.encoder
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters())
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    trainer.encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), trainer.encoder(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_folded_encoder_matches_eval_mode(arch: str) -> None:
    torch.manual_seed(0)
    encoder = RoCLEncoder(arch, width=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    _random_batchnorm(encoder)
    encoder.eval()
    folded = FoldedEncoder(encoder)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(folded.module(x), encoder(x), rtol=1e-4, atol=1e-5)
        for p in encoder.parameters():
            p.mul_(1.05)
        encoder.bn1.running_mean.add_(0.1)
        folded.refresh()
        torch.testing.assert_close(folded.module(x), encoder(x), rtol=1e-4, atol=1e-5)
    assert encoder.training is False
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())  # untouched


def test_encoder_work_counts() -> None:
    assert units_baseline(7) == 43
    assert units_library(replace(SMALL, attack_steps=7)) == 30
    shared = replace(SMALL, attack_steps=7, regularizer_forward="shared")
    assert units_library(shared) == 24
    assert units_library(replace(SMALL, adversarial=False)) == 6
    # Counted with a forward hook on a real step of each (2 attack steps to stay fast).
    cfg = replace(SMALL, attack_steps=2)
    assert counted_units("baseline", cfg) == units_baseline(2)
    for variant in (cfg, replace(cfg, regularizer_forward="shared", attack_fold_batchnorm=True)):
        assert counted_units("rocl", variant) == units_library(variant)
    simclr = replace(cfg, adversarial=False)
    assert counted_units("simclr", simclr) == 6


@pytest.mark.parametrize("name", ["attack_fold_batchnorm", "compile", "channels_last"])
def test_speed_options_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{name: "yes"})
