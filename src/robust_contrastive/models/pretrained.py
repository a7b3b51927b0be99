"""Save and load models as ``model.safetensors`` + ``config.json`` (the Hugging Face layout).

Every model of this library is rebuilt from its ``config.json`` alone and its weights are matched
strictly: a missing or unexpected key is an error that names the keys, never a silent partial load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..hub import resolve_model_folder

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1

_M = TypeVar("_M", bound="PretrainedMixin")


class PretrainedMixin(nn.Module):
    """Mixin giving an ``nn.Module`` ``save_pretrained`` / ``from_pretrained``.

    Subclasses set ``model_type`` (a string stored in ``config.json``) and expose a ``config``
    dataclass whose fields are exactly the keyword arguments of their ``__init__``.
    """

    model_type: ClassVar[str]
    config: Any

    def config_dict(self) -> dict[str, Any]:
        """The JSON-serialisable configuration that rebuilds this model."""
        return {
            "model_type": self.model_type,
            "format_version": FORMAT_VERSION,
            **asdict(self.config),
        }

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed).

        Files are written to a temporary name and renamed, so an interrupted save never leaves a
        half-written file under the final name.

        Returns:
            The directory, as a ``Path``.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        tmp_weights = out / (WEIGHTS_NAME + ".tmp")
        save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
        os.replace(tmp_weights, out / WEIGHTS_NAME)
        tmp_config = out / (CONFIG_NAME + ".tmp")
        tmp_config.write_text(json.dumps(self.config_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp_config, out / CONFIG_NAME)
        return out

    @classmethod
    def from_pretrained(
        cls: type[_M],
        directory: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> _M:
        """Rebuild the model from ``config.json`` and load ``model.safetensors`` strictly.

        The model is returned in eval mode.

        Raises:
            FileNotFoundError: the folder or one of its two files is missing.
            ValueError: the config is for another model type or has unknown fields, or the
                weights do not match the architecture (missing, unexpected or mis-shaped keys).
        """
        folder = resolve_model_folder(
            directory,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        raw, weights_path = read_pretrained_config(folder, cls.model_type, cls.__name__)
        model = cls.from_config(raw)
        state = load_file(str(weights_path), device=str(map_location))
        load_state_dict_strict(model, state, source=str(weights_path))
        model.to(map_location)
        model.eval()
        return model

    @classmethod
    def from_config(cls: type[_M], config: dict[str, Any]) -> _M:
        """Build a randomly initialised model from a config dictionary (no weights)."""
        config_cls = type(cls.default_config())
        known = {f.name for f in fields(config_cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.model_type} config fields {unknown}; known fields: {sorted(known)}."
            )
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return cls(**kwargs)

    @classmethod
    def default_config(cls) -> Any:
        """An instance of the model's config dataclass with default values."""
        raise NotImplementedError


def read_pretrained_config(
    directory: str | os.PathLike[str], model_type: str, class_name: str
) -> tuple[dict[str, Any], Path]:
    """Read and check the ``config.json`` of a ``save_pretrained`` folder.

    Checks that ``config.json`` and ``model.safetensors`` exist, that the config is a JSON object
    for ``model_type`` and in this library's format version.

    Returns:
        The config's remaining fields (without ``model_type`` and ``format_version``) and the
        path of the weights file.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: another model type, another format version, or not a JSON object.
    """
    folder = Path(directory)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {class_name}.from_pretrained expects a folder written by "
                f"save_pretrained (holding {CONFIG_NAME} and {WEIGHTS_NAME})."
            )
    raw = json.loads(config_path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got {type(raw).__name__}.")
    found_type = raw.pop("model_type", None)
    if found_type != model_type:
        raise ValueError(
            f"{config_path} describes a {found_type!r} model, not a {model_type!r}: "
            "load it with the matching class."
        )
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format_version {version!r}; this version of "
            f"robust-contrastive reads format_version {FORMAT_VERSION}. Upgrade the package."
        )
    return raw, weights_path


def load_state_dict_strict(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state dict"
) -> None:
    """Load ``state`` into ``model``, raising a ``ValueError`` that lists every mismatch.

    Unlike ``load_state_dict(strict=True)`` the message names missing keys, unexpected keys and
    shape mismatches together, so that a wrong architecture is obvious from one error.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing keys {_abbreviate(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_abbreviate(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches {_abbreviate(mis_shaped)}")
        raise ValueError(
            f"weights in {source} do not match this {type(model).__name__}: "
            + "; ".join(parts)
            + ". Check that config.json (arch, width, dims) belongs to these weights."
        )
    model.load_state_dict(state, strict=True)


def _abbreviate(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items) - limit} more)' if len(items) > limit else ''}]"
