"""The registry of named pretrained models: pinned revisions and checked SHA-256."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from robust_contrastive import (
    ChecksumError,
    PretrainedModel,
    RobustLinearProbe,
    RoCLEncoder,
    list_pretrained,
    register_pretrained,
)
from robust_contrastive.registry import REGISTRY_FILE, entry_from_folder, unregister_pretrained

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "rocl-org/tiny-rocl"


def _hub_cache(tmp_path: Path, model: RoCLEncoder | RobustLinearProbe) -> tuple[Path, Path]:
    """``model`` laid out as huggingface_hub caches ``REPO`` at ``COMMIT``."""
    cache = tmp_path / "hub-cache"
    org, name = REPO.split("/")
    root = cache / f"models--{org}--{name}"
    snapshot = model.save_pretrained(root / "snapshots" / COMMIT)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    return cache, snapshot


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[tuple[RoCLEncoder, Path, Path]]:
    encoder = RoCLEncoder(width=4).eval()
    cache, snapshot = _hub_cache(tmp_path, encoder)
    entry = entry_from_folder(snapshot, name="tiny-rocl", repo_id=REPO, revision=COMMIT)
    register_pretrained(entry)
    yield encoder, cache, snapshot
    unregister_pretrained("tiny-rocl")


def test_the_shipped_registry_lists_only_models_with_files() -> None:
    raw = json.loads(REGISTRY_FILE.read_text())
    assert raw["format_version"] == 1
    for entry in list_pretrained():
        assert entry.folder is None or all((entry.folder / f).is_file() for f in entry.sha256)


def test_load_by_registry_name_at_the_pinned_revision(
    registered: tuple[RoCLEncoder, Path, Path],
) -> None:
    encoder, cache, _ = registered
    assert "tiny-rocl" in [e.name for e in list_pretrained()]
    loaded = RoCLEncoder.from_pretrained("tiny-rocl", cache_dir=cache, local_files_only=True)
    x = torch.rand(2, 3, 16, 16)
    assert not loaded.training
    assert torch.equal(loaded(x), encoder(x))
    with pytest.raises(ValueError, match="pinned to revision"):
        RoCLEncoder.from_pretrained("tiny-rocl", revision="main", cache_dir=cache)


def test_registry_name_with_hf_hub_offline(registered: tuple[RoCLEncoder, Path, Path]) -> None:
    _, cache, snapshot = registered
    entry = entry_from_folder(snapshot, name="tiny-rocl", repo_id=REPO, revision=COMMIT)
    code = (
        "from robust_contrastive import PretrainedModel, RoCLEncoder, register_pretrained\n"
        f"register_pretrained(PretrainedModel(**{entry.to_dict()!r}))\n"
        f"m = RoCLEncoder.from_pretrained('tiny-rocl', cache_dir={str(cache)!r})\n"
        "print(m.config.width, m.training)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["4", "False"]


def test_wrong_checksum_is_an_error(registered: tuple[RoCLEncoder, Path, Path]) -> None:
    _, cache, snapshot = registered
    weights = load_file(str(snapshot / "model.safetensors"))
    weights["conv1.weight"] = weights["conv1.weight"] + 1.0  # same keys, tampered values
    save_file(weights, str(snapshot / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ChecksumError, match="registry pins") as err:
        RoCLEncoder.from_pretrained("tiny-rocl", cache_dir=cache, local_files_only=True)
    assert "Nothing was loaded" in str(err.value)


def test_probe_entry_covers_its_encoder_weights(tmp_path: Path) -> None:
    probe = RobustLinearProbe(RoCLEncoder(width=4), num_classes=3).eval()
    probe.save_pretrained(tmp_path / "probe")
    entry = entry_from_folder(tmp_path / "probe", name="tiny-probe", repo_id=REPO, revision=COMMIT)
    assert set(entry.sha256) == {"model.safetensors", "encoder/model.safetensors"}
    assert entry.model_type == "rocl-linear-probe"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Bad Name", "lower-case"),
        ("repo_id", "no-slash", "org/name"),
        ("revision", "main", "40-hex-digit"),
        ("sha256", {"model.safetensors": "abc"}, "64-hex-digit"),
        ("sha256", {"../model.safetensors": "a" * 64}, "relative"),
    ],
)
def test_bad_entries_are_refused(field: str, value: object, message: str) -> None:
    values: dict[str, object] = {
        "name": "ok",
        "repo_id": REPO,
        "revision": COMMIT,
        "model_type": "rocl-encoder",
        "sha256": {"model.safetensors": "a" * 64},
    }
    with pytest.raises(ValueError, match=message):
        PretrainedModel(**{**values, field: value})  # type: ignore[arg-type]


def test_duplicate_registration_is_refused(registered: tuple[RoCLEncoder, Path, Path]) -> None:
    _, _, snapshot = registered
    entry = entry_from_folder(snapshot, name="tiny-rocl", repo_id=REPO, revision=COMMIT)
    with pytest.raises(ValueError, match="already registered"):
        register_pretrained(entry)
    register_pretrained(entry, overwrite=True)
