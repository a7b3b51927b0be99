"""DeACL (stage 2) on the training loop: the loss and the attack equal the official code's
(tests/reference/deacl.py), a tiny run trains, resumes exactly and leaves the teacher alone."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import FeatureDistanceAttack
from robust_contrastive.training import loop as loop_module
from robust_contrastive.training import save_checkpoint
from robust_contrastive.training.deacl import (
    DeACLConfig,
    DeACLObjective,
    deacl_loss,
    deacl_lr,
    train_deacl,
)
from tests.reference.deacl import (
    official_adv_loss,
    official_attack_loss,
    official_generate_training_ae,
    official_lr_per_epoch,
)
from tests.reference.encoder_work import count_encoder_work

TINY = DeACLConfig(
    epochs=3,
    batch_size=16,
    lr=0.05,
    warmup_epochs=0,
    attack_steps=2,
    student_init="scratch",
    device="cpu",
    progress=False,
    checkpoint_every=1,
)


@pytest.fixture
def teacher() -> RoCLEncoder:
    torch.manual_seed(0)
    return RoCLEncoder("resnet18", width=4).eval()


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=generator)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.0, 3.0])
def test_loss_equals_the_official_definition(weight: float) -> None:
    generator = torch.Generator().manual_seed(1)
    clean, adv, target = (torch.randn(32, 24, generator=generator) for _ in range(3))
    loss, distill, adversarial = deacl_loss(clean, adv, target, weight)
    expected = official_adv_loss(clean, adv, target, weight)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(distill + weight * adversarial, loss, rtol=1e-6, atol=1e-6)
    assert -1 <= float(distill) <= 1
    assert -1 <= float(adversarial) <= 1


def test_loss_gradients_equal_the_official_ones() -> None:
    generator = torch.Generator().manual_seed(2)
    base = [torch.randn(8, 16, generator=generator, dtype=torch.float64) for _ in range(3)]
    ours = [t.clone().requires_grad_(True) for t in base[:2]]
    theirs = [t.clone().requires_grad_(True) for t in base[:2]]
    deacl_loss(ours[0], ours[1], base[2], 2.0)[0].backward()
    official_adv_loss(theirs[0], theirs[1], base[2], 2.0).backward()
    for a, b in zip(ours, theirs, strict=True):
        assert a.grad is not None
        assert b.grad is not None
        torch.testing.assert_close(a.grad, b.grad)


def test_attack_objective_and_iterates_equal_the_official_ones(teacher: RoCLEncoder) -> None:
    torch.manual_seed(3)
    student = RoCLEncoder("resnet18", width=4).double()
    images = torch.rand(6, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        target = teacher.double()(images)
    attack = FeatureDistanceAttack(student, steps=3, random_start=False)
    student.eval()  # the attack runs the student in eval mode (both codes)
    with torch.no_grad():
        ours = attack.objective(images, target) * 256
        theirs = official_attack_loss(student(images), target)
    torch.testing.assert_close(ours, theirs)
    student.train()
    x_adv = attack(images, target)
    expected = official_generate_training_ae(student, images, target, images, num_steps=3)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-12)
    assert student.training  # the attack restores the mode
    assert float((x_adv - images).abs().max()) <= 8 / 255 + 1e-12
    assert not torch.equal(x_adv, images)


def test_attack_target_checks(teacher: RoCLEncoder) -> None:
    attack = FeatureDistanceAttack(teacher)
    images = torch.rand(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        attack(images, torch.rand(3, 32))
    with pytest.raises(TypeError, match="float tensor"):
        attack(images, torch.zeros(4, 32, dtype=torch.long))


def test_lr_schedule_is_solo_learn_warmup_cosine() -> None:
    config = DeACLConfig()
    assert deacl_lr(0.0, config) == pytest.approx(0.003)
    assert deacl_lr(0.7, config) == pytest.approx(0.003)  # stepped once per epoch
    assert deacl_lr(9.0, config) == pytest.approx(0.5)  # pl_bolts reaches lr at W - 1
    assert deacl_lr(10.0, config) == pytest.approx(0.5)
    assert deacl_lr(55.0, config) == pytest.approx(0.25)
    assert deacl_lr(99.0, config) < 0.001
    official = official_lr_per_epoch(0.5, 10, 100, 0.003, 0.0)
    ours = [deacl_lr(epoch + 0.5, config) for epoch in range(100)]
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-12)


def test_tiny_run_trains_saves_and_keeps_the_teacher(
    tmp_path: Path, teacher: RoCLEncoder, images: torch.Tensor
) -> None:
    before = _weights(teacher)
    result = train_deacl(teacher, images, TINY, tmp_path)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    for record in result.history:
        assert -1 <= record["loss_distill"] <= 1
        assert -1 <= record["loss_adv"] <= 1
    after = _weights(teacher)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.training
    assert all(p.requires_grad for p in teacher.parameters())
    assert json.loads((tmp_path / "deacl_config.json").read_text())["weight"] == TINY.weight
    loaded = RoCLEncoder.from_pretrained(tmp_path)
    x = images[:4].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.encoder(x))


def test_frozen_teacher_is_not_trained(teacher: RoCLEncoder, images: torch.Tensor) -> None:
    frozen = copy.deepcopy(teacher)
    student = copy.deepcopy(teacher)
    objective = DeACLObjective(student, frozen, TINY)
    assert list(objective.modules()) == ["student"]
    before = _weights(frozen)
    objective.train()
    loss, stats = objective.loss((images[:8],), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert not frozen.training
    assert student.training
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert stats.shape == (3,)
    assert torch.isfinite(stats).all()


def test_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
    teacher: RoCLEncoder,
    images: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = replace(TINY, epochs=2)
    reference = train_deacl(teacher, images, config, tmp_path / "reference")

    def crash_after_epoch_one(state: dict[str, Any], path: Path) -> Path:
        written = save_checkpoint(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")
        return written

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train_deacl(teacher, images, config, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = train_deacl(teacher, images, config, tmp_path / "resumed", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    ours, theirs = _weights(resumed.encoder), _weights(reference.encoder)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(ValueError, match=r"config differs.*weight: now"):
        train_deacl(teacher, images, replace(config, weight=1.0), tmp_path / "resumed", resume=True)
    other = RoCLEncoder("resnet18", width=4)
    with pytest.raises(ValueError, match="teacher_sha256"):
        train_deacl(other, images, config, tmp_path / "resumed", resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        train_deacl(teacher, images, config, resume=True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"weight": -1.0}, "weight"),
        ({"attack_steps": -1}, "attack_steps"),
        ({"student_init": "random"}, "student_init"),
        ({"batch_size": 1}, "batch_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"attack_norm": "l3"}, "attack_norm"),
    ],
)
def test_bad_config_errors(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DeACLConfig(**changes)


def test_bad_arguments_error(teacher: RoCLEncoder, images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="DeACLConfig"):
        train_deacl(teacher, images, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RoCLEncoder"):
        train_deacl(torch.nn.Linear(2, 2), images, TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        train_deacl(teacher, images[:, :1], TINY)


def test_encoder_work_per_image(teacher: RoCLEncoder, images: torch.Tensor) -> None:
    """Counted by a forward hook on one step: the teacher's forward (1), K attack steps of a
    student forward + input-gradient backward (2K), the student's forward + weight-gradient
    backward of [x, x'] (2 + 4): 7 + 2K units per image, 17 at DeACL's K = 5."""
    config = replace(TINY, attack_steps=5)
    objective = DeACLObjective(copy.deepcopy(teacher), copy.deepcopy(teacher), config)
    objective.train()
    batch = images[:8]
    with count_encoder_work() as total:
        objective.loss((batch,), torch.Generator().manual_seed(0))
    assert total[0] / batch.shape[0] == 7 + 2 * config.attack_steps


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 0.5), ("l1", 2.0)])
def test_attack_contract(teacher: RoCLEncoder, norm: str, eps: float) -> None:
    """Within the ball and [0, 1], the modes restored, no parameter gradient, eps 0 a copy."""
    torch.manual_seed(4)
    student = RoCLEncoder("resnet18", width=4).train()
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        target = teacher(images)
    attack = FeatureDistanceAttack(student, eps=eps, alpha=eps / 4, steps=3, norm=norm)
    x_adv = attack(images, target, torch.Generator().manual_seed(0))
    p = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    assert float((x_adv - images).flatten(1).norm(p=p, dim=1).max()) <= eps * (1 + 1e-5)
    assert float(x_adv.min()) >= 0
    assert float(x_adv.max()) <= 1
    assert student.training
    assert all(q.grad is None for q in student.parameters())
    unchanged = FeatureDistanceAttack(student, eps=0.0)(images, target)
    assert torch.equal(unchanged, images)
