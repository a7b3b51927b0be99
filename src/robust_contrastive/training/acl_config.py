"""``ACLConfig``: one flat configuration for ACL, DynACL and AIR, with each method's published
defaults (``ACLConfig.for_method``). Torch-free at import: the command line reads the defaults
and the comments below for its ``--help``.

Sources (CIFAR-10, ResNet-18): ACL's ``train_simCLR.py`` (github.com/VITA-Group/
Adversarial-Contrastive-Learning, run with ``--ACL_DS``), DynACL's ``train_DynACL.py``
(github.com/PKU-ML/DYNACL) and AIR's ``pretraining.py`` + ``run.sh`` (github.com/GodXuxilie/
RobustSSL_Benchmark, ``ACL_Methods/AIR_nips2023``, ``DynACL_IR_cifar10``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._names import ARCHS
from .config import FlatConfig, check_device

__all__ = [
    "ACL_METHODS",
    "ACL_REWEIGHTS",
    "ACL_SCHEDULES",
    "METHOD_DEFAULTS",
    "ACLConfig",
]

ACL_CONFIG_NAME = "acl_config.json"  # the run's settings in out_dir
ACL_METHODS: tuple[str, ...] = ("acl", "dynacl", "air")
# How the clean / adversarial terms are re-weighted over training (see ACLConfig.reweight).
ACL_REWEIGHTS: tuple[str, ...] = ("none", "dynacl", "strength")
ACL_SCHEDULES: tuple[str, ...] = ("step", "epoch")  # the learning rate changes every step/epoch

# What each method changes from ACLConfig's defaults (ACL's), from its official script.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "acl": {},
    "dynacl": {
        "dynamic_augmentation": True,  # train_DynACL.py: reload(strength) every K epochs
        "reweight": "dynacl",  # train_DynACL.py: weight_adv = min(1 + (epoch // K) K/T l, 2)
        "key_momentum": 0.99,  # models/resnet_multi_bn.py: resnet18_momentum(m=0.99)
        "lr_schedule": "epoch",  # train_DynACL.py: scheduler.step() once per epoch
    },
    "air": {
        "dynamic_augmentation": True,  # run.sh DynACL_IR: --DynAug
        "reweight": "strength",  # pretraining.py: weight = LAMBDA * (1 - strength)
        "contrastive_scale": 1.0,  # losses.py ACL_IR_Loss: nat (1 - w) + adv (1 + w), no /2
        "sir_weight": 0.5,  # run.sh: --lambda1 0.5
        "air_weight": 0.5,  # run.sh: --lambda2 0.5
    },
}


@dataclass
class ACLConfig(FlatConfig):
    """Settings of an ACL, DynACL or AIR run; the defaults are ACL's official CIFAR-10 run
    (``train_simCLR.py --ACL_DS``). ``ACLConfig.for_method("dynacl")`` (or ``"air"``) gives
    that method's published settings. The comment beside each field (continued on the comment
    lines right below it) is its ``--help`` text."""

    method: str = "acl"  # the method these settings reproduce: acl, dynacl or air (recorded;
    # ACLConfig.for_method sets its defaults)

    # model (ACL's models/resnet_multi_bn.py: a dual-BatchNorm ResNet and projection head)
    arch: str = "resnet18"  # encoder architecture; resnet18 = the official runs'
    width: int = 64  # channels of the first ResNet stage; 64 = the official network, 16 fits
    # a CPU
    normalize: bool = True  # normalise inside the model with ImageNet's mean/std, as the
    # official NormalizeByChannelMeanStd(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

    # objective: L = scale ((1 - w) L_clean + (1 + w) L_adv) + sir_weight SIR + air_weight AIR
    temperature: float = 0.5  # NT-Xent temperature: utils.py nt_xent(x, t=0.5)
    contrastive_scale: float = 0.5  # scale of the two NT-Xent terms: (clean + adv) / 2 in
    # ACL and DynACL; AIR's loss has no / 2 (1.0)
    reweight: str = "none"  # w over training: none (ACL, w = 0); dynacl (train_DynACL.py:
    # w = min(l floor(epoch / K) K / T, 1), epoch from 1); strength (AIR: w = l (1 - s))
    reweight_lambda: float = 2 / 3  # l of the re-weighting: DynACL's --swap_param 2/3, AIR's
    # LAMBDA=2/3
    sir_weight: float = 0.0  # AIR's standard invariant regulariser weight (--lambda1; 0.5 in
    # AIR)
    air_weight: float = 0.0  # AIR's adversarial invariant regulariser weight (--lambda2; 0.5
    # in AIR)
    key_momentum: float = 0.0  # DynACL's momentum (key) encoder: the second view goes through
    # an EMA copy with this momentum (0.99), which is the encoder saved; 0 = none (ACL, AIR)

    # augmentation (SimCLR's: crop, flip, colour jitter 0.4/0.4/0.4/0.1 p 0.8, grayscale 0.2)
    dynamic_augmentation: bool = False  # DynACL's annealing: strength s = 1 - floor(e / K) K /
    # T at 0-based epoch e (jitter, its probability, grayscale probability and crop scale
    # (1 - 0.9 s, 1) scale with s); off = s = 1 (ACL)
    augment_period: int = 50  # K, epochs between strength changes: --reload_frequency 50 (AIR:
    # K = 50)
    image_size: int = 32  # side of the random resized crops (32 for CIFAR)

    # training attack: PGD on the NT-Xent of the adversarial pair, through the adv branch
    eps: float = 8 / 255  # l-inf radius: PGD_contrastive(eps=8/255)
    alpha: float = 2 / 255  # step size: PGD_contrastive(alpha=2/255)
    attack_steps: int = 5  # PGD steps: --pgd_iter 5
    attack_random_start: bool = True  # uniform start in the eps-ball, as the official attack

    # optimisation (LARS, linear warm-up then cosine to min_lr)
    epochs: int = 1000  # --epochs 1000
    batch_size: int = 512  # images per step (two views each): --batch_size 512
    lr: float = 5.0  # --lr 5.0 (LARS)
    momentum: float = 0.9  # LARS momentum (optimizer/lars.py default)
    weight_decay: float = 1e-6  # LARS(weight_decay=1e-6)
    trust_coefficient: float = 1e-3  # LARS eta (optimizer/lars.py default 0.001)
    warmup_epochs: int = 10  # linear warm-up: warmup_steps = 10 epochs
    min_lr: float = 1e-6  # the cosine's floor: cosine_annealing(lr_min=1e-6 / lr) times lr
    lr_schedule: str = "step"  # step: the lr changes every step (ACL, AIR); epoch: once per
    # epoch, epoch 1 at lr 0 (DynACL's LambdaLR stepped per epoch)

    # run
    seed: int = 0  # seeds initialisation, data order, augmentation and attack starts
    device: str = "auto"  # auto = cuda if available else cpu; or cpu, cuda, cuda:1, ...
    progress: bool = True  # show a (tqdm) progress bar
    checkpoint_every: int = 10  # epochs between checkpoints (and one at the end)

    @classmethod
    def for_method(cls, name: str, **overrides: Any) -> ACLConfig:
        """The published settings of ``name`` (``"acl"``, ``"dynacl"`` or ``"air"``), with
        ``overrides`` applied (e.g. ``epochs=1, width=16``).

        Raises:
            ValueError: an unknown method, an override of ``method``, or an invalid setting.
        """
        if name not in METHOD_DEFAULTS:
            raise ValueError(f"unknown method {name!r}; choose one of {list(ACL_METHODS)}.")
        if "method" in overrides:
            raise ValueError("for_method sets the method field: pass it as the name.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ACLConfig fields {unknown}; known: {sorted(known)}.")
        return cls(method=name, **{**METHOD_DEFAULTS[name], **overrides})

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        self.check_fields(
            positive_ints=(
                "width",
                "epochs",
                "batch_size",
                "checkpoint_every",
                "image_size",
                "augment_period",
            ),
            counts=("attack_steps", "warmup_epochs", "seed"),
            positive=("temperature", "lr", "alpha", "trust_coefficient"),
            non_negative=(
                "eps",
                "contrastive_scale",
                "reweight_lambda",
                "sir_weight",
                "air_weight",
                "weight_decay",
                "min_lr",
            ),
            flags=("normalize", "dynamic_augmentation", "attack_random_start"),
            choices=(
                ("method", ACL_METHODS),
                ("arch", ARCHS),
                ("reweight", ACL_REWEIGHTS),
                ("lr_schedule", ACL_SCHEDULES),
            ),
        )
        published = METHOD_DEFAULTS[self.method]
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if published and all(getattr(self, k) == defaults[k] for k in published):
            raise ValueError(
                f"ACLConfig(method={self.method!r}) has ACL's settings, none of "
                f"{self.method}'s ({', '.join(sorted(published))}): build it with "
                f"ACLConfig.for_method({self.method!r}, ...), which applies them."
            )
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (the other images are the negatives), got "
                f"{self.batch_size}."
            )
        for name in ("momentum", "key_momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr}).")
        from ..validation import check_budget  # imports torch: only when validating

        check_budget(self.eps, self.alpha, self.attack_steps, "linf")
        check_device(self.device)
