"""TransformationSmoothedClassifier (eq. 8) and accuracy_vs_samples (Figure 3d)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import EOTPGD, PGD
from robust_contrastive.evaluation.probe import RobustLinearProbe, accuracy
from robust_contrastive.evaluation.smoothing import (
    TransformationSmoothedClassifier,
    accuracy_vs_samples,
)

NUM_CLASSES = 4
_PALETTE = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.7, 0.7, 0.2]])


def colour_data(n: int, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, 16, 16) in [0, 1] whose mean colour encodes the label (n,)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    colours = _PALETTE[labels].view(n, 3, 1, 1)  # (n, 3) -> (n, 3, 1, 1)
    images = colours + noise * torch.randn(n, 3, 16, 16, generator=generator)
    return images.clamp(0, 1), labels


def calibrate(encoder: RoCLEncoder) -> RoCLEncoder:
    """Set the BatchNorm statistics of a random encoder with one pass over random images."""
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    encoder.train()
    with torch.no_grad():
        encoder(torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(5)))
    return encoder.eval()


def gaussian_noise(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A random transformation with per-image randomness: additive N(0, 0.05^2) noise."""
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    return (images + 0.05 * noise).clamp(0, 1)


@pytest.fixture
def probe(tiny_encoder: RoCLEncoder) -> RobustLinearProbe:
    """A tiny probe trained on the colour problem (fast path)."""
    images, labels = colour_data(64, seed=0)
    trained = RobustLinearProbe(
        calibrate(tiny_encoder), NUM_CLASSES, epochs=30, batch_size=16, lr=0.5, augment=False
    )
    trained.fit(images, labels, progress=False)
    return trained


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_and_default_transform(probe: RobustLinearProbe, images: torch.Tensor) -> None:
    smoothed = TransformationSmoothedClassifier.from_probe(probe, n_samples=3)
    with torch.no_grad():
        logits = smoothed(images)
    assert logits.shape == (images.shape[0], NUM_CLASSES)
    assert smoothed.encoder is probe.encoder
    assert smoothed.head is probe.head
    assert not smoothed.training


def test_seeded_generators_are_reproducible(probe: RobustLinearProbe, images: torch.Tensor) -> None:
    def logits(generator: torch.Generator | None) -> torch.Tensor:
        smoothed = TransformationSmoothedClassifier.from_probe(
            probe, n_samples=4, generator=generator
        )
        with torch.no_grad():
            out: torch.Tensor = smoothed(images)
        return out

    torch.testing.assert_close(logits(_generator(0)), logits(_generator(0)), rtol=0, atol=0)
    assert not torch.equal(logits(_generator(0)), logits(_generator(1)))
    assert not torch.equal(logits(None), logits(None))  # random without a generator

    smoothed = TransformationSmoothedClassifier.from_probe(probe, generator=_generator(0))
    with torch.no_grad():
        assert not torch.equal(smoothed(images), smoothed(images))  # each call draws anew


def test_one_sample_of_the_identity_is_the_plain_classifier(
    probe: RobustLinearProbe, images: torch.Tensor
) -> None:
    with torch.no_grad():
        expected = probe.head(probe.encoder(images))
        for transform in (lambda x, _g: x, lambda x: x):
            smoothed = TransformationSmoothedClassifier(
                probe.encoder, probe.head, n_samples=1, transform=transform
            )
            torch.testing.assert_close(smoothed(images), expected)


