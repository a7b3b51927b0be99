"""The settings of the SLF / ALF / AFF evaluation protocol, torch-free at import (the command
line reads the fields' comments and defaults for ``robust-contrastive protocol --help``).

[`evaluate_protocol`][robust_contrastive.evaluation.protocol.evaluate_protocol] runs them; the
class is re-exported as
[`robust_contrastive.evaluation.ProtocolConfig`][robust_contrastive.protocol_config.ProtocolConfig].
"""

from __future__ import annotations

from dataclasses import dataclass

from .training.config import FlatConfig, check_device, check_milestones

__all__ = ["PROTOCOL_AUGMENTATIONS", "PROTOCOL_MODES", "PROTOCOL_SELECTIONS", "ProtocolConfig"]

# SLF: standard linear fine-tuning (frozen encoder, clean images); ALF: adversarial linear
# fine-tuning (frozen encoder, PGD images); AFF: adversarial full fine-tuning with TRADES.
PROTOCOL_MODES: tuple[str, ...] = ("slf", "alf", "aff")
PROTOCOL_AUGMENTATIONS: tuple[str, ...] = ("crop_flip", "none")
PROTOCOL_SELECTIONS: tuple[str, ...] = ("clean", "robust")


@dataclass
class ProtocolConfig(FlatConfig):
    """One evaluation protocol for every encoder: SLF, ALF and AFF with the RobustSSL
    benchmark's budgets (Xu et al.'s ``RobustSSL_Benchmark``,
    ``Finetuning_Methods/Vanilla_Finetuning/vanilla_finetuning.py`` for the argument defaults
    and ``utils.py`` for ``setup_hyperparameter``, the attacks and TRADES; derived from DynACL's
    ``test_LF.py`` / ``test_AFF.py``).

    The benchmark tunes the learning rate and milestones per pre-training method (SLF / ALF of
    ACL and DynACL decay at 10 and 20, ACL's AFF runs 100 epochs); this protocol uses one
    setting for all: 25 epochs, lr x0.1 from epochs 15 and 20, SGD momentum 0.9, weight decay
    2e-4; SLF / ALF at lr 0.01, batch 512, AFF at lr 0.1, batch 128 (the benchmark's CIFAR-10
    values). The epoch is chosen on a validation split, never on test images.
    """

    # schedule (vanilla_finetuning.py: --epochs 25, --decreasing_lr 15,20, SGD)
    epochs: int = 25  # epochs of every mode (the benchmark's 25)
    milestones: tuple[int, ...] = (15, 20)  # lr x0.1 from these 0-based epochs (the
    # benchmark's MultiStepLR milestones 15, 20)
    momentum: float = 0.9  # SGD momentum (the benchmark's)
    weight_decay: float = 2e-4  # SGD weight decay (the benchmark's --weight-decay 2e-4)
    linear_lr: float = 0.01  # SLF / ALF learning rate (setup_hyperparameter: 0.01 on CIFAR-10)
    linear_batch_size: int = 512  # SLF / ALF batch (setup_hyperparameter: 512)
    aff_lr: float = 0.1  # AFF learning rate (setup_hyperparameter: 0.1)
    aff_batch_size: int = 128  # AFF batch (setup_hyperparameter: 128)
    trades_beta: float = 6.0  # AFF: TRADES' beta (the benchmark's LAMBDA2 = 6)
    augment: str = "crop_flip"  # training images of every mode: 4-pixel-padded random crop +
    # horizontal flip (the benchmark's transform_train), or "none"

    # attacks (utils.py: pgd_attack, trades_loss; vanilla_finetuning.py: --epsilon, --step-size)
    eps: float = 8 / 255  # l-inf radius of every attack (the benchmark's 8/255)
    alpha: float = 2 / 255  # PGD / TRADES step size (the benchmark's 2/255)
    train_attack_steps: int = 10  # ALF's PGD and AFF's TRADES attack steps (--num-steps-train);
    # also the PGD of the validation score that picks the epoch
    test_attack_steps: int = 20  # PGD steps of the reported robust accuracy (PGD-20)
    autoattack: bool = True  # also report AutoAttack standard (l-inf 8/255; needs torchattacks)
    slf_select: str = "clean"  # what picks SLF's epoch on val: "clean" accuracy, or "robust"
    # (PGD); ALF and AFF pick on PGD accuracy, as the benchmark's best_atacc

    # evaluation and run
    n_test_images: int | None = None  # evaluate a seeded random subset of the test images
    # (default: all)
    n_autoattack_images: int | None = None  # run AutoAttack on a seeded random subset of this
    # many of them, within PGD-20's (AutoAttack costs far more); default: PGD-20's images
    sanity_checks: bool = True  # gradient-masking checks of evaluate_robustness on each model
    seed: int = 0  # seeds every head, data order, augmentation and attack start
    device: str = "auto"  # "auto" = cuda if available else cpu; or any torch device string

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        self.check_fields(
            positive_ints=("epochs", "linear_batch_size", "aff_batch_size", "test_attack_steps"),
            counts=("train_attack_steps", "seed"),
            positive=("alpha", "linear_lr", "aff_lr"),
            non_negative=("eps", "weight_decay", "trades_beta"),
            flags=("autoattack", "sanity_checks"),
            choices=(("augment", PROTOCOL_AUGMENTATIONS), ("slf_select", PROTOCOL_SELECTIONS)),
        )
        if self.aff_batch_size < 2:
            raise ValueError(
                f"aff_batch_size must be >= 2 (BatchNorm statistics), got {self.aff_batch_size}."
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        self.milestones = check_milestones(self.milestones)
        for name in ("n_test_images", "n_autoattack_images"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None (all), got {value!r}.")
        check_device(self.device)
