"""Save and load models as ``model.safetensors`` + ``config.json`` (the Hugging Face layout):
rebuilt from ``config.json`` (and sub-folders) alone, weights matched strictly, never partially."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._io import atomic_path, atomic_write_text
from ..layout import CONFIG_NAME as CONFIG_NAME
from ..layout import TRAIN_CONFIG_NAME
from ..layout import WEIGHTS_NAME as WEIGHTS_NAME
from ..registry import resolve_model_folder

FORMAT_VERSION = 1
# The modules that define this library's model types, imported when a config.json names a
# model_type that no class imported so far has registered.
LIBRARY_MODEL_MODULES: tuple[str, ...] = (
    "robust_contrastive.models",
    "robust_contrastive.evaluation.probe",
)

_M = TypeVar("_M", bound="PretrainedMixin")
_MODEL_TYPES: dict[str, type[PretrainedMixin]] = {}


class PretrainedMixin(nn.Module):
    """Mixin giving an ``nn.Module`` ``save_pretrained`` / ``from_pretrained``.

    Subclasses set ``model_type`` (a string stored in ``config.json``; setting it registers the
    class for [`load_pretrained`][robust_contrastive.models.load_pretrained]) and expose a
    ``config`` dataclass whose fields are the keyword arguments of their ``__init__``. A model
    whose weights are not all its own supplies the hooks: ``pretrained_state`` /
    ``load_pretrained_state`` (the tensors of ``model.safetensors``), ``save_submodels`` /
    ``load_submodels`` (sub-models in sub-folders, passed to ``from_config``) and
    ``locate_pretrained`` (the folder to read, given the one named).
    """

    model_type: ClassVar[str]
    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model_type = cls.__dict__.get("model_type")
        if model_type is None:
            return
        known = _MODEL_TYPES.get(model_type)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"model_type {model_type!r} of {cls.__qualname__} is already the model_type of "
                f"{known.__module__}.{known.__qualname__}: pick another one."
            )
        _MODEL_TYPES[model_type] = cls

    def config_dict(self) -> dict[str, Any]:
        """The JSON-serialisable configuration that rebuilds this model."""
        return {
            "model_type": self.model_type,
            "format_version": FORMAT_VERSION,
            **asdict(self.config),
        }

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The tensors written to ``model.safetensors`` (default: the whole state dict)."""
        return dict(self.state_dict())

    def load_pretrained_state(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Load the tensors of ``model.safetensors`` strictly (the inverse of
        ``pretrained_state``; default: the whole state dict)."""
        load_state_dict_strict(self, state, source=source)

    def save_submodels(self, directory: Path) -> None:
        """Write sub-models that have their own folder (e.g. ``encoder/``); default: none."""

    @classmethod
    def load_submodels(
        cls, directory: Path, map_location: str | torch.device
    ) -> dict[str, nn.Module]:
        """Read the sub-models written by ``save_submodels``: ``from_config`` keyword arguments
        (default: none)."""
        return {}

    @classmethod
    def locate_pretrained(cls, directory: Path) -> Path:
        """The folder to load, given the resolved one (default: that folder itself)."""
        return directory

    def save_pretrained(
        self,
        directory: str | os.PathLike[str],
        *,
        training: Any = None,
        evaluation: Any = None,
        dataset: str = "cifar10",
        split: str = "held-out split",
        license: str = "mit",
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md``; return the
        directory as a ``Path``.

        Files are written to a temporary name and renamed, so an interrupted save never leaves a
        half-written file under the final name. The card is generated from the folder's files
        (see [`write_model_card`][robust_contrastive.model_card.write_model_card]): pass
        ``training`` and ``evaluation`` to record them there first.

        Args:
            directory: the folder (created if needed).
            training: the run's ``TrainConfig`` (or its ``to_dict()``), written to
                ``train_config.json``.
            evaluation: a ``RobustnessReport`` (or a list of them) measured on these weights,
                recorded in ``eval_results.json`` with the weights' SHA-256.
            dataset: the dataset id of the evaluation images (``"cifar10"``).
            split: which images were evaluated.
            license: the license id written into the card.
        """
        from ..model_card import attach_evaluation, write_model_card

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.save_submodels(out)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.pretrained_state().items()}
        with atomic_path(out / WEIGHTS_NAME) as tmp_weights:
            save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
        atomic_write_text(
            out / CONFIG_NAME, json.dumps(self.config_dict(), indent=2, sort_keys=True) + "\n"
        )
        if training is not None:
            values = training.to_dict() if hasattr(training, "to_dict") else dict(training)
            atomic_write_text(out / TRAIN_CONFIG_NAME, json.dumps(values, indent=2) + "\n")
        reports = [] if evaluation is None else evaluation
        for report in reports if isinstance(reports, (list, tuple)) else [reports]:
            attach_evaluation(out, report, dataset=dataset, split=split)
        write_model_card(out, license=license)
        return out

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload model with robust-contrastive",
        create_pr: bool = False,
        training: Any = None,
        evaluation: Any = None,
        dataset: str = "cifar10",
        split: str = "held-out split",
        license: str = "mit",
    ) -> str:
        """Save the model (the same files as
        [`save_pretrained`][robust_contrastive.models.PretrainedMixin.save_pretrained]) and upload
        them to the Hub.

        To publish a trained run folder with everything already recorded in it (training
        config, metrics, attached evaluations), use ``robust-contrastive push FOLDER REPO_ID``.

        Returns:
            The URL of the commit (or pull request).
        """
        from ..hub import push_folder_to_hub
        from ..model_card import write_model_card

        with tempfile.TemporaryDirectory(prefix="robust-contrastive-push-") as tmp:
            folder = self.save_pretrained(
                tmp,
                training=training,
                evaluation=evaluation,
                dataset=dataset,
                split=split,
                license=license,
            )
            write_model_card(folder, repo_id=repo_id, license=license)
            return push_folder_to_hub(
                folder,
                repo_id,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
                create_pr=create_pr,
            )

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

        The folder's ``model_type`` picks the class: this one, or one of its registered
        subclasses (``PretrainedMixin.from_pretrained`` loads any model type). The model is
        returned in eval mode.

        Args:
            directory: a folder written by ``save_pretrained``, a Hub repo id ``"org/name"`` or
                a registered name (see
                [`resolve_model_folder`][robust_contrastive.registry.resolve_model_folder]).
            map_location: device to load the weights on.
            revision: Hub revision (a branch, tag or commit; not for registered names).
            cache_dir: Hugging Face cache to use.
            local_files_only: never download (as ``HF_HUB_OFFLINE=1``).
            token: Hub token for private repos.

        Raises:
            FileNotFoundError: the folder, one of its two files or a sub-model's folder is
                missing.
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
        folder = cls.locate_pretrained(folder)
        model_cls, raw, weights_path = _read_pretrained_config(folder, cls)
        model = model_cls.from_config(raw, **model_cls.load_submodels(folder, map_location))
        state = load_file(str(weights_path), device=str(map_location))
        model.load_pretrained_state(state, source=str(weights_path))
        model.to(map_location)
        model.eval()
        return model

    @classmethod
    def from_config(cls: type[_M], config: dict[str, Any], **submodels: nn.Module) -> _M:
        """Build a randomly initialised model (no weights) from a config dictionary and the
        ``submodels`` of ``load_submodels``."""
        config_cls = type(cls.default_config())
        known = {f.name for f in fields(config_cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.model_type} config fields {unknown}; known fields: {sorted(known)}."
            )
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return cls(**submodels, **kwargs)

    @classmethod
    def default_config(cls) -> Any:
        """An instance of the model's config dataclass with default values."""
        raise NotImplementedError


