"""AutoAttack (Croce & Hein 2020) through torchattacks, with this library's input checks."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from ..modes import eval_mode
from ..validation import check_attack_labels, check_classes, check_images, check_number

__all__ = ["autoattack"]


def autoattack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float = 8 / 255,
    norm: str = "linf",
    version: str = "standard",
    num_classes: int = 10,
    seed: int = 0,
) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through torchattacks: adversarial images for ``images``.

    ``version="standard"`` (APGD-CE, APGD-T, FAB-T, Square) is the reference evaluation;
    ``version="rand"`` (APGD-CE and APGD-DLR with EOT) is for randomised models. The model is
    put in eval mode and its mode restored.

    ``num_classes`` must be the number of the model's outputs: the targeted attacks of the
    standard version need at least 4 classes, the DLR loss of the rand version at least 3.

    Raises:
        TypeError / ValueError: bad images, labels, eps, norm, version or num_classes (checked
            before torchattacks is imported).
        ImportError: torchattacks is missing: ``pip install "robust-contrastive[eval]"``.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"AutoAttack supports norm 'linf' or 'l2', got {norm!r}.")
    if version not in ("standard", "rand"):
        raise ValueError(f"version must be 'standard' or 'rand', got {version!r}.")
    check_number("eps", eps, positive=False, example="8/255 for l-inf")
    check_images(images, "images")
    check_attack_labels(labels, images)
    least = 4 if version == "standard" else 3
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < least:
        raise ValueError(
            f"AutoAttack version={version!r} needs num_classes >= {least} (the number of the "
            f"model's outputs), got {num_classes!r}."
        )
    outputs = check_classes(model, images, labels)
    if outputs != num_classes:
        raise ValueError(
            f"num_classes={num_classes} but the model outputs {outputs} classes: pass "
            f"num_classes={outputs}."
        )
    try:
        torchattacks: Any = importlib.import_module("torchattacks")
    except ImportError as err:
        raise ImportError(
            'AutoAttack needs torchattacks: pip install "robust-contrastive[eval]"'
            " (torchattacks 3.5.1 pins requests~=2.25.1; to keep a newer requests use"
            " pip install --no-deps torchattacks scipy)"
        ) from err
    labels = labels.long()
    with eval_mode(model):
        attack = torchattacks.AutoAttack(
            model,
            norm="Linf" if norm == "linf" else "L2",
            eps=eps,
            version=version,
            n_classes=num_classes,
            seed=seed,
        )
        # torchattacks' FAB fails on channels_last memory: give it contiguous images.
        adversarial: torch.Tensor = attack(images.contiguous(), labels)
        return adversarial.detach()
