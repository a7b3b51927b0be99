from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import EOTPGD, PGD, autoattack

NUM_CLASSES = 4


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 16, 16) images in [0, 1] whose class is a faint colour cast over noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    palette = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    noise = torch.rand(n, 3, 16, 16, generator=g) * 0.6 + 0.2
    images = noise + 0.1 * (palette[labels] - 0.5).view(n, 3, 1, 1)  # (n, 3) -> (n, 3, 1, 1)
    return images.clamp(0, 1), labels


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    """A tiny CIFAR ResNet + linear head trained to high clean accuracy on the synthetic task.

    Training is chaotic: a 1-ulp difference between CPU kernels (AVX2, AVX-512, the default
    ones; in float64 too) grows into different weights within 150 Adam steps, so the fixture
    must suit every trajectory, not only the one of the machine it was written on. The learning
    rate decays to zero (cosine), so training ends converged rather than mid-oscillation: with a
    constant lr of 1e-2 (and a 0.15 colour cast) the clean accuracy was 0.90 on AVX2 and AVX-512
    kernels but 0.70 on the default ones; decayed, it was 0.99-1.0 on 17 trajectories (three
    kernel sets, initial weights perturbed by 1e-6), with PGD accuracies at most 0.21 (l-inf),
    0.54 (l2) and 0.05 (l1). The faint cast (0.1) keeps the margins small enough for the
    attacks to bite.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(RoCLEncoder(width=4), nn.Linear(32, NUM_CLASSES))
    images, labels = _synthetic(512, seed=1)
    steps = 150
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        idx = torch.randint(0, 512, (64,), generator=g)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def test_data() -> tuple[torch.Tensor, torch.Tensor]:
    return _synthetic(128, seed=3)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def test_the_fixture_classifier_is_accurate(
    classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    assert _accuracy(classifier, *test_data) > 0.9


@pytest.mark.parametrize(
    ("norm", "eps", "alpha"), [("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.1), ("l1", 12.0, 2.0)]
)
def test_pgd_lowers_accuracy_and_stays_in_the_ball(
    classifier: nn.Module,
    test_data: tuple[torch.Tensor, torch.Tensor],
    norm: str,
    eps: float,
    alpha: float,
) -> None:
    images, labels = test_data
    adv = PGD(classifier, eps=eps, alpha=alpha, steps=10, norm=norm)(
        images, labels, generator=torch.Generator().manual_seed(0)
    )
    clean, robust = _accuracy(classifier, images, labels), _accuracy(classifier, adv, labels)
    assert robust < clean - 0.1
    assert adv.min() >= 0
    assert adv.max() <= 1
    delta = (adv - images).flatten(1)
    size = {"linf": delta.abs().amax(1), "l2": delta.norm(dim=1), "l1": delta.abs().sum(1)}[norm]
    assert size.max() <= eps * (1 + 1e-5) + 1e-6


def test_more_steps_never_raise_robust_accuracy(
    classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_data
    accuracies = []
    for steps in (1, 2, 5, 10, 20):
        attack = PGD(classifier, eps=4 / 255, alpha=1 / 255, steps=steps)
        adv = attack(images, labels, generator=torch.Generator().manual_seed(0))
        accuracies.append(_accuracy(classifier, adv, labels))
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[-1] <= _accuracy(classifier, images, labels)


def test_eot_on_a_deterministic_model_equals_pgd(
    classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_data[0][:16], test_data[1][:16]
    pgd = PGD(classifier, steps=3, keep_first_success=False)(
        images, labels, generator=torch.Generator().manual_seed(4)
    )
    eot = EOTPGD(classifier, steps=3, eot_samples=3)(
        images, labels, generator=torch.Generator().manual_seed(4)
    )
    assert torch.allclose(pgd, eot, atol=1e-6)


def test_bad_input(classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = test_data
    with pytest.raises(ValueError, match="eot_samples"):
        EOTPGD(classifier, eot_samples=0)
    with pytest.raises(ValueError, match="labels must have shape"):
        PGD(classifier)(images, labels[:3])
    with pytest.raises(TypeError, match="integer"):
        PGD(classifier)(images, labels.float())


def test_agrees_with_torchattacks_pgd(
    classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    images, labels = test_data
    ours = PGD(classifier, eps=4 / 255, alpha=1 / 255, steps=10)(
        images, labels, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    theirs = torchattacks.PGD(classifier, eps=4 / 255, alpha=1 / 255, steps=10)(images, labels)
    ours_acc, theirs_acc = (_accuracy(classifier, x, labels) for x in (ours, theirs))
    assert abs(ours_acc - theirs_acc) <= 0.05
    assert ours_acc <= theirs_acc + 0.02  # keeping fooling iterates is never weaker


def test_autoattack_on_channels_last_images(
    classifier: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    pytest.importorskip("torchattacks")
    images, labels = test_data[0][:6], test_data[1][:6]
    # torch.from_numpy(hwc).permute(0, 3, 1, 2) gives channels_last memory, a FAB pitfall.
    images = images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    adv = autoattack(classifier, images, labels, eps=8 / 255, num_classes=NUM_CLASSES)
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6
    assert _accuracy(classifier, adv, labels) <= _accuracy(classifier, images, labels)


def test_autoattack_without_the_extra(
    classifier: nn.Module,
    test_data: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.import_module

    def missing(name: str, package: str | None = None) -> object:
        if name == "torchattacks":
            raise ImportError("No module named 'torchattacks'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"robust-contrastive\[eval\]"):
        autoattack(classifier, *test_data, num_classes=NUM_CLASSES)
