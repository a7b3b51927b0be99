"""Convert checkpoints of the original RoCL implementation into this library's format.

The original saves ``torch.save({"epoch", "acc", "model": state_dict, ...})`` of a
DistributedDataParallel model (``module.`` prefixes), the projector in a separate checkpoint.
This library's modules use the same names, so converting means: load safely, strip the prefixes,
infer the architecture from the weights' shapes, and load strictly.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import re
from pathlib import Path

import torch

from .models import ProjectionHead, RoCLEncoder
from .models.pretrained import load_state_dict_strict

logger = logging.getLogger(__name__)

_PREFIXES = ("module.", "model.", "encoder.")


def load_original_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict of an original RoCL checkpoint, loaded without running code
    (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a pickle that needs code execution, or no model weights in the file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist.")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refused to load {file}: it is not a plain weights file (unpickling it would run "
            f"code or build arbitrary objects: {str(err).splitlines()[0]}). Only checkpoints "
            "of tensors and plain containers are converted."
        ) from err
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise ValueError(
            f"{file} holds no state dict of tensors (expected the original's "
            "{'model': state_dict, ...} or a bare state dict)."
        )
    # Each prefix in turn ("module.encoder.conv1" -> "conv1").
    return {functools.reduce(str.removeprefix, _PREFIXES, key): v for key, v in state.items()}


def _infer_arch(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    if "conv1.weight" not in state:
        raise ValueError("not a CIFAR ResNet encoder state dict: it has no conv1.weight.")
    width = int(state["conv1.weight"].shape[0])
    blocks = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks.append(len(indices))
    bottleneck = any(re.match(r"layer1\.0\.conv3\.", k) for k in state)
    if bottleneck and blocks == [3, 4, 6, 3]:
        return "resnet50", width
    if not bottleneck and blocks == [2, 2, 2, 2]:
        return "resnet18", width
    if not bottleneck and blocks == [3, 4, 6, 3]:
        return "resnet34", width
    raise ValueError(f"unsupported layout: blocks per stage {blocks}, bottleneck={bottleneck}.")


def convert_encoder(path: str | os.PathLike[str]) -> RoCLEncoder:
    """An original encoder checkpoint as a [`RoCLEncoder`][robust_contrastive.RoCLEncoder] (eval
    mode), weights matched strictly. A linear classifier head in the checkpoint (``linear.*``) is
    not part of the encoder: it is skipped with a warning."""
    state = load_original_state_dict(path)
    head = sorted(k for k in state if k.startswith("linear."))
    if head:
        logger.warning("%s: skipping the classifier head %s (not part of the encoder)", path, head)
        state = {k: v for k, v in state.items() if not k.startswith("linear.")}
    arch, width = _infer_arch(state)
    encoder = RoCLEncoder(arch, width=width)
    for key, value in encoder.state_dict().items():  # checkpoints older than PyTorch 0.4.1
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_dict_strict(encoder, state, source=str(path))
    return encoder.eval()


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
