"""Named pretrained models: short names pinned to a Hub repo, a revision and weight checksums.

A registered name loads the files shipped in ``pretrained/NAME`` (offline) when present, else the
pinned Hub commit; every weight file is checked against the registry's SHA-256 before anything is
loaded ([`resolve_model_folder`][robust_contrastive.registry.resolve_model_folder]).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ._io import atomic_write_text, sha256_file
from .hub import download_folder, is_repo_id, refuse_pickles
from .layout import CONFIG_NAME

logger = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
REGISTRY_FILE = PRETRAINED_DIR / "registry.json"
REGISTRY_VERSION = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumError(ValueError):
    """A registered model's weight file does not have the SHA-256 the registry records."""


@dataclass(frozen=True)
class PretrainedModel:
    """One registry entry."""

    name: str  # short name, e.g. "rocl-resnet18-cifar10"
    repo_id: str  # the Hugging Face Hub repo holding the files ("org/name")
    revision: str | None  # the pinned commit of that repo (40 hex digits); None only for a
    # bundled model not published yet (it then loads from the package, never from the Hub)
    model_type: str  # config.json's model_type: "rocl-encoder", "rocl-linear-probe", ...
    sha256: dict[str, str] = field(default_factory=dict)  # weight file -> SHA-256 hex digest
    description: str = ""  # one line: method, architecture, data, headline figures
    bundled: bool = False  # the files ship in robust_contrastive/pretrained/NAME

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"registry name {self.name!r} must be lower-case letters, digits, '.' and '-'."
            )
        if not is_repo_id(self.repo_id) or ".." in self.repo_id:
            raise ValueError(f"repo_id must be 'org/name', got {self.repo_id!r}.")
        if self.revision is None:
            if not self.bundled:
                raise ValueError(
                    f"{self.name!r} is not bundled, so it needs revision=<the 40-hex-digit commit "
                    f"of {self.repo_id} to load>: push the folder first (robust-contrastive push) "
                    "and pin the commit it made."
                )
        elif not isinstance(self.revision, str) or not _COMMIT.match(self.revision):
            raise ValueError(
                f"revision of {self.name!r} must be a 40-hex-digit commit hash (a pin), got "
                f"{self.revision!r}."
            )
        if not self.sha256 or not all(_SHA256.match(v) for v in self.sha256.values()):
            raise ValueError(
                f"sha256 of {self.name!r} must map each weight file to a 64-hex-digit digest."
            )
        for file in self.sha256:
            # Under both path flavours, so that "..\\x" or "C:x" cannot escape on Windows either.
            flavours = (PurePosixPath(file), PureWindowsPath(file))
            if not file or any(p.anchor or ".." in p.parts for p in flavours):
                raise ValueError(
                    f"weight file {file!r} of {self.name!r} must be a relative path inside the "
                    "model's folder (no '..', no drive or root)."
                )

    @property
    def source(self) -> str:
        """Where the files come from, for messages: ``repo@revision`` or ``unpublished``."""
        if self.revision is None:
            return f"{self.repo_id} (not published yet: bundled files only)"
        return f"revision {self.revision} of {self.repo_id}"

    @property
    def folder(self) -> Path | None:
        """The bundled folder, when the files ship with the package."""
        return PRETRAINED_DIR / self.name if self.bundled else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RUNTIME: dict[str, PretrainedModel] = {}


def _load_registry_file(path: Path = REGISTRY_FILE) -> list[PretrainedModel]:
    if not path.is_file():
        return []
    raw = json.loads(path.read_text())
    if raw.get("format_version") != REGISTRY_VERSION:
        raise ValueError(
            f"{path} has format_version {raw.get('format_version')!r}; expected {REGISTRY_VERSION}."
        )
    return [PretrainedModel(**entry) for entry in raw.get("models", [])]


def list_pretrained() -> list[PretrainedModel]:
    """The registered models whose files exist, sorted by name.

    Bundled entries are listed only when their files are in the package; Hub-only entries are
    listed because they are registered from a published revision.
    """
    entries = {e.name: e for e in _load_registry_file()}
    entries.update(_RUNTIME)
    listed = []
    for name in sorted(entries):
        folder = entries[name].folder
        if folder is None or all((folder / f).is_file() for f in entries[name].sha256):
            listed.append(entries[name])
        else:
            logger.warning(
                "registered model %s has no files in %s: not listed", name, PRETRAINED_DIR
            )
    return listed