def model_class(model_type: str) -> type[PretrainedMixin]:
    """The class registered for a ``config.json``'s ``model_type``.

    Raises:
        ValueError: no class registers ``model_type``; the message lists the known ones.
    """
    if model_type not in _MODEL_TYPES:
        for module in LIBRARY_MODEL_MODULES:
            importlib.import_module(module)
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"unknown model_type {model_type!r}; known model types: {sorted(_MODEL_TYPES)}. "
            "Import the module that defines its class first."
        )
    return _MODEL_TYPES[model_type]


def load_pretrained(name_or_path: str | os.PathLike[str], **options: Any) -> PretrainedMixin:
    """Load whatever model a folder (Hub repo id, registered name) holds, by its ``model_type``.

    The same as [`from_pretrained`][robust_contrastive.models.PretrainedMixin.from_pretrained]
    (``options``: its keyword arguments) of the folder's own class: e.g. a
    [`RoCLEncoder`][robust_contrastive.RoCLEncoder] or a
    [`RobustLinearProbe`][robust_contrastive.evaluation.probe.RobustLinearProbe], in eval mode.
    """
    return PretrainedMixin.from_pretrained(name_or_path, **options)


def _read_pretrained_config(folder: Path, cls: type[_M]) -> tuple[type[_M], dict[str, Any], Path]:
    """Check a ``save_pretrained`` folder loaded as ``cls`` (files, JSON, format version and
    ``model_type``); return the class to build (``cls`` or a registered subclass), the config's
    other fields and the weights' path."""
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {cls.__name__}.from_pretrained expects a folder written by "
                f"save_pretrained (holding {CONFIG_NAME} and {WEIGHTS_NAME})."
            )
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{config_path} is not valid JSON ({err}): save the model again with save_pretrained."
        ) from err
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got {type(raw).__name__}.")
    found_type = raw.pop("model_type", None)
    own_type = getattr(cls, "model_type", None)
    if own_type is None and not isinstance(found_type, str):
        raise ValueError(
            f"{config_path} names no model_type, so the model type is unknown: load it with "
            "its class (e.g. RoCLEncoder.from_pretrained), or save it with save_pretrained."
        )
    if found_type == own_type:
        model_cls: type[PretrainedMixin] | None = cls
    elif own_type is None:  # a class with no model_type of its own loads any registered subclass
        model_cls = model_class(str(found_type))
    else:
        model_cls = _MODEL_TYPES.get(str(found_type))
    if model_cls is None or not issubclass(model_cls, cls):
        raise ValueError(
            f"{config_path} describes a {found_type!r} model, not a {own_type or cls.__name__!r}: "
            "load it with the matching class."
        )
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format_version {version!r}; this version of "
            f"robust-contrastive reads format_version {FORMAT_VERSION}. Upgrade the package."
        )
    return model_cls, raw, weights_path


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
