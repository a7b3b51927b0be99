"""Save and load models as ``model.safetensors`` + ``config.json`` (the Hugging Face layout).

Every model of this library is rebuilt from its ``config.json`` alone and its weights are matched
strictly: a missing or unexpected key is an error that names the keys, never a silent partial load.
"""

from __future__ import annotations

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
from ..hub import resolve_model_folder
from ..layout import CONFIG_NAME as CONFIG_NAME
from ..layout import TRAIN_CONFIG_NAME
from ..layout import WEIGHTS_NAME as WEIGHTS_NAME

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

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The tensors written to ``model.safetensors`` (default: the whole state dict)."""
        return dict(self.state_dict())

    def save_submodels(self, directory: Path) -> None:
        """Write sub-models that have their own folder (e.g. ``encoder/``); default: none."""

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
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md``.

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

        Returns:
            The directory, as a ``Path``.
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
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{config_path} is not valid JSON ({err}): save the model again with save_pretrained."
        ) from err
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
