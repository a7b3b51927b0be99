"""Attacks on one base, [`Attack`][robust_contrastive.attacks.base.Attack]: RoCL's label-free
instance-wise attack, DeACL's feature-distance attack, ACL's pair attack, TRADES' attack, PGD
and EOT-PGD; AutoAttack wraps torchattacks."""

from .auto import autoattack
from .base import Attack
from .contrastive_pair import PairContrastiveAttack
from .distillation import FeatureDistanceAttack
from .instance import ATTACK_LOSSES, InstanceWiseAttack
from .pgd import EOTPGD, PGD
from .trades import TradesAttack

__all__ = [
    "ATTACK_LOSSES",
    "EOTPGD",
    "PGD",
    "Attack",
    "FeatureDistanceAttack",
    "InstanceWiseAttack",
    "PairContrastiveAttack",
    "TradesAttack",
    "autoattack",
]
