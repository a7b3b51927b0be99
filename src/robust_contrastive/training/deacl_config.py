"""[`DeACLConfig`][robust_contrastive.training.deacl_config.DeACLConfig]: the settings of
DeACL's stage 2, torch-free at import (the command line reads the fields' comments and defaults
for ``robust-contrastive train --method deacl --help``).
[`train_deacl`][robust_contrastive.training.deacl.train_deacl] runs them."""

from __future__ import annotations

from dataclasses import dataclass

from .._names import NORMS
from .config import FlatConfig, check_device

__all__ = ["DEACL_CONFIG_NAME", "RESUMABLE_CHANGES", "STUDENT_INITS", "DeACLConfig"]

DEACL_CONFIG_NAME = "deacl_config.json"  # the run's settings in out_dir
STUDENT_INITS: tuple[str, ...] = ("teacher", "scratch")
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")


@dataclass
class DeACLConfig(FlatConfig):
    """DeACL's stage-2 settings; defaults are the official CIFAR-10 ResNet-18 run's
    (``bash_files/DeACL_cifar10_resnet18.sh`` on solo-learn): 100 epochs of PGD-5, SGD lr 0.5,
    batch 256, weight decay 5e-4, 10 warm-up epochs then cosine, lambda = 2."""

    # objective: L = -CS(f_S(x), f_T(x)) - weight * CS(f_S(x'), f_S(x))
    weight: float = 2.0  # lambda of the adversarial term: the script's --trades_k 2
    student_init: str = "teacher"  # "teacher": a copy of the teacher (official); "scratch"

    # training attack x' (PGD away from the teacher's features, the student in eval mode)
    eps: float = 8 / 255  # l-inf radius: the code's --epsilon 8 (/255)
    alpha: float = 2 / 255  # step size: the code's --step_size 2 (/255)
    attack_steps: int = 5  # PGD-5: the code's --num_steps 5
    attack_norm: str = "linf"  # the official attack is l-inf ("linf", "l2" or "l1")
    attack_random_start: bool = True  # uniform start in the eps-ball, as the official attack

    # optimisation (solo-learn: SGD, LinearWarmupCosineAnnealingLR stepped once per epoch)
    epochs: int = 100  # the script's --max_epochs 100
    batch_size: int = 256  # the script's --batch_size 256 (one GPU)
    lr: float = 0.5  # the script's --lr 0.5 (solo-learn scales by batch/256: 0.5 at 256)
    momentum: float = 0.9  # solo-learn's SGD momentum
    weight_decay: float = 5e-4  # the script's --weight_decay 5e-4 (every parameter)
    warmup_epochs: int = 10  # solo-learn's --warmup_epochs default
    warmup_start_lr: float = 0.003  # solo-learn's --warmup_start_lr default
    min_lr: float = 0.0  # solo-learn's --min_lr default (the cosine's floor)

    # data
    crop_padding: int = 4  # the only augmentation used: RandomCrop(32, padding=4) + flip

    # run
    seed: int = 0  # seeds a scratch student, the data order, augmentation and attack starts
    device: str = "auto"  # "auto" = cuda if available else cpu; or any torch device string
    progress: bool = True  # tqdm progress bar
    checkpoint_every: int = 10  # epochs between checkpoints (and one at the end)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        self.check_fields(
            positive_ints=("epochs", "batch_size", "checkpoint_every"),
            counts=("attack_steps", "warmup_epochs", "crop_padding", "seed"),
            positive=("alpha", "lr"),
            non_negative=("eps", "weight", "weight_decay", "warmup_start_lr", "min_lr"),
            choices=(("attack_norm", NORMS), ("student_init", STUDENT_INITS)),
        )
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (BatchNorm statistics need two images), got "
                f"{self.batch_size}."
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        check_device(self.device)
