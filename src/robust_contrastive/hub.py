"""Hugging Face Hub glue: turn a model name into a local folder, and publish a folder.

Every ``from_pretrained`` of this library accepts a folder written by ``save_pretrained``, a
Hub repo id ``"org/name"`` (optionally pinned to a ``revision``) or a registered short name
(see ``robust_contrastive.registry``: pinned revision, checked SHA-256). Only JSON,
safetensors and markdown files are fetched: weights are never unpickled. Offline use follows
huggingface_hub: ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) reads the local cache and
never touches the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .layout import CONFIG_NAME, WEIGHTS_NAME

HUB_FILE_PATTERNS: tuple[str, ...] = ("*.json", "*.jsonl", "*.safetensors", "*.md")
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".t7", ".tar")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_folder(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """A local folder holding the model's files.

    Args:
        name_or_path: a folder written by ``save_pretrained``, a Hub repo id ``"org/name"``, or
            a registered name (``list_pretrained()``), whose checksums are verified.
        revision: a branch, tag or commit hash of the Hub repo (default: ``"main"``); registered
            names are pinned and take no revision.
        cache_dir: the Hugging Face cache to use (default: huggingface_hub's).
        local_files_only: never download; use the local cache only.
        token: a Hub token for private repos (default: the logged-in token, if any).

    Raises:
        FileNotFoundError: not a folder, a Hub repo id or a registered name, or the repo /
            revision cannot be found (or is not cached while offline); the message says what
            to do.
        ValueError: ``name_or_path`` is a pickle checkpoint (or a folder holding only pickles),
            or a registered name was given a revision.
        ChecksumError: a registered model's weights do not match the registry's SHA-256.
    """
    path = Path(name_or_path)
    if path.is_dir():
        _refuse_pickle_only_folder(path)
        return path
    name = str(name_or_path)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise ValueError(_pickle_message(path))
    if not path.exists():
        from .registry import get_pretrained, verify_checksums

        entry = get_pretrained(name)
        if entry is not None:
            if revision is not None and revision != entry.revision:
                raise ValueError(
                    f"{name} is a registered name pinned to {entry.source}; to load another "
                    "revision pass the repo id: "
                    f"from_pretrained({entry.repo_id!r}, revision={revision!r})."
                )
            folder = entry.folder
            if folder is None:
                folder = _download(
                    entry.repo_id, entry.revision, cache_dir, local_files_only, token
                )
            verify_checksums(entry, folder)
            return folder
    if path.exists() or not _REPO_ID.match(name):
        raise FileNotFoundError(
            f"{name} is neither a folder written by save_pretrained (holding config.json and "
            "model.safetensors), nor a Hugging Face Hub repo id ('org/name'), nor a registered "
            "name (robust_contrastive.list_pretrained())."
        )
    try:
        return _download(name, revision, cache_dir, local_files_only, token)
    except FileNotFoundError as err:  # often a mistyped local folder that reads as "org/name"
        raise FileNotFoundError(
            f"no folder {path} exists here, so {name!r} was taken for a Hub repo id: {err}"
        ) from err


def _download(
    name: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    """``snapshot_download`` of the JSON / safetensors / markdown files of a Hub repo."""
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


def _refuse_pickle_only_folder(folder: Path) -> None:
    """A folder with pickles but no ``model.safetensors`` gets a message that says what to do."""
    if (folder / WEIGHTS_NAME).is_file():
        return
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} holds no model.safetensors, only pickle files "
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
        commit_message: the commit's message.
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
    if not _REPO_ID.match(repo_id):
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
