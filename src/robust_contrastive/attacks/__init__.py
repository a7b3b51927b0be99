"""Attacks: the label-free instance-wise attack of RoCL, sharing one projected step."""

from .instance import ATTACK_LOSSES, InstanceWiseAttack

__all__ = ["ATTACK_LOSSES", "InstanceWiseAttack"]
