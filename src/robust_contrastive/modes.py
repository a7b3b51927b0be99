"""Switch modules to eval mode for a block of code, then restore their modes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode inside the ``with`` block; restore each one's mode after.

    The convention of torchattacks: an attack or an evaluation reads the model's mode, switches
    to eval (BatchNorm uses its running statistics and is not updated, dropout is off) and
    restores the mode in ``finally``, so that calling it from a training loop changes nothing.
    Each module is restored with ``module.train(mode)``, so a module that overrides ``train``
    (e.g. a probe whose frozen encoder always stays in eval mode) keeps its own rule.

    Example:
        >>> import torch
        >>> model = torch.nn.BatchNorm1d(3).train()
        >>> with eval_mode(model):
        ...     assert not model.training
        >>> model.training
        True
    """
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
