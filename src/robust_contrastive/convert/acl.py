"""Checkpoints of ACL (Jiang et al. 2020) and of the codes built on it: DynACL (Luo et al. 2023)
and AIR (Xu et al. 2023) keep its network file, ``models/resnet_multi_bn.py``.

The layout: ``torch.save({"epoch", "state_dict", "optim"})`` (DynACL also ``{"model": ...}``) of
a torchvision-style CIFAR ResNet (3x3 stride-1 stem with padding 1, no max-pool) whose every
BatchNorm is a ``batch_norm_multiple``: ``bn1.bn_list.0`` for the clean branch (``"normal"``) and
``bn1.bn_list.1`` for the adversarial one (``"pgd"``); shortcuts are ``downsample.conv`` /
``downsample.bn.bn_list.K``; a ``NormalizeByChannelMeanStd`` module inside the network stores
ImageNet statistics as the buffers ``normalize.mean`` / ``normalize.std``; the projection head
``fc`` (``fc.fc1..fc3`` with dual ``fc.bn1..bn3``) follows the pooled features.

The authors' evaluation keeps the adversarial branch (``--bnNameCnt 1``: ACL's README, DynACL's
``test_LF.py`` default, the RobustSSL benchmark), drops ``fc`` and keeps the normalisation: so
does this converter by default. Single-BatchNorm files of the same network (``bn_list.0`` only,
ACL trained without ``--ACL_DS``; or plain BatchNorms with ``downsample.0/1``, DynACL++'s
fine-tuned ``resnet.py`` models) are read too.

DynACL's ``train_DynACL.py`` trains a ``resnet18_momentum`` (two such networks, ``encoder_q`` and
the momentum encoder ``encoder_k``) and saves ``model.pt`` with both (``encoder_q.*``,
``encoder_k.*``) besides ``model_encoder_k.pt`` with ``encoder_k`` alone. Its validation, its
pseudo-labelling and DynACL++ use ``encoder_k``: from a two-network file this converter keeps
``encoder_k`` and skips ``encoder_q`` with the heads.
"""

from __future__ import annotations

import os

from ..models import RoCLEncoder
from ._common import (
    DYNACL_MOMENTUM_PREFIX,
    Conversion,
    branch_count,
    build_encoder,
    check_layout,
    normalization,
    read_checkpoint,
    rename_torchvision,
    resolve_branch,
    short,
    state_dict_of,
    strip_prefix,
    summarize,
    warn_skipped,
)

BRANCHES: dict[str, int] = {"clean": 0, "adv": 1}
"""ACL's BatchNorm branches: ``bn_names = ['normal', 'pgd']`` in ``train_simCLR.py``."""
_ALIASES = {"normal": "clean", "pgd": "adv"}


def convert_acl_record(path: str | os.PathLike[str], branch: str = "adv") -> Conversion:
    """[`convert_acl`][robust_contrastive.convert.convert_acl] with the conversion's record."""
    source = str(path)
    state = strip_prefix(state_dict_of(read_checkpoint(path), source), "module.")
    check_layout(state, "acl", source)
    name, index = resolve_branch(branch, BRANCHES, _ALIASES, "ACL")
    momentum = any(k.startswith(DYNACL_MOMENTUM_PREFIX) for k in state)
    other_network: list[str] = []
    if momentum:  # DynACL's resnet18_momentum: keep encoder_k, the network DynACL evaluates
        other_network = [k for k in state if not k.startswith(DYNACL_MOMENTUM_PREFIX)]
        state = {
            k.removeprefix(DYNACL_MOMENTUM_PREFIX): v
            for k, v in state.items()
            if k.startswith(DYNACL_MOMENTUM_PREFIX)
        }
    count = branch_count(state)
    if count == 1 and index != 0:
        raise ValueError(
            f"{source} has one BatchNorm branch (bn_list.0, 'normal': trained without "
            "--ACL_DS), so there is no adversarial branch: convert it with branch='clean'."
        )
    kept: str | None = f"{name} (bn_list.{index})" if count else None
    renamed, left_out = rename_torchvision(state, index if count else None)
    mean, std = normalization(state, "", source)
    skipped = summarize(other_network + [k for k in left_out if not k.startswith("normalize.")])
    warn_skipped(source, skipped)
    encoder = build_encoder(renamed, source, mean=mean, std=std)
    norm = (
        f"inputs normalised inside the network by its normalize buffers, mean {short(mean)} "
        f"and std {short(std)} (ImageNet statistics), recorded exactly as the config's mean / std"
        if mean is not None
        else "no normalize buffers in the file: no normalisation"
    )
    quirks = [
        f"ACL-family network (models/resnet_multi_bn.py): {norm}.",
        "3x3 stride-1 stem with padding 1, no max-pool, adaptive average pooling: the "
        "library's network; downsample.conv / downsample.bn (downsample.0 / downsample.1 in "
        "single-BatchNorm files) renamed shortcut.0 / shortcut.1.",
        _branch_note(count, kept, index),
    ]
    if momentum:
        quirks.insert(
            0,
            "DynACL resnet18_momentum file: kept encoder_k (the momentum encoder DynACL "
            "evaluates, its model_encoder_k.pt), skipped encoder_q.",
        )
    return Conversion(encoder, os.path.basename(path), "acl", kept, tuple(quirks), skipped)


def _branch_note(count: int, kept: str | None, index: int) -> str:
    """The model card's sentence on the BatchNorm branch kept."""
    if kept is None:
        return "Plain BatchNorms (a single-branch model): no branch to choose."
    if count == 1:
        return f"One BatchNorm branch (trained without --ACL_DS): kept {kept}."
    evaluated = BRANCHES["adv"]
    return f"{count} BatchNorm branches; kept {kept}, " + (
        "the one the authors' evaluation uses (--bnNameCnt 1)."
        if index == evaluated
        else f"not the one the authors' evaluation uses (bn_list.{evaluated}, --bnNameCnt 1)."
    )


def convert_acl(path: str | os.PathLike[str], branch: str = "adv") -> RoCLEncoder:
    """An ACL, DynACL or AIR checkpoint as a [`RoCLEncoder`][robust_contrastive.RoCLEncoder].

    The file is read without running code (see
    [`read_checkpoint`][robust_contrastive.convert.read_checkpoint]); the BatchNorms of
    ``branch`` are kept, the other branch and the projection head ``fc`` (and, in a DynACL
    ``model.pt`` holding ``encoder_q`` and ``encoder_k``, ``encoder_q``) are skipped with a
    logged warning, the ``normalize`` buffers become the config's ``mean`` / ``std`` (so the
    encoder takes images in [0, 1], as the original network does) and the weights are loaded
    strictly.

    Args:
        path: the checkpoint (``model.pt``, ``ACL_DS.pt``, ...).
        branch: ``"adv"`` (``bn_list.1``, ``'pgd'``: the branch the authors evaluate) or
            ``"clean"`` (``bn_list.0``, ``'normal'``); the original names are accepted too.

    Returns:
        The encoder in eval mode: features (B, 8 * width) of images (B, 3, H, W) in [0, 1],
        equal to the original network's pooled features under that branch.

    Raises:
        ValueError: a file of another layout (the message names its converter), a pickle that
            runs code, an unknown branch, or weights that do not fill the encoder.
    """
    return convert_acl_record(path, branch).encoder
