"""Training: configuration, optimiser and schedule, checkpoints, and the RoCL trainer.

The names are imported on first use (PEP 562), so that ``robust_contrastive.training.config``
(the settings, torch-free) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

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


# Import a public name's submodule on first access (PEP 562).
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
