"""eval_mode: switches modules to eval mode for a block and restores each one's mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_contrastive.modes import eval_mode


class _FrozenInside(nn.Module):
    """A module whose ``train`` keeps its inner part in eval mode (like a linear probe)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.BatchNorm1d(2)
        self.head = nn.Linear(2, 2)

    def train(self, mode: bool = True) -> _FrozenInside:
        super().train(mode)
        self.frozen.eval()
        return self


def test_modules_are_in_eval_mode_inside_and_restored_after() -> None:
    training, evaluating = nn.BatchNorm1d(2).train(), nn.Dropout().eval()
    with eval_mode(training, evaluating):
        assert not training.training
        assert not evaluating.training
    assert training.training
    assert not evaluating.training


def test_modes_are_restored_when_the_block_raises() -> None:
    model = nn.BatchNorm1d(2).train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training


def test_running_statistics_are_untouched_inside() -> None:
    model = nn.BatchNorm1d(2).train()
    with eval_mode(model):
        model(torch.randn(8, 2) * 5 + 3)
    assert torch.equal(model.running_mean, torch.zeros(2))
    assert int(model.num_batches_tracked) == 0


def test_restoring_goes_through_the_module_s_own_train() -> None:
    model = _FrozenInside().train()
    with eval_mode(model):
        assert not model.head.training
    assert model.training
    assert model.head.training
    assert not model.frozen.training  # its train() keeps it in eval mode
