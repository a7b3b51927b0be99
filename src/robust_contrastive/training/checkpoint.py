"""Atomic training checkpoints: a crash while writing never replaces the last good one."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .._io import fsync_directory
from ..layout import LAST_CHECKPOINT as LAST_CHECKPOINT

CHECKPOINT_FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed and fsync'ed, and only then
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows): a process killed at
    any moment leaves either the previous checkpoint or the new one, never a torn file.

    Raises:
        OSError: the folder is not writable or the disk is full; the previous checkpoint is left
            untouched and the temporary file removed.
    """
    target = Path(path)
    payload = {"format_version": CHECKPOINT_FORMAT_VERSION, **state}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise OSError(
            err.errno,
            f"cannot write the checkpoint {target}: {err.strerror or err}. Choose a writable "
            "output folder.",
        ) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        previous = "the previous checkpoint is intact" if target.exists() else "no checkpoint"
        raise OSError(
            err.errno,
            f"writing the checkpoint {target} failed: {err.strerror or err}; {previous}. Free "
            "disk space (or fix the folder), then continue with resume=True / --resume.",
        ) from err
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by [`save_checkpoint`][robust_contrastive.training.save_checkpoint]
    with ``weights_only=True`` (no code execution), checking its format version."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a checkpoint of robust-contrastive that can be loaded safely (it "
            "needs code execution to unpickle, or it is corrupt): it was refused. Do not load "
            "files from untrusted sources; start a new run or use another out_dir."
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a training checkpoint.")
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format {version!r}; this version of robust-contrastive reads "
            f"format {CHECKPOINT_FORMAT_VERSION}."
        )
    return state