def get_pretrained(name: str) -> PretrainedModel | None:
    """The entry called ``name``, or None when no such model is listed."""
    return next((entry for entry in list_pretrained() if entry.name == name), None)


def register_pretrained(entry: PretrainedModel, *, overwrite: bool = False) -> None:
    """Add ``entry`` to the registry of this process (e.g. an organisation's own models)."""
    known = {e.name for e in _load_registry_file()} | set(_RUNTIME)
    if entry.name in known and not overwrite:
        raise ValueError(
            f"a model called {entry.name!r} is already registered: pick another name or pass "
            "overwrite=True."
        )
    _RUNTIME[entry.name] = entry


def write_registry_entry(
    entry: PretrainedModel, path: str | os.PathLike[str] = REGISTRY_FILE
) -> Path:
    """Add ``entry`` to the registry file (replacing an entry of the same name), atomically.

    This is how the project's own models get into ``pretrained/registry.json``: from an entry
    made by [`entry_from_folder`][robust_contrastive.registry.entry_from_folder], so the checksums
    are the files' own. A bundled entry's files must already be in ``pretrained/NAME``.
    """
    target = Path(path)
    if entry.bundled:
        verify_checksums(entry, target.parent / entry.name)
    entries = {e.name: e for e in _load_registry_file(target)}
    entries[entry.name] = entry
    document = {
        "format_version": REGISTRY_VERSION,
        "models": [entries[name].to_dict() for name in sorted(entries)],
    }
    atomic_write_text(target, json.dumps(document, indent=2) + "\n")
    return target


def unregister_pretrained(name: str) -> None:
    """Remove a model added by
    [`register_pretrained`][robust_contrastive.registry.register_pretrained] (bundled entries stay).
    """
    _RUNTIME.pop(name, None)


def entry_from_folder(
    folder: str | os.PathLike[str],
    *,
    name: str,
    repo_id: str,
    revision: str | None,
    description: str = "",
    bundled: bool = False,
) -> PretrainedModel:
    """A registry entry for a ``save_pretrained`` folder: model type and checksums read from it.

    Every ``*.safetensors`` file under the folder gets a checksum, so an encoder's projector or
    a probe's encoder is covered too.
    """
    root = Path(folder)
    config = json.loads((root / CONFIG_NAME).read_text())
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.safetensors"))
    return PretrainedModel(
        name=name,
        repo_id=repo_id,
        revision=revision,
        model_type=str(config["model_type"]),
        sha256={f: sha256_file(root / f) for f in files},
        description=description,
        bundled=bundled,
    )


def verify_checksums(entry: PretrainedModel, folder: str | os.PathLike[str]) -> None:
    """Check every weight file of ``entry`` in ``folder`` against the registry.

    Raises:
        ChecksumError: a file is missing or its SHA-256 differs; the message says what to do.
    """
    root = Path(folder)
    for file, expected in entry.sha256.items():
        path = root / file
        if not path.is_file():
            raise ChecksumError(
                f"{entry.name}: {path} is missing; the registry expects it ({entry.source})."
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{entry.name}: {path} has SHA-256 {actual}, but the registry pins {expected} "
                f"({entry.source}). The file is corrupt or was "
                "replaced: delete it from the Hugging Face cache (or reinstall the package for a "
                "bundled model) and load again. Nothing was loaded."
            )


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
    refuse_pickles(path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    options = (cache_dir, local_files_only, token)
    if not path.exists():
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
                folder = download_folder(entry.repo_id, entry.revision, *options)
            verify_checksums(entry, folder)
            return folder
    if path.exists() or not is_repo_id(name):
        raise FileNotFoundError(
            f"{name} is neither a folder written by save_pretrained (holding config.json and "
            "model.safetensors), nor a Hugging Face Hub repo id ('org/name'), nor a registered "
            "name (robust_contrastive.list_pretrained())."
        )
    try:
        return download_folder(name, revision, *options)
    except FileNotFoundError as err:  # often a mistyped local folder that reads as "org/name"
        raise FileNotFoundError(
            f"no folder {path} exists here, so {name!r} was taken for a Hub repo id: {err}"
        ) from err
