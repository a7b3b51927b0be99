"""robust-contrastive: adversarially robust image encoders without labels (RoCL, NeurIPS 2020).

The public API, listed once in ``__all__``. Images are float tensors in [0, 1], (B, 3, H, W);
normalisation, if any, lives inside the model.

Each name is imported from its submodule on first use (PEP 562), so ``import robust_contrastive``
(and the command line's ``--help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes

if TYPE_CHECKING:
    from .attacks import EOTPGD, PGD, InstanceWiseAttack, autoattack
    from .augment import SimCLRAugmentation
    from .data import ImageDataset, load_dataset, load_sample, train_val_split
    from .evaluation import (
        FinetuneConfig,
        RobustClassifier,
        RobustLinearProbe,
        RobustnessReport,
        Threat,
        TransformationSmoothedClassifier,
        evaluate_robustness,
        finetune,
        transfer_accuracy,
    )
    from .losses import nt_xent_loss
    from .model_card import attach_evaluation, write_model_card
    from .models import ProjectionHead, RoCLEncoder, load_pretrained
    from .registry import ChecksumError, PretrainedModel, list_pretrained, register_pretrained
    from .training import FitResult, RoCLTrainer, TrainConfig, TrainResult

# The package's version, defined here only (pyproject.toml reads it).
__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first access), listed by submodule
_LAZY: dict[str, str] = {
    name: module
    for module, names in {
        "attacks": ("EOTPGD", "PGD", "InstanceWiseAttack", "autoattack"),
        "augment": ("SimCLRAugmentation",),
        "data": ("ImageDataset", "load_dataset", "load_sample", "train_val_split"),
        "evaluation": (
            "FinetuneConfig",
            "RobustClassifier",
            "RobustLinearProbe",
            "RobustnessReport",
            "Threat",
            "TransformationSmoothedClassifier",
            "evaluate_robustness",
            "finetune",
            "transfer_accuracy",
        ),
        "losses": ("nt_xent_loss",),
        "model_card": ("attach_evaluation", "write_model_card"),
        "models": ("ProjectionHead", "RoCLEncoder", "load_pretrained"),
        "registry": ("ChecksumError", "PretrainedModel", "list_pretrained", "register_pretrained"),
        "training": ("RoCLTrainer", "TrainConfig", "TrainResult", "FitResult"),
    }.items()
    for name in names
}

__all__ = [
    "EOTPGD",
    "PGD",
    "ChecksumError",
    "FinetuneConfig",
    "FitResult",
    "ImageDataset",
    "InstanceWiseAttack",
    "PretrainedModel",
    "ProjectionHead",
    "RoCLEncoder",
    "RoCLTrainer",
    "RobustClassifier",
    "RobustLinearProbe",
    "RobustnessReport",
    "SimCLRAugmentation",
    "Threat",
    "TrainConfig",
    "TrainResult",
    "TransformationSmoothedClassifier",
    "__version__",
    "attach_evaluation",
    "autoattack",
    "evaluate_robustness",
    "finetune",
    "list_pretrained",
    "load_dataset",
    "load_pretrained",
    "load_sample",
    "nt_xent_loss",
    "register_pretrained",
    "train_val_split",
    "transfer_accuracy",
    "write_model_card",
]


# Import a public name's submodule on first access (PEP 562).
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
