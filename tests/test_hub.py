"""Loading by Hub repo id, offline: a hub-layout cache built in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robust_contrastive import RobustLinearProbe, RoCLEncoder
from robust_contrastive.hub import resolve_model_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(tmp_path: Path, model: RoCLEncoder | RobustLinearProbe, repo: str) -> Path:
    """Lay out ``model`` as huggingface_hub caches a downloaded repo at ``COMMIT``."""
    cache = tmp_path / "hub-cache"
    org, name = repo.split("/")
    root = cache / f"models--{org}--{name}"
    model.save_pretrained(root / "snapshots" / COMMIT)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    return cache


def test_encoder_by_repo_id_and_pinned_revision(tmp_path: Path) -> None:
    encoder = RoCLEncoder(width=4).eval()
    cache = _hub_cache(tmp_path, encoder, "rocl-org/tiny-encoder")
    x = torch.rand(2, 3, 16, 16)
    for revision in (None, "main", COMMIT):
        loaded = RoCLEncoder.from_pretrained(
            "rocl-org/tiny-encoder", revision=revision, cache_dir=cache, local_files_only=True
        )
        assert not loaded.training
        assert torch.equal(loaded(x), encoder(x))


def test_probe_with_its_encoder_folder_by_repo_id(tmp_path: Path) -> None:
    probe = RobustLinearProbe(RoCLEncoder(width=4), num_classes=3).eval()
    cache = _hub_cache(tmp_path, probe, "rocl-org/tiny-probe")
    loaded = RobustLinearProbe.from_pretrained(
        "rocl-org/tiny-probe", cache_dir=cache, local_files_only=True
    )
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded(x), probe(x))


def test_hf_hub_offline_environment_variable(tmp_path: Path) -> None:
    cache = _hub_cache(tmp_path, RoCLEncoder(width=4), "rocl-org/offline")
    code = (
        "from robust_contrastive import RoCLEncoder; "
        f"m = RoCLEncoder.from_pretrained('rocl-org/offline', cache_dir={str(cache)!r}); "
        "print(m.config.width)"
    )
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "4"


def test_missing_repo_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        RoCLEncoder.from_pretrained(
            "rocl-org/absent", cache_dir=tmp_path / "empty-cache", local_files_only=True
        )


def test_unknown_revision_offline_is_a_clear_error(tmp_path: Path) -> None:
    cache = _hub_cache(tmp_path, RoCLEncoder(width=4), "rocl-org/tiny-encoder")
    with pytest.raises(FileNotFoundError, match="revision v9"):
        RoCLEncoder.from_pretrained(
            "rocl-org/tiny-encoder", revision="v9", cache_dir=cache, local_files_only=True
        )


@pytest.mark.parametrize("name", ["not a repo id", "a/b/c", "./missing-folder", "/no/such/dir"])
def test_neither_folder_nor_repo_id(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        resolve_model_folder(name, local_files_only=True)
