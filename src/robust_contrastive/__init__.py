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
    from .models import ProjectionHead, RoCLEncoder
    from .registry import ChecksumError, PretrainedModel, list_pretrained, register_pretrained
    from .training import RoCLTrainer, TrainConfig, TrainResult

# The package's version, defined here only (pyproject.toml reads it).
__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "EOTPGD": "attacks",
    "PGD": "attacks",
    "InstanceWiseAttack": "attacks",
    "autoattack": "attacks",
    "SimCLRAugmentation": "augment",
    "ImageDataset": "data",
    "load_dataset": "data",
    "load_sample": "data",
    "train_val_split": "data",
    "FinetuneConfig": "evaluation",
    "RobustClassifier": "evaluation",
    "RobustLinearProbe": "evaluation",
    "RobustnessReport": "evaluation",
    "Threat": "evaluation",
    "TransformationSmoothedClassifier": "evaluation",
    "evaluate_robustness": "evaluation",
    "finetune": "evaluation",
    "transfer_accuracy": "evaluation",
    "nt_xent_loss": "losses",
    "attach_evaluation": "model_card",
    "write_model_card": "model_card",
    "ProjectionHead": "models",
    "RoCLEncoder": "models",
    "ChecksumError": "registry",
    "PretrainedModel": "registry",
    "list_pretrained": "registry",
    "register_pretrained": "registry",
    "RoCLTrainer": "training",
    "TrainConfig": "training",
    "TrainResult": "training",
}

__all__ = [
    "EOTPGD",
    "PGD",
    "ChecksumError",
    "FinetuneConfig",
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
    "load_sample",
    "nt_xent_loss",
    "register_pretrained",
    "train_val_split",
    "transfer_accuracy",
    "write_model_card",
]


# Import a public name's submodule on first access (PEP 562).
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
