"""The one training loop (robust_contrastive.training.loop) with a toy objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from robust_contrastive.training.loop import (
    NonFiniteLossError,
    Objective,
    TrainingLoop,
    steps_per_epoch,
)


class _Regression(Objective):
    """Least squares of a linear model; a frozen 'teacher' (used, not trained) scales targets."""

    name = "toy"
    metrics = ("loss", "loss_mse", "train_clean_acc")

    def __init__(self) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.student = nn.Linear(4, 1)
            self.teacher = nn.Linear(1, 1).requires_grad_(False)
        self.epochs_started: list[int] = []
        self.poison_at: int | None = None  # a global step whose loss becomes NaN
        self.calls = 0

    def modules(self) -> dict[str, nn.Module | None]:
        return {"student": self.student, "unused": None}

    def start_epoch(self, epoch: int) -> None:
        self.epochs_started.append(epoch)

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        noise = 0.01 * torch.randn(y.shape, generator=generator)
        prediction = self.student(x).squeeze(1)
        loss = ((prediction - self.teacher(y[:, None]).squeeze(1) - noise) ** 2).mean()
        if self.poison_at is not None and self.calls == self.poison_at:
            loss = loss * float("nan")
        self.calls += 1
        # "accuracy": the fraction of rows of the batch: checks the per-image weighting
        share = torch.tensor(float(x.shape[0]))
        return loss, torch.stack((loss.detach(), loss.detach(), share))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=generator)
    return x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def _loop(objective: _Regression, out_dir: Path | None = None, **kwargs: Any) -> TrainingLoop:
    optimizer = torch.optim.SGD(objective.student.parameters(), lr=0.05, momentum=0.9)
    settings: dict[str, Any] = {
        "epochs": 4,
        "batch_size": 4,
        "lr_at": lambda epoch: 0.05 * (1 - epoch / 8),
        "order_generator": torch.Generator().manual_seed(0),
        "generator": torch.Generator().manual_seed(1),
        "out_dir": out_dir,
        "config": {"lr": 0.05, "device": "cpu"},
        "config_name": "toy_config.json",
        "resumable": ("device",),
        "progress": False,
    }
    settings.update(kwargs)
    return TrainingLoop(objective, optimizer, **settings)


def test_steps_per_epoch() -> None:
    assert steps_per_epoch(10, 4, drop_last=False, min_last=2) == 3  # 4 + 4 + 2
    assert steps_per_epoch(9, 4, drop_last=False, min_last=2) == 2  # a last batch of 1: dropped
    assert steps_per_epoch(9, 4, drop_last=False, min_last=1) == 3
    assert steps_per_epoch(10, 4, drop_last=True, min_last=1) == 2


def test_records_in_one_vocabulary_and_per_image_means(tmp_path: Path) -> None:
    objective = _Regression()
    result = _loop(objective, tmp_path).run(_data())
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert objective.epochs_started == [0, 1, 2, 3]
    first = result.history[0]
    assert set(first) == {"epoch", "lr", *objective.metrics, "images_per_s", "seconds"}
    # batches of 4, 4 and 2 images: the per-image mean of the batch sizes is (16 + 16 + 4) / 10
    assert first["train_clean_acc"] == pytest.approx(3.6)
    assert result.history[-1]["loss"] < first["loss"]
    assert first["lr"] == pytest.approx(0.05 * (1 - (0 + 2 / 3) / 8))  # the last step's
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert (tmp_path / "toy_config.json").exists()
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    assert result.best_epoch is None


def test_selection_keeps_the_best_epoch_earliest_among_ties() -> None:
    objective = _Regression()
    scores = iter([0.2, 0.7, 0.7, 0.1])
    kept: dict[int, torch.Tensor] = {}

    def validate() -> dict[str, float]:
        kept[len(kept) + 1] = objective.student.weight.detach().clone()
        return {"val_clean_acc": next(scores)}

    result = _loop(objective).run(_data(), validate=validate, select="val_clean_acc")
    assert result.best_epoch == 2
    assert [r["best"] for r in result.history] == [True, True, False, False]
    assert torch.equal(objective.student.weight, kept[2])


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = _Regression()
    expected = _loop(reference, tmp_path / "a").run(_data())

    first = _Regression()
    _loop(first, tmp_path / "b", epochs=2).run(_data())  # a run cut after two epochs
    resumed = _Regression()
    loop = _loop(resumed, tmp_path / "b")
    result = loop.run(_data(), resume=True)
    assert torch.equal(resumed.student.weight, reference.student.weight)
    assert [r["loss"] for r in result.history] == [r["loss"] for r in expected.history]
    assert resumed.epochs_started == [2, 3]


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    _loop(_Regression(), tmp_path, epochs=1).run(_data())
    changed = _loop(_Regression(), tmp_path, config={"lr": 0.1, "device": "cuda"})
    with pytest.raises(ValueError, match=r"config differs \(lr: now 0.1, checkpoint 0.05\)"):
        changed.run(_data(), resume=True)


def test_a_non_finite_loss_names_the_step_and_the_intact_checkpoint(tmp_path: Path) -> None:
    objective = _Regression()
    _loop(objective, tmp_path, epochs=1).run(_data())
    objective.poison_at = objective.calls + 1  # epoch 2, step 2 of the next run
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2: loss=nan.*\(epoch 1\)"):
        _loop(objective, tmp_path, epochs=3).run(_data(), resume=True)


def test_no_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="no batch of at least 2"):
        _loop(_Regression(), batch_size=4).run((torch.zeros(1, 4), torch.zeros(1)))


def test_metrics_must_start_with_the_total_loss(tmp_path: Path) -> None:
    objective = _Regression()
    objective.metrics = ("mse", "loss")
    with pytest.raises(ValueError, match="must start with 'loss'"):
        _loop(objective, tmp_path).run(_data())
    assert not (tmp_path / "toy_config.json").exists()  # refused before writing anything
