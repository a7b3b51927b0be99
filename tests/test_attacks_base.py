"""The contract of the attack base, once for every attack (PGD, EOT-PGD, instance-wise, TRADES).

Output detached, in the eps-ball and in [0, 1]; the attacked modules in eval mode during the
attack and back in their modes after (on error too), their ``.grad`` and BatchNorm statistics
untouched; ``perturb`` equal to the validated call; the repr from the hyperparameters; bad
hyperparameters, images and targets refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from robust_contrastive import EOTPGD, PGD, InstanceWiseAttack, ProjectionHead, RoCLEncoder
from robust_contrastive.attacks import Attack, TradesAttack

BUDGETS = {"linf": (8 / 255, 2 / 255), "l2": (0.5, 0.1), "l1": (8.0, 1.0)}


@dataclass
class Models:
    encoder: RoCLEncoder
    projector: ProjectionHead
    classifier: nn.Sequential  # encoder + Linear(32, 5)
    labels: torch.Tensor  # (8,) int64 in [0, 5)


@dataclass(frozen=True)
class Kind:
    """How to build one attack on ``Models`` and what its target is."""

    build: Callable[..., Attack[Any]]
    target: Callable[[Models, torch.Tensor], torch.Tensor | None]
    modules: Callable[[Models], tuple[nn.Module, ...]]


CLASSIFIER = {"modules": lambda m: (m.classifier,)}
KINDS = {
    "PGD": Kind(lambda m, **kw: PGD(m.classifier, **kw), lambda m, x: m.labels, **CLASSIFIER),
    "EOTPGD": Kind(
        lambda m, **kw: EOTPGD(m.classifier, eot_samples=2, **kw),
        lambda m, x: m.labels,
        **CLASSIFIER,
    ),
    "InstanceWiseAttack": Kind(
        lambda m, **kw: InstanceWiseAttack(m.encoder, m.projector, **kw),
        lambda m, x: x.flip(-1),
        lambda m: (m.encoder, m.projector),
    ),
    "TradesAttack": Kind(
        lambda m, **kw: TradesAttack(m.classifier, **kw), lambda m, x: None, **CLASSIFIER
    ),
}
ATTACKS = pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))


@pytest.fixture
def models(tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead) -> Models:
    torch.manual_seed(2)
    classifier = nn.Sequential(RoCLEncoder("resnet18", width=4), nn.Linear(32, 5))
    return Models(tiny_encoder, tiny_projector, classifier, torch.arange(8) % 5)


@ATTACKS
@pytest.mark.parametrize("norm", list(BUDGETS))
def test_output_modes_and_grads(
    models: Models, images: torch.Tensor, kind: Kind, norm: str
) -> None:
    eps, alpha = BUDGETS[norm]
    modules = kind.modules(models)
    for i, module in enumerate(modules):
        module.train(i % 2 == 0)  # mixed modes: each must get its own back
    modes = [module.training for module in modules]
    first = next(modules[0].parameters())
    first.grad = torch.full_like(first, 0.25)  # an existing .grad stays as it is
    statistics = [b.clone() for m in modules for b in m.buffers()]
    seen: list[bool] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: seen.append(m.training)) for m in modules]
    attack = kind.build(models, eps=eps, alpha=alpha, steps=3, norm=norm)
    target = kind.target(models, images)

    adversarial = attack(images, target, generator=torch.Generator().manual_seed(0))

    for hook in hooks:
        hook.remove()
    assert isinstance(attack, Attack)
    assert seen
    assert not any(seen)
    assert [module.training for module in modules] == modes
    assert torch.equal(first.grad, torch.full_like(first, 0.25))
    assert all(p.grad is None for m in modules for p in m.parameters() if p is not first)
    assert all(
        torch.equal(a, b) for a, b in zip(statistics, [b for m in modules for b in m.buffers()])
    )
    assert adversarial.shape == images.shape
    assert adversarial.dtype == images.dtype
    assert not adversarial.requires_grad
    assert adversarial.grad_fn is None
    assert float(adversarial.min()) >= 0
    assert float(adversarial.max()) <= 1
    delta = (adversarial - images).flatten(1)
    size = {"linf": delta.abs().amax(1), "l2": delta.norm(dim=1), "l1": delta.abs().sum(1)}[norm]
    assert float(size.max()) <= eps * (1 + 1e-5) + 1e-6
    assert float(size.max()) > 0
    trusted = attack.perturb(images, target, torch.Generator().manual_seed(0))
    assert torch.equal(trusted, adversarial)
    other_seed = attack(images, target, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(other_seed, adversarial)


class _Broken(nn.Module):
    """A module whose forward fails."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken forward")


@ATTACKS
def test_modes_restored_on_error(models: Models, images: torch.Tensor, kind: Kind) -> None:
    broken = Models(models.encoder, _Broken(), nn.Sequential(_Broken()), models.labels)
    modules = kind.modules(broken)
    for module in modules:
        module.train()
    attack = kind.build(broken, steps=1)
    with pytest.raises(RuntimeError, match="broken forward"):
        attack.perturb(images, kind.target(broken, images))
    assert all(module.training for module in modules)


@ATTACKS
def test_eps_zero_returns_the_images(models: Models, images: torch.Tensor, kind: Kind) -> None:
    attack = kind.build(models, eps=0.0, steps=2)
    assert torch.equal(attack(images, kind.target(models, images)), images)


@ATTACKS
def test_repr_shows_the_hyperparameters(models: Models, kind: Kind) -> None:
    text = repr(kind.build(models, eps=8 / 255, alpha=0.25, steps=3, norm="l2"))
    name = type(kind.build(models)).__name__
    assert text.startswith(f"{name}(eps=0.031373, alpha=0.25, steps=3, norm='l2'")
    assert text.endswith(")")


@ATTACKS
@pytest.mark.parametrize(
    ("setting", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, "eps must be a finite number >= 0"),
        ({"eps": "8/255"}, TypeError, "eps must be a number"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"steps": -1}, ValueError, "steps must be a non-negative integer"),
        ({"norm": "l3"}, ValueError, "unknown norm"),
    ],
)
def test_bad_hyperparameters(
    models: Models, kind: Kind, setting: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        kind.build(models, **setting)


@ATTACKS
def test_bad_images(models: Models, images: torch.Tensor, kind: Kind) -> None:
    attack = kind.build(models, steps=1)
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    for bad, error, match in [
        (images * 2, ValueError, r"\[0, 1\]"),
        (nan, ValueError, "NaN"),
        ((images * 255).to(torch.uint8), TypeError, "float"),
        (images[:, :1], ValueError, r"\(B, 3, H, W\)"),
    ]:
        with pytest.raises(error, match=match):
            attack(bad, kind.target(models, images))


def test_bad_targets(models: Models, images: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(TypeError, match="integer"):
        PGD(models.classifier)(images, images)  # positives where labels belong
    with pytest.raises(ValueError, match=r"positives must be \(B, 3, H, W\)"):
        InstanceWiseAttack(models.encoder, models.projector)(images, models.labels)
    with pytest.raises(TypeError, match="takes no target"):
        TradesAttack(models.classifier)(images, generator)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs the labels"):
        PGD(models.classifier).perturb(images, None)
