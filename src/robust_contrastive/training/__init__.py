"""Training: the one training loop and its objectives, configuration, optimiser and schedule,
checkpoints, the RoCL trainer, DeACL, and ACL / DynACL / AIR.

The names are imported on first use (PEP 562), so that ``robust_contrastive.training.config``
(the settings, torch-free) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .acl import ACLObjective, ACLResult, train_acl
    from .acl_config import ACLConfig
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .deacl import DeACLObjective, DeACLResult, train_deacl
    from .deacl_config import DeACLConfig
    from .loop import FitResult, NonFiniteLossError, Objective, TrainingLoop
    from .lpaft import LPAFTResult, kmeans, pseudo_labels, train_lpaft
    from .lpaft_config import LPAFTConfig
    from .optim import LARS, warmup_cosine_lr
    from .trainer import RoCLTrainer, TrainResult

# public name -> submodule that defines it (imported on first access), listed by submodule
_LAZY: dict[str, str] = {
    name: module
    for module, names in {
        "acl": ("ACLObjective", "ACLResult", "train_acl"),
        "acl_config": ("ACLConfig",),
        "checkpoint": ("load_checkpoint", "save_checkpoint"),
        "config": ("TrainConfig",),
        "deacl": ("DeACLObjective", "DeACLResult", "train_deacl"),
        "deacl_config": ("DeACLConfig",),
        "loop": ("FitResult", "NonFiniteLossError", "Objective", "TrainingLoop"),
        "lpaft": ("LPAFTResult", "kmeans", "pseudo_labels", "train_lpaft"),
        "lpaft_config": ("LPAFTConfig",),
        "optim": ("LARS", "warmup_cosine_lr"),
        "trainer": ("RoCLTrainer", "TrainResult"),
    }.items()
    for name in names
}

__all__ = [
    "LARS",
    "ACLConfig",
    "ACLObjective",
    "ACLResult",
    "DeACLConfig",
    "DeACLObjective",
    "DeACLResult",
    "FitResult",
    "LPAFTConfig",
    "LPAFTResult",
    "NonFiniteLossError",
    "Objective",
    "RoCLTrainer",
    "TrainConfig",
    "TrainResult",
    "TrainingLoop",
    "kmeans",
    "load_checkpoint",
    "pseudo_labels",
    "save_checkpoint",
    "train_acl",
    "train_deacl",
    "train_lpaft",
    "warmup_cosine_lr",
]


# Import a public name's submodule on first access (PEP 562).
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
