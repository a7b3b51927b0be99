"""Dual BatchNorm (ACL, Jiang et al. 2020): a ``clean`` and an ``adv`` BatchNorm per layer, the
convolutions and linear layers shared, and a switch that selects the branch.

ACL and its successors (DynACL, AIR) run the clean views through one set of BatchNorm
statistics and affine weights and the adversarial views through another (the official code's
``batch_norm_multiple`` with ``bn_names=['normal', 'pgd']``); the adversarial branch is the
one evaluated and saved. These helpers add the two branches to any module without changing its
class (a [`RoCLEncoder`][robust_contrastive.RoCLEncoder] stays a ``RoCLEncoder``):

- [`convert_dual_bn`][robust_contrastive.models.dual_bn.convert_dual_bn] replaces every
  BatchNorm of a module by a [`DualBatchNorm`][robust_contrastive.models.dual_bn.DualBatchNorm]
  whose two branches start as copies of it;
- [`bn_branch`][robust_contrastive.models.dual_bn.bn_branch] selects a branch for a block of
  code, [`BranchView`][robust_contrastive.models.dual_bn.BranchView] a module that always runs
  through one branch;
- [`collapse_dual_bn`][robust_contrastive.models.dual_bn.collapse_dual_bn] returns a copy with
  plain BatchNorms holding one branch's statistics and affine weights (the adversarial one by
  default): a plain ``RoCLEncoder`` that ``save_pretrained`` writes and every evaluation loads.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BRANCHES",
    "BranchView",
    "DualBatchNorm",
    "bn_branch",
    "collapse_dual_bn",
    "convert_dual_bn",
    "has_dual_bn",
    "set_bn_branch",
]

BRANCHES: tuple[str, ...] = ("clean", "adv")  # the official code's 'normal' and 'pgd'

_M = TypeVar("_M", bound=nn.Module)


def _check_branch(branch: object) -> str:
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {list(BRANCHES)}, got {branch!r}.")
    return str(branch)


class DualBatchNorm(nn.Module):
    """Two BatchNorms of one shape, ``clean`` and ``adv``; ``branch`` says which one runs.

    Args:
        norm: the BatchNorm (1d, 2d or 3d) both branches start as copies of (statistics,
            affine weights, momentum and eps included).
        branch: the branch used until changed (``"clean"`` or ``"adv"``).

    Shapes:
        ``forward(x)``: whatever ``norm`` takes, e.g. (B, C, H, W) for a ``BatchNorm2d`` or
        (B, C) for a ``BatchNorm1d``; the output has the input's shape. Only the selected
        branch's running statistics are updated in training mode.
    """

    def __init__(self, norm: _BatchNorm, branch: str = "adv") -> None:
        super().__init__()
        if not isinstance(norm, _BatchNorm):
            raise TypeError(f"norm must be a BatchNorm module, got {type(norm).__name__}.")
        self.clean = copy.deepcopy(norm)
        self.adv = copy.deepcopy(norm)
        self.branch = _check_branch(branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.adv if self.branch == "adv" else self.clean
        out: torch.Tensor = norm(x)
        return out

    def extra_repr(self) -> str:
        return f"branch={self.branch!r}"


def has_dual_bn(module: nn.Module) -> bool:
    """True if ``module`` holds at least one
    [`DualBatchNorm`][robust_contrastive.models.dual_bn.DualBatchNorm]."""
    return any(isinstance(m, DualBatchNorm) for m in module.modules())


def convert_dual_bn(module: _M, *, inplace: bool = True, branch: str = "adv") -> _M:
    """Replace every BatchNorm of ``module`` by a dual one whose branches are copies of it.

    Args:
        module: any module (an encoder, a projector); a BatchNorm itself is not replaced (pass
            its parent).
        inplace: change ``module`` itself (its other parameters stay the same objects), or a
            deep copy.
        branch: the branch every dual BatchNorm starts on.

    Returns:
        The converted module, of ``module``'s class; its ``state_dict`` keys of BatchNorm
        ``bn`` become ``bn.clean.*`` and ``bn.adv.*``.

    Raises:
        ValueError: ``module`` already holds dual BatchNorms, or an unknown branch.
    """
    _check_branch(branch)
    if has_dual_bn(module):
        raise ValueError("the module already has dual BatchNorms; convert it once.")
    target = module if inplace else copy.deepcopy(module)
    for parent in list(target.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, name, DualBatchNorm(child, branch))
    return target


def set_bn_branch(module: nn.Module, branch: str) -> None:
    """Select ``branch`` in every dual BatchNorm of ``module``."""
    _check_branch(branch)
    for m in module.modules():
        if isinstance(m, DualBatchNorm):
            m.branch = branch


@contextmanager
def bn_branch(module: nn.Module, branch: str) -> Iterator[nn.Module]:
    """Run ``module`` through ``branch`` inside the ``with`` block, then restore each dual
    BatchNorm's previous branch (even on error).

    Example:
        >>> import torch
        >>> from robust_contrastive import RoCLEncoder
        >>> encoder = convert_dual_bn(RoCLEncoder("resnet18", width=4))
        >>> with bn_branch(encoder, "clean"):
        ...     features = encoder(torch.rand(2, 3, 16, 16))
    """
    _check_branch(branch)
    duals = [m for m in module.modules() if isinstance(m, DualBatchNorm)]
    previous = [m.branch for m in duals]
    for m in duals:
        m.branch = branch
    try:
        yield module
    finally:
        for m, b in zip(duals, previous, strict=True):
            m.branch = b


class BranchView(nn.Module):
    """``module`` run through one BatchNorm branch: ``BranchView(model, "adv")(x)`` is
    ``model(x)`` with every dual BatchNorm on ``"adv"`` (restored afterwards).

    The wrapped module is a child, so ``train()`` / ``eval()`` reach it (an attack's eval mode
    included); it holds no parameters of its own.
    """

    def __init__(self, module: nn.Module, branch: str) -> None:
        super().__init__()
        self.module = module
        self.branch = _check_branch(branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with bn_branch(self.module, self.branch):
            out: torch.Tensor = self.module(x)
        return out

    def extra_repr(self) -> str:
        return f"branch={self.branch!r}"


def collapse_dual_bn(module: _M, branch: str = "adv") -> _M:
    """A copy of ``module`` with each dual BatchNorm replaced by its ``branch`` BatchNorm.

    The copy computes what ``module`` computes under ``branch`` (training and eval mode alike)
    and has a plain state dict: collapsing a dual-BN
    [`RoCLEncoder`][robust_contrastive.RoCLEncoder] gives a ``RoCLEncoder`` that
    ``save_pretrained`` / ``from_pretrained`` handle like any other.

    Args:
        module: a module converted by
            [`convert_dual_bn`][robust_contrastive.models.dual_bn.convert_dual_bn]
            (unchanged).
        branch: ``"adv"`` (default: the branch ACL, DynACL and AIR evaluate) or ``"clean"``.

    Raises:
        ValueError: an unknown branch, or a module without dual BatchNorms.
    """
    _check_branch(branch)
    if not has_dual_bn(module):
        raise ValueError("the module has no dual BatchNorm to collapse (see convert_dual_bn).")
    target = copy.deepcopy(module)
    for parent in list(target.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DualBatchNorm):
                setattr(parent, name, getattr(child, branch))
    return target
