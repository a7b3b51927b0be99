"""The one atomic-write mechanism: the old file or the new one, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from robust_contrastive import _io


def test_atomic_write_text_replaces_the_file_and_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(_io.os, "fsync", counting_fsync)
    target = tmp_path / "record.json"
    target.write_text("old")
    assert _io.atomic_write_text(target, "new") == target
    assert target.read_text() == "new"
    assert len(calls) == 2  # the file's data, then the folder's rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old weights")

    def write_half_then_fail() -> None:
        with _io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half_then_fail()
    assert target.read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
