"""Hugging Face Hub I/O: download a model repo's files, refuse pickles, publish a folder.

A leaf module (of this package it imports the folder layout and, lazily, the version). Only JSON,
safetensors and markdown files are fetched: weights are never unpickled. ``HF_HUB_OFFLINE=1`` (or
``local_files_only=True``) reads the local cache and never touches the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .layout import CONFIG_NAME, WEIGHTS_NAME

HUB_FILE_PATTERNS: tuple[str, ...] = ("*.json", "*.jsonl", "*.safetensors", "*.md")
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".t7", ".tar")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub model repo id, ``"org/name"``."""
    return _REPO_ID.match(name) is not None


def download_folder(
    name: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    """The local snapshot of the JSON / safetensors / markdown files of Hub repo ``name``.

    The arguments are those of
    [`resolve_model_folder`][robust_contrastive.registry.resolve_model_folder]; a repo or
    revision not found (or not cached while offline) is a ``FileNotFoundError`` saying what to do.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from . import __version__

    try:
        folder = snapshot_download(
            name,
            revision=revision,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            local_files_only=local_files_only,
            token=token,
            allow_patterns=list(HUB_FILE_PATTERNS),
            library_name="robust-contrastive",
            library_version=__version__,
        )
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"{name} (revision {revision or 'main'}) is not in the local Hugging Face cache and "
            "may not be downloaded (HF_HUB_OFFLINE=1 or local_files_only=True, or no network): "
            "download it once while online, or pass a local folder."
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise FileNotFoundError(
            f"{name} (revision {revision or 'main'}) was not found on the Hugging Face Hub: check "
            "the repo id and revision, or pass token=... for a private repo."
        ) from err
    except HfHubHTTPError as err:
        raise FileNotFoundError(
            f"could not download {name} from the Hugging Face Hub: {err}"
        ) from err
    return Path(str(folder))


def _pickle_message(path: Path) -> str:
    return (
        f"{path} is a pickle checkpoint: robust-contrastive loads safetensors only, because "
        "unpickling can run arbitrary code. If it is a checkpoint of the original RoCL code, "
        f"convert it: robust-contrastive convert {path} --out DIR (it is read with "
        "torch.load(weights_only=True)); then load DIR."
    )


def refuse_pickles(path: Path) -> None:
    """Refuse a pickle checkpoint, or a folder holding pickles but no ``model.safetensors``.

    Raises:
        ValueError: with a message that says how to convert the checkpoint.
    """
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise ValueError(_pickle_message(path))
    if not path.is_dir() or (path / WEIGHTS_NAME).is_file():
        return
    pickles = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{path} holds no model.safetensors, only pickle files "
            f"({', '.join(p.name for p in pickles)}). " + _pickle_message(pickles[0])
        )


def push_folder_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload model with robust-contrastive",
    create_pr: bool = False,
) -> str:
    """Upload a ``save_pretrained`` folder (with its model card) to a Hub model repo.

    The repo is created if needed. Only the files ``from_pretrained`` reads are uploaded (JSON,
    JSON lines, safetensors, markdown), never checkpoints or pickles.

    Args:
        folder: a folder written by ``save_pretrained`` (``README.md`` included).
        repo_id: ``"org/name"``.
        private: create the repo private (only used when it does not exist yet).
        token: a Hub token with write access (default: the logged-in token).
        revision: the branch to push to (default: ``"main"``).
        create_pr: open a pull request instead of committing to the branch.

    Returns:
        The URL of the commit (or of the pull request).

    Raises:
        FileNotFoundError: the folder has no ``config.json`` or ``model.safetensors``.
        ValueError: ``repo_id`` is not ``"org/name"``.
    """
    root = Path(folder)
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (root / required).is_file():
            raise FileNotFoundError(
                f"{root / required} not found: push_to_hub uploads a folder written by "
                "save_pretrained."
            )
    if not is_repo_id(repo_id):
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}.")
    from huggingface_hub import HfApi

    from . import __version__

    api = HfApi(token=token, library_name="robust-contrastive", library_version=__version__)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=root,
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        create_pr=create_pr,
        allow_patterns=list(HUB_FILE_PATTERNS),  # fnmatch: "*" also matches "/"
    )
    return str(getattr(commit, "pr_url", None) or getattr(commit, "commit_url", commit))
