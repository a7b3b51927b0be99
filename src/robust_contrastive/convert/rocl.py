"""Checkpoints of the original RoCL implementation (Kim et al. 2020).

The original saves ``torch.save({"epoch", "acc", "model": state_dict, ...})`` of a
DistributedDataParallel model (``module.`` prefixes), the projector in a separate checkpoint.
This library's modules use the same names, so converting means: load safely, strip the prefixes,
infer the architecture from the weights' shapes, and load strictly.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from ..models import ProjectionHead, RoCLEncoder
from ..models.pretrained import load_state_dict_strict
from ._common import (
    CONVERTERS,
    Conversion,
    build_encoder,
    detect_layout,
    read_checkpoint,
    state_dict_of,
)

logger = logging.getLogger(__name__)

_PREFIXES = ("module.", "model.", "encoder.")


def load_original_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict of an original RoCL checkpoint, loaded without running code
    (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a pickle that needs code execution, or no model weights in the file.
    """
    state = state_dict_of(read_checkpoint(path), str(path))
    # Each prefix in turn ("module.encoder.conv1" -> "conv1").
    return {functools.reduce(str.removeprefix, _PREFIXES, key): v for key, v in state.items()}


def convert_rocl(path: str | os.PathLike[str]) -> Conversion:
    """[`convert_encoder`][robust_contrastive.convert.convert_encoder] with the conversion's
    record (for the model card)."""
    state = load_original_state_dict(path)
    found = detect_layout(state)
    if found not in (None, "rocl"):
        raise ValueError(
            f"{path} is not an original RoCL checkpoint: its keys are laid out as a {found} one. "
            f"Use {CONVERTERS[found]} (robust-contrastive convert --layout {found})."
        )
    head = sorted(k for k in state if k.startswith("linear."))
    skipped: tuple[str, ...] = ()
    if head:
        logger.warning("%s: skipping the classifier head %s (not part of the encoder)", path, head)
        state = {k: v for k, v in state.items() if not k.startswith("linear.")}
        skipped = (f"linear.* ({len(head)} keys)",)
    encoder = build_encoder(state, str(path))
    return Conversion(
        encoder=encoder,
        source=os.path.basename(path),
        layout="rocl",
        branch=None,
        quirks=("Same network and key names as this library's: no quirk to record.",),
        skipped=skipped,
    )


def convert_encoder(path: str | os.PathLike[str]) -> RoCLEncoder:
    """An original encoder checkpoint as a [`RoCLEncoder`][robust_contrastive.RoCLEncoder] (eval
    mode), weights matched strictly. A linear classifier head in the checkpoint (``linear.*``) is
    not part of the encoder: it is skipped with a warning."""
    return convert_rocl(path).encoder


def convert_projector(path: str | os.PathLike[str]) -> ProjectionHead:
    """An original projector checkpoint (``linear_1``, ``linear_2``) as a ProjectionHead."""
    state = load_original_state_dict(path)
    if "linear_1.weight" not in state or "linear_2.weight" not in state:
        raise ValueError(f"{path} is not an original projector (no linear_1 / linear_2 weights).")
    hidden, in_dim = state["linear_1.weight"].shape
    out_dim = state["linear_2.weight"].shape[0]
    head = ProjectionHead(int(in_dim), int(hidden), int(out_dim))
    load_state_dict_strict(head, state, source=str(path))
    return head.eval()
