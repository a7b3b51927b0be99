"""Hugging Face Hub glue: turn a model name (a local folder or a Hub repo id) into a folder.

Every ``from_pretrained`` of this library accepts either a folder written by
``save_pretrained`` or a Hub repo id ``"org/name"``, optionally pinned to a ``revision``. Only
JSON, safetensors and markdown files are fetched: weights are never unpickled. Offline use
follows huggingface_hub: ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) reads the local
cache and never touches the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HUB_FILE_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.md")
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
        name_or_path: a folder written by ``save_pretrained``, or a Hub repo id ``"org/name"``.
        revision: a branch, tag or commit hash of the Hub repo (default: ``"main"``).
        cache_dir: the Hugging Face cache to use (default: huggingface_hub's).
        local_files_only: never download; use the local cache only.
        token: a Hub token for private repos (default: the logged-in token, if any).

    Raises:
        FileNotFoundError: not a folder and not a Hub repo id, or the repo / revision cannot be
            found (or is not cached while offline); the message says what to do.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or not _REPO_ID.match(name):
        raise FileNotFoundError(
            f"{name} is neither a folder written by save_pretrained (holding config.json and "
            "model.safetensors) nor a Hugging Face Hub repo id ('org/name')."
        )
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
