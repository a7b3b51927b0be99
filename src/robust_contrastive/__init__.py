"""robust-contrastive: adversarially robust image encoders without labels (RoCL, NeurIPS 2020).

The public API, listed once in ``__all__``. Images are float tensors in [0, 1], (B, 3, H, W);
normalisation, if any, lives inside the model.
"""

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

__version__ = "0.1.0"

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
