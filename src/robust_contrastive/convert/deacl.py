"""Checkpoints of DeACL (Zhang et al. 2022): PyTorch Lightning checkpoints of its solo-learn code.

The layout: a Lightning checkpoint (``{"state_dict", "epoch", "global_step",
"pytorch-lightning_version", "optimizer_states", "lr_schedulers", "callbacks",
"hyper_parameters", ...}``) whose ``state_dict`` holds the student ``backbone.*``, the frozen
SimCLR teacher ``momentum_backbone.*``, the projectors ``projector.*`` /
``momentum_projector.*`` (identities by default: no keys) and the online classifiers
``classifier.*`` / ``classifier_adv.*``. Each backbone is a torchvision ResNet
(``solo/models/resnet_add_normalize.py``: ``downsample.0`` / ``downsample.1`` shortcuts, a
``normalize`` module with CIFAR-10 statistics as buffers) that solo-learn adapts to CIFAR
(``solo/methods/base_for_adversarial_training.py``): conv1 becomes a 3x3 stride-1 convolution
with **padding 2**, the max-pool an identity and ``fc`` an identity. The feature map is then
(H + 2) x (W + 2); the average pooling is adaptive, so the features are still (B, 512).

Only ``state_dict`` is used; the other entries (hyper-parameters among them) are read as inert
data, never as code.
"""

from __future__ import annotations

import os

from ..models import RoCLEncoder
from ._common import (
    Conversion,
    build_encoder,
    check_layout,
    normalization,
    read_checkpoint,
    rename_torchvision,
    resolve_branch,
    short,
    state_dict_of,
    summarize,
    warn_skipped,
)

NETWORKS: dict[str, str] = {"student": "backbone.", "teacher": "momentum_backbone."}
"""The two backbones of a DeACL checkpoint: the robust student (the one evaluated) and the
standard SSL teacher it was distilled from."""
_INDEX = {"student": 0, "teacher": 1}


def convert_deacl_record(
    path: str | os.PathLike[str], branch: str = "student", *, stem_padding: int = 2
) -> Conversion:
    """[`convert_deacl`][robust_contrastive.convert.convert_deacl] with the conversion's record."""
    source = str(path)
    state = state_dict_of(read_checkpoint(path), source)
    check_layout(state, "deacl", source)
    name, _ = resolve_branch(branch, _INDEX, {"backbone": "student"}, "DeACL")
    prefix = NETWORKS[name]
    if not any(k.startswith(prefix) for k in state):
        raise ValueError(f"{source} has no {prefix}* weights: there is no {name} to convert.")
    own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    renamed, left_out = rename_torchvision(own, None)
    mean, std = normalization(own, "", source)
    others = [k for k in state if not k.startswith(prefix)]
    skipped = summarize(others + [prefix + k for k in left_out if not k.startswith("normalize.")])
    warn_skipped(source, skipped)
    encoder = build_encoder(renamed, source, mean=mean, std=std, stem_padding=stem_padding)
    norm = (
        f"inputs normalised inside the network by its normalize buffers, mean {short(mean)} "
        f"and std {short(std)} (CIFAR-10 statistics), recorded exactly as the config's mean / std"
        if mean is not None
        else "no normalize buffers in the file: no normalisation"
    )
    quirks = (
        f"solo-learn torchvision ResNet (solo/models/resnet_add_normalize.py): {norm}.",
        f"CIFAR stem of solo-learn: 3x3 stride-1 conv1 with padding {stem_padding}, recorded as "
        "the config's stem_padding (2 = as trained and as the authors' adv_finetune.py "
        "evaluates it; 1 = the RobustSSL benchmark's network), no max-pool, adaptive average "
        "pooling.",
        f"Kept the {name} ({prefix}*) of the Lightning checkpoint; downsample.0 / downsample.1 "
        "renamed shortcut.0 / shortcut.1.",
    )
    return Conversion(encoder, os.path.basename(path), "deacl", name, quirks, skipped)


def convert_deacl(
    path: str | os.PathLike[str], branch: str = "student", *, stem_padding: int = 2
) -> RoCLEncoder:
    """A DeACL (solo-learn Lightning) checkpoint as a
    [`RoCLEncoder`][robust_contrastive.RoCLEncoder].

    Only the checkpoint's ``state_dict`` is used (Lightning's other entries are read as inert
    data; a pickle that runs code is refused). The backbone's ``normalize`` buffers become the
    config's ``mean`` / ``std`` and its padding-2 stem the config's ``stem_padding``, so the
    folder rebuilds the same network; projectors, classifiers and the other backbone are skipped
    with a logged warning; the weights are loaded strictly.

    Args:
        path: the Lightning checkpoint (``...-ep=99.ckpt``).
        branch: ``"student"`` (``backbone.*``, the robust encoder DeACL trains and evaluates) or
            ``"teacher"`` (``momentum_backbone.*``, the frozen SimCLR teacher).
        stem_padding: the stem convolution's padding: 2 as the network was trained and as
            the authors' evaluation (``adv_finetune.py``; ``adv_slf.py`` since its "fix bug"
            commit) rebuilds it. The RobustSSL benchmark's fine-tuning code loads the weights
            into its padding-1 CIFAR ResNet (``strict=False``), as did the first ``adv_slf.py``
            (``solo/models/resnet_cifar.py``); pass 1 to reproduce that network.

    Returns:
        The encoder in eval mode: features (B, 8 * width) of images (B, 3, H, W) in [0, 1].

    Raises:
        ValueError: a file of another layout (the message names its converter), a pickle that
            runs code, an unknown branch, or weights that do not fill the encoder.
    """
    return convert_deacl_record(path, branch, stem_padding=stem_padding).encoder
