"""Training: the one training loop and its objectives, configuration, optimiser and schedule,
checkpoints, the RoCL trainer and DeACL.

The names are imported on first use (PEP 562), so that ``robust_contrastive.training.config``
(the settings, torch-free) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .deacl import DeACLConfig, DeACLObjective, DeACLResult, train_deacl
    from .loop import FitResult, NonFiniteLossError, Objective, TrainingLoop
    from .optim import LARS, warmup_cosine_lr
    from .trainer import RoCLTrainer, TrainResult

# public name -> submodule that defines it (imported on first access), listed by submodule
_LAZY: dict[str, str] = {
    name: module
    for module, names in {
        "checkpoint": ("load_checkpoint", "save_checkpoint"),
        "config": ("TrainConfig",),
        "deacl": ("DeACLConfig", "DeACLObjective", "DeACLResult", "train_deacl"),
        "loop": ("FitResult", "NonFiniteLossError", "Objective", "TrainingLoop"),
        "optim": ("LARS", "warmup_cosine_lr"),
        "trainer": ("RoCLTrainer", "TrainResult"),
    }.items()
    for name in names
}

__all__ = [
    "LARS",
    "DeACLConfig",
    "DeACLObjective",
    "DeACLResult",
    "FitResult",
    "NonFiniteLossError",
    "Objective",
    "RoCLTrainer",
    "TrainConfig",
    "TrainResult",
    "TrainingLoop",
    "load_checkpoint",
    "save_checkpoint",
    "train_deacl",
    "warmup_cosine_lr",
]


# Import a public name's submodule on first access (PEP 562).
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
