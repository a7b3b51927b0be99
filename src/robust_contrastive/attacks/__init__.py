"""Attacks: the label-free instance-wise attack of RoCL and class-wise attacks on classifiers.

All of them share one projected step (``robust_contrastive.attacks._steps``).
"""

from .classwise import EOTPGD, PGD, autoattack
from .instance import ATTACK_LOSSES, InstanceWiseAttack

__all__ = ["ATTACK_LOSSES", "EOTPGD", "PGD", "InstanceWiseAttack", "autoattack"]
