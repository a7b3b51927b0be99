"""Training: configuration, optimiser and schedule, checkpoints, and the RoCL trainer.

The names are imported on first use (PEP 562), so that ``robust_contrastive.training.config``
(the settings, torch-free) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .optim import LARS, warmup_cosine_lr
    from .trainer import NonFiniteLossError, RoCLTrainer, TrainResult

# public name -> submodule that defines it
_LAZY: dict[str, str] = {
    "LARS": "optim",
    "NonFiniteLossError": "trainer",
    "RoCLTrainer": "trainer",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "warmup_cosine_lr": "optim",
}

__all__ = [
    "LARS",
    "NonFiniteLossError",
    "RoCLTrainer",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "save_checkpoint",
    "warmup_cosine_lr",
]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first access (PEP 562).

    A submodule is an attribute too (``robust_contrastive.evaluation``), as after an eager import.
    """
    module = _LAZY.get(name)
    if module is None:
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise  # a dependency of an existing submodule is missing
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