def test_features_are_averaged_over_the_copies(
    probe: RobustLinearProbe, images: torch.Tensor
) -> None:
    batch, n = images.shape[0], 3

    def scale_by_copy(x: torch.Tensor, _generator: torch.Generator | None) -> torch.Tensor:
        """Copy i (rows i*B .. (i+1)*B - 1) is scaled by (i + 1) / n."""
        factors = (torch.arange(n * batch) // batch + 1).float() / n  # (n * B,)
        return x * factors.view(-1, 1, 1, 1)  # (n * B,) -> (n * B, 1, 1, 1)

    smoothed = TransformationSmoothedClassifier(probe.encoder, probe.head, n, scale_by_copy)
    with torch.no_grad():
        features = [probe.encoder(images * (i + 1) / n) for i in range(n)]
        expected = probe.head(torch.stack(features).mean(dim=0))
        torch.testing.assert_close(smoothed(images), expected, rtol=1e-5, atol=1e-5)


def test_train_keeps_the_encoder_in_eval_mode(probe: RobustLinearProbe) -> None:
    smoothed = TransformationSmoothedClassifier.from_probe(probe)
    smoothed.train()
    assert not probe.encoder.training
    assert not probe.head.training


def test_eot_is_at_least_as_strong_as_plain_pgd(probe: RobustLinearProbe) -> None:
    """EOT averages the gradient over the randomness: against the randomised classifier its
    examples reach a higher expected loss (over fresh draws) and a lower accuracy than plain
    PGD's, at the same budget and seeds."""
    images, labels = colour_data(32, seed=1)
    judge = TransformationSmoothedClassifier.from_probe(
        probe, n_samples=16, transform=gaussian_noise, generator=_generator(123)
    )

    def expected_loss_and_accuracy(x: torch.Tensor) -> tuple[float, float]:
        judge.generator = _generator(123)  # the same fresh draws for every candidate
        with torch.no_grad():
            loss = float(F.cross_entropy(judge(x), labels))
        return loss, accuracy(judge, x, labels)

    clean_loss, _ = expected_loss_and_accuracy(images)
    results: dict[str, list[tuple[float, float]]] = {"pgd": [], "eot": []}
    for seed in (0, 1):
        for name in results:
            target = TransformationSmoothedClassifier.from_probe(
                probe, n_samples=1, transform=gaussian_noise, generator=_generator(seed)
            )
            attack: PGD = (
                EOTPGD(target, eps=4 / 255, alpha=1 / 255, steps=5, eot_samples=8)
                if name == "eot"
                else PGD(target, eps=4 / 255, alpha=1 / 255, steps=5)
            )
            adversarial = attack(images, labels, generator=_generator(seed))
            results[name].append(expected_loss_and_accuracy(adversarial))
    eot_loss = sum(loss for loss, _ in results["eot"])
    pgd_loss = sum(loss for loss, _ in results["pgd"])
    assert eot_loss >= pgd_loss
    assert eot_loss / 2 > clean_loss
    assert sum(acc for _, acc in results["eot"]) <= sum(acc for _, acc in results["pgd"])


def test_accuracy_vs_samples(probe: RobustLinearProbe) -> None:
    images, labels = colour_data(16, seed=1)
    counts = (1, 2, 4)
    scores = accuracy_vs_samples(probe.encoder, probe.head, images, labels, counts, seed=0)
    assert list(scores) == list(counts)
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    again = accuracy_vs_samples(probe.encoder, probe.head, images, labels, counts, seed=0)
    assert again == scores


@pytest.mark.parametrize("n_samples", [0, -1, 1.5, True])
def test_bad_sample_counts_raise(probe: RobustLinearProbe, n_samples: object) -> None:
    with pytest.raises(ValueError, match="n_samples"):
        TransformationSmoothedClassifier(probe.encoder, probe.head, n_samples)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample count"):
        accuracy_vs_samples(
            probe.encoder,
            probe.head,
            torch.rand(2, 3, 8, 8),
            torch.zeros(2).long(),
            [n_samples],  # type: ignore[list-item]
        )


def test_bad_inputs_raise(probe: RobustLinearProbe) -> None:
    smoothed = TransformationSmoothedClassifier.from_probe(probe)
    with pytest.raises(TypeError, match="float"):
        smoothed(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        smoothed(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="RobustLinearProbe"):
        TransformationSmoothedClassifier.from_probe(probe.encoder)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_counts is empty"):
        accuracy_vs_samples(
            probe.encoder, probe.head, torch.rand(2, 3, 8, 8), torch.zeros(2).long(), ()
        )
    batch_changing = TransformationSmoothedClassifier(
        probe.encoder, probe.head, 2, transform=lambda x, _g: x[:1]
    )
    with pytest.raises(ValueError, match="one image per input image"):
        batch_changing(torch.rand(2, 3, 8, 8))
    on_cpu = TransformationSmoothedClassifier.from_probe(probe, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"images are on meta: create it with torch.Generator"):
        on_cpu.smoothed_features(torch.zeros(2, 3, 8, 8, device="meta"))
