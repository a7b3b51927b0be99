"""What every converter shares: reading a checkpoint without running code, finding its state
dict, recognising its layout, renaming torchvision-style keys, and building the encoder.

A converter maps one family's key names onto [`RoCLEncoder`][robust_contrastive.RoCLEncoder]'s
(``conv1``, ``bn1``, ``layer1..4`` with ``shortcut.0`` / ``shortcut.1``), records the family's
quirks (normalisation, stem padding) in the encoder's config, skips the heads with a logged
warning, and loads the rest strictly: every encoder weight comes from the file, or it fails.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models import RoCLEncoder
from ..models.pretrained import load_state_dict_strict

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("rocl", "acl", "deacl", "advcl")
"""The checkpoint layouts the converters read (``convert_checkpoint(layout=...)``)."""

CONVERTERS: dict[str, str] = {
    "rocl": "convert_encoder",
    "acl": "convert_acl",
    "deacl": "convert_deacl",
    "advcl": "convert_advcl",
}
_PATH_CLASSES = ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
# Classes that training frameworks pickle into a checkpoint's metadata (hyper-parameters), read
# as inert stand-ins: their code never runs and they never reach the converted weights. Any other
# class or function in a file is refused.
_INERT_GLOBALS: tuple[str, ...] = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "argparse.Namespace",
    # solo-learn's arguments (--data_dir, --train_dir, ...) are pathlib paths.
    *(f"{module}.{cls}" for module in ("pathlib", "pathlib._local") for cls in _PATH_CLASSES),
)
_ENCODER_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
DYNACL_MOMENTUM_PREFIX = "encoder_k."
"""DynACL's ``resnet18_momentum`` saves ``encoder_q.*`` and ``encoder_k.*``; ``encoder_k`` (the
momentum encoder) is the one its validation, ``model_encoder_k.pt`` and DynACL++ use."""


class _Inert:
    """Stands in for a metadata object (e.g. an ``argparse.Namespace`` of hyper-parameters)
    while a checkpoint is read: built without running any of the original class's code."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        del args, kwargs


@dataclass(frozen=True)
class Conversion:
    """A converted encoder and what the conversion did (written to the folder's model card).

    Attributes:
        encoder: the [`RoCLEncoder`][robust_contrastive.RoCLEncoder], eval mode, loaded strictly.
        source: the checkpoint file's name.
        layout: ``"rocl"``, ``"acl"``, ``"deacl"`` or ``"advcl"``.
        branch: the BatchNorm branch (or, for DeACL, the network) kept; None when the file has
            one.
        quirks: sentences on what the family does differently and how the config records it.
        skipped: the groups of keys left out (heads, other branches), e.g. ``"fc.* (12 keys)"``.
    """

    encoder: RoCLEncoder
    source: str
    layout: str
    branch: str | None
    quirks: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Unpickle a ``torch.save``'d file without running code (``torch.load(weights_only=True)``).

    Known metadata classes of training frameworks (Lightning's ``AttributeDict``,
    ``argparse.Namespace``, ``pathlib`` paths) are read as inert stand-ins, so that a Lightning
    checkpoint's hyper-parameters do not stop its weights from being read; any other class or
    function (an ``os.system`` payload, say) refuses the file: torch's weights-only unpickler
    stops at it, so nothing in the file is ever run.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs code execution to unpickle, or is not a (complete) torch file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist.")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_error = err
    except (RuntimeError, EOFError, KeyError, ValueError) as err:  # empty, truncated, not torch
        detail = (str(err).splitlines() or [""])[0]
        raise ValueError(
            f"{file} is not a readable torch.save'd file ({type(err).__name__}: {detail}); "
            "is it truncated, or a file of another kind?"
        ) from err
    unsafe = _unsafe_globals(file)
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if unsafe and safe_globals is not None and all(name in _INERT_GLOBALS for name in unsafe):
        stand_ins = [(dict if "AttributeDict" in name else _Inert, name) for name in unsafe]
        try:  # (class, "module.name") entries: torch >= 2.6
            with safe_globals(stand_ins):
                return torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, AttributeError, TypeError, ValueError) as err:
            first_error = pickle.UnpicklingError(str(err))
    raise ValueError(
        f"refused to load {file}: {_why_refused(unsafe, first_error)}. Only checkpoints of "
        "tensors and plain containers (and Lightning's hyper-parameter records, with torch >= "
        "2.6) are converted; nothing in the file was run."
    ) from first_error


