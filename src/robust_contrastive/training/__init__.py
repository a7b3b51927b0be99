"""Training: configuration, optimiser and schedule, checkpoints, and the RoCL trainer."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .optim import LARS, warmup_cosine_lr
from .trainer import NonFiniteLossError, RoCLTrainer, TrainResult

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
