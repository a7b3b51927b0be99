"""Checkpoints of AdvCL (Fan et al. 2021).

The layout: ``torch.save({"model": state_dict, "epoch", "rng_state"})`` of a ``DataParallel``
model (``module.`` prefixes; the pretraining refuses to run on one GPU) built from
``models/resnet_cifar_multibn_ensembleFC.py``: the multi-BatchNorm CIFAR ResNet of ACL with
**three** branches, ``bn_names = ['normal', 'pgd', 'pgd_ce']`` (``bn_list.0..2``), no
normalisation (inputs in [0, 1]) and extra heads: ``fc_002`` .. ``fc_500`` (pseudo-label
classifiers), ``head_ce``, ``head_proj`` and ``head_pred``.

The authors' linear evaluation (``finetuning_advCL_SLF.py``, ``utils.load_BN_checkpoint``) keeps
``bn_list.1`` (``'pgd'``) and drops the heads: so does this converter by default. It loads with
``strict=False``, so a ``module.``-prefixed file in a single-GPU run loads nothing (the ~10 %
re-runs of AdvCL's issue 6); here the prefixes are stripped and loading is strict.
"""

from __future__ import annotations

import os

from ..models import RoCLEncoder
from ._common import (
    Conversion,
    branch_count,
    build_encoder,
    check_layout,
    read_checkpoint,
    rename_torchvision,
    resolve_branch,
    state_dict_of,
    strip_prefix,
    summarize,
    warn_skipped,
)

BRANCHES: dict[str, int] = {"normal": 0, "pgd": 1, "pgd_ce": 2}
"""AdvCL's BatchNorm branches, in ``pretraining_advCL.py``'s order."""
_ALIASES = {"clean": "normal", "adv": "pgd"}


def convert_advcl_record(path: str | os.PathLike[str], branch: str = "pgd") -> Conversion:
    """[`convert_advcl`][robust_contrastive.convert.convert_advcl] with the conversion's record."""
    source = str(path)
    state = strip_prefix(state_dict_of(read_checkpoint(path), source), "module.")
    check_layout(state, "advcl", source)
    name, index = resolve_branch(branch, BRANCHES, _ALIASES, "AdvCL")
    count = branch_count(state)
    if index >= count:
        have = f"bn_list.0..{count - 1}" if count else "none in its stem bn1"
        raise ValueError(
            f"{source} has {count} BatchNorm branches ({have}): branch {name!r} "
            f"(bn_list.{index}) is not among them."
        )
    kept = f"{name} (bn_list.{index})"
    renamed, left_out = rename_torchvision(state, index)
    skipped = summarize(left_out)
    warn_skipped(source, skipped)
    encoder = build_encoder(renamed, source)
    quirks = (
        "AdvCL network (models/resnet_cifar_multibn_ensembleFC.py): no normalisation inside "
        "the network (inputs in [0, 1]); 3x3 stride-1 stem with padding 1, no max-pool.",
        "module. prefixes (DataParallel) stripped; downsample.conv / downsample.bn renamed "
        "shortcut.0 / shortcut.1.",
        f"{count} BatchNorm branches; kept {kept}, "
        + (
            "the one the authors' linear evaluation uses (load_BN_checkpoint)."
            if name == "pgd"
            else "not the one the authors' linear evaluation uses (pgd, bn_list.1)."
        ),
    )
    return Conversion(encoder, os.path.basename(path), "advcl", kept, quirks, skipped)


def convert_advcl(path: str | os.PathLike[str], branch: str = "pgd") -> RoCLEncoder:
    """An AdvCL checkpoint as a [`RoCLEncoder`][robust_contrastive.RoCLEncoder].

    The file is read without running code; ``module.`` prefixes are stripped, the BatchNorms of
    ``branch`` kept, the other branches and the heads (``fc_002..fc_500``, ``head_ce``,
    ``head_proj``, ``head_pred``) skipped with a logged warning, and the weights loaded strictly.
    The network has no normalisation: the encoder's config has none either.

    Args:
        path: the checkpoint (``epoch_1000.ckpt``).
        branch: ``"pgd"`` (``bn_list.1``, the branch the authors evaluate; alias ``"adv"``),
            ``"normal"`` (``bn_list.0``; alias ``"clean"``) or ``"pgd_ce"`` (``bn_list.2``).

    Returns:
        The encoder in eval mode, equal to the original network's pooled features
        (``return_feat=True``) under that branch.

    Raises:
        ValueError: a file of another layout (the message names its converter), a pickle that
            runs code, an unknown branch, or weights that do not fill the encoder.
    """
    return convert_advcl_record(path, branch).encoder