def _why_refused(unsafe: list[str], error: Exception) -> str:
    """Why a file was refused, naming what it would have built (never torch's advice to load
    with weights_only=False)."""
    if unsafe:
        return (
            f"it names classes or functions beyond tensors and plain containers "
            f"({', '.join(unsafe)}), and unpickling them could run code"
        )
    lines = [line for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    detail = lines[0].split(" was not an allowed global")[0].strip() if lines else ""
    return (
        f"it is not a plain weights file ({detail})"
        if detail
        else "it is not a torch.save'd file of tensors and plain containers"
    )


def _unsafe_globals(file: Path) -> list[str]:
    """The classes and functions a zip-format torch file names outside torch's allowlist, read
    without unpickling (empty when this torch cannot tell)."""
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:
        return []
    try:
        return sorted(finder(file))
    except (RuntimeError, ValueError, pickle.UnpicklingError):
        return []


def state_dict_of(raw: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: its ``"state_dict"`` (Lightning, ACL) or ``"model"``
    (RoCL, AdvCL) entry, or the checkpoint itself when it is one.

    Raises:
        ValueError: no dict of tensors there.
    """
    state = raw
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), Mapping):
                state = raw[key]
                break
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise ValueError(
            f"{source} holds no state dict of tensors (expected {{'state_dict': ...}}, "
            "{'model': ...} or a bare state dict)."
        )
    return dict(state)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` removed from the keys that start with it (e.g. ``module.``)."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


def detect_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """The layout a state dict's keys show (``module.`` prefixes ignored), or None.

    ``backbone.*`` (a solo-learn / Lightning module): ``"deacl"``; a ``normalize`` buffer with
    ``bn_list`` BatchNorms or ``downsample`` shortcuts, possibly under DynACL's
    ``encoder_k.`` / ``encoder_q.`` (its ``resnet18_momentum``): ``"acl"`` (ACL, DynACL, AIR);
    ``bn_list`` BatchNorms without it: ``"advcl"``; ``conv1`` and ``layer*`` keys: ``"rocl"``.
    """
    keys = [k.removeprefix("module.") for k in state]
    if any(k.startswith(("backbone.", "momentum_backbone.")) for k in keys):
        return "deacl"
    if any(k.startswith(DYNACL_MOMENTUM_PREFIX) for k in keys):  # judge by the network kept
        keys = [k.removeprefix(DYNACL_MOMENTUM_PREFIX) for k in keys]
    multi_bn = any(".bn_list." in k or k.startswith("bn1.bn_list") for k in keys)
    if "normalize.mean" in keys and (multi_bn or any(".downsample." in k for k in keys)):
        return "acl"
    if multi_bn:
        return "advcl"
    stripped = [re.sub(r"^(model\.|encoder\.)+", "", k) for k in keys]
    if "conv1.weight" in stripped and any(k.startswith("layer") for k in stripped):
        return "rocl"
    return None


def check_layout(state: Mapping[str, torch.Tensor], expected: str, source: str) -> None:
    """Raise a ``ValueError`` naming the right converter when ``state`` is of another layout."""
    found = detect_layout(state)
    if found == expected:
        return
    if found is None:
        sample = ", ".join(sorted({k.split(".")[0] for k in state})[:8])
        raise ValueError(
            f"{source} is not a {expected} checkpoint, nor one of the layouts this library "
            f"converts ({', '.join(LAYOUTS)}); its keys start with: {sample}."
        )
    raise ValueError(
        f"{source} is not a {expected} checkpoint: its keys are laid out as a {found} one. "
        f"Use {CONVERTERS[found]} (robust-contrastive convert --layout {found}), or "
        "convert_checkpoint, which detects the layout."
    )


def branch_count(state: Mapping[str, torch.Tensor]) -> int:
    """How many BatchNorm branches (``bn_list.0``, ``bn_list.1``, ...) the stem has; 0 when its
    BatchNorm is a plain one."""
    indices = {int(m.group(1)) for k in state if (m := re.match(r"bn1\.bn_list\.(\d+)\.", k))}
    return len(indices)


def rename_torchvision(
    state: Mapping[str, torch.Tensor], branch: int | None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map multi-BatchNorm / torchvision key names onto the encoder's; return it and the keys
    left out.

    ``X.bn_list.K.*`` keeps branch ``K == branch`` as ``X.*`` and drops the others (``X.bn_list.*``,
    a single BatchNorm in a ``bn_list`` slot, is kept); ``downsample.conv`` / ``downsample.0``
    become ``shortcut.0`` and ``downsample.bn`` / ``downsample.1`` become ``shortcut.1``; keys
    outside ``conv1``, ``bn1`` and ``layer1..4`` (heads, the ``normalize`` buffers) are left out.
    """
    out: dict[str, torch.Tensor] = {}
    left_out: list[str] = []
    for key, value in state.items():
        if not key.startswith(_ENCODER_PREFIXES):
            left_out.append(key)
            continue
        new = key
        match = re.search(r"\.bn_list\.(\d+)\.", new)
        if match is not None:
            if int(match.group(1)) != branch:
                left_out.append(key)
                continue
            new = new.replace(match.group(0), ".")
        new = new.replace(".bn_list.", ".")
        for old, replacement in (
            ("downsample.conv.", "shortcut.0."),
            ("downsample.bn.", "shortcut.1."),
            ("downsample.0.", "shortcut.0."),
            ("downsample.1.", "shortcut.1."),
        ):
            new = new.replace(old, replacement)
        out[new] = value
    return out, left_out


def summarize(keys: list[str]) -> tuple[str, ...]:
    """Group left-out keys for a message: ``["fc.fc1.weight", ...]`` -> ``("fc.* (12 keys)",)``;
    the encoder's other BatchNorm branches apart (``"bn_list.0 of the encoder (60 keys)"``)."""
    groups: dict[str, int] = {}
    for key in keys:
        if key.startswith(_ENCODER_PREFIXES) and (m := re.search(r"bn_list\.\d+", key)):
            name = f"{m.group(0)} of the encoder"
        else:
            name = f"{key.split('.')[0]}.*"
        groups[name] = groups.get(name, 0) + 1
    return tuple(f"{name} ({count} keys)" for name, count in sorted(groups.items()))


def normalization(
    state: Mapping[str, torch.Tensor], prefix: str, source: str
) -> tuple[tuple[float, float, float] | None, tuple[float, float, float] | None]:
    """The per-channel ``mean`` / ``std`` of a ``NormalizeByChannelMeanStd`` buffer pair
    (``{prefix}normalize.mean`` / ``.std``), exactly as stored (float32 values), or ``(None, None)``
    when the network has none."""
    mean, std = state.get(f"{prefix}normalize.mean"), state.get(f"{prefix}normalize.std")
    if mean is None and std is None:
        return None, None
    if mean is None or std is None or mean.numel() != 3 or std.numel() != 3:
        raise ValueError(
            f"{source}: the normalize buffers must hold 3 values each (mean and std per RGB "
            "channel)."
        )
    (m0, m1, m2), (s0, s1, s2) = (
        [float(v) for v in mean.float().flatten()],
        [float(v) for v in std.float().flatten()],
    )
    return (m0, m1, m2), (s0, s1, s2)


def short(values: tuple[float, ...] | None) -> str:
    """``(0.48500001430511475, ...)`` -> ``"(0.485, ...)"``, for messages and model cards."""
    return "none" if values is None else "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def infer_arch(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """The CIFAR ResNet depth and width whose weights ``state`` (encoder key names) holds.

    Raises:
        ValueError: no ``conv1.weight``, or a depth this library does not build.
    """
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
    raise ValueError(
        f"unsupported network: blocks per stage {blocks}, bottleneck={bottleneck}; this library "
        "builds the CIFAR ResNet-18, ResNet-34 and ResNet-50 (no WideResNet)."
    )


def build_encoder(
    state: dict[str, torch.Tensor],
    source: str,
    *,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    stem_padding: int = 1,
) -> RoCLEncoder:
    """A [`RoCLEncoder`][robust_contrastive.RoCLEncoder] of the architecture ``state`` holds,
    with the given quirks, its weights loaded strictly, in eval mode. BatchNorm counters absent
    from files older than PyTorch 0.4.1 are filled with zeros (they do not change outputs)."""
    arch, width = infer_arch(state)
    encoder = RoCLEncoder(arch, width=width, mean=mean, std=std, stem_padding=stem_padding)
    for key, value in encoder.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_dict_strict(encoder, state, source=source)
    return encoder.eval()


def warn_skipped(source: str, skipped: tuple[str, ...]) -> None:
    """Log the keys a conversion leaves out (heads, other branches) as one warning."""
    if skipped:
        logger.warning("%s: skipping %s (not part of the encoder kept)", source, "; ".join(skipped))


def resolve_branch(
    branch: str, names: Mapping[str, int], aliases: Mapping[str, str], family: str
) -> tuple[str, int]:
    """The canonical name and index of ``branch`` among ``names`` (aliases allowed)."""
    name = aliases.get(branch, branch)
    if name not in names:
        choices = sorted({*names, *aliases})
        raise ValueError(f"unknown {family} branch {branch!r}; choose one of {choices}.")
    return name, names[name]
