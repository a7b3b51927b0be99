"""Loading by Hub repo id, offline: a hub-layout cache built in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from robust_contrastive import ProjectionHead, RobustLinearProbe, RoCLEncoder
from robust_contrastive.registry import (
    ChecksumError,
    entry_from_folder,
    register_pretrained,
    resolve_model_folder,
    unregister_pretrained,
)

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


def test_a_pickle_only_checkpoint_is_refused_with_the_fix(tmp_path: Path) -> None:
    torch.save({"model": RoCLEncoder(width=4).state_dict()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pickle files.*robust-contrastive convert"):
        RoCLEncoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pickle checkpoint"):
        RoCLEncoder.from_pretrained(tmp_path / "pytorch_model.bin")


def test_push_to_hub_uploads_what_save_pretrained_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: dict[str, object] = {}

    def create_repo(self: object, repo_id: str, **kwargs: object) -> None:
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self: object, *, folder_path: Path, **kwargs: object) -> object:
        files = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*"))
        calls["files"] = files
        calls["card"] = (Path(folder_path) / "README.md").read_text()
        calls["upload"] = kwargs
        return type("Commit", (), {"pr_url": None, "commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    probe = RobustLinearProbe(RoCLEncoder(width=4), num_classes=3)
    url = probe.push_to_hub("rocl-org/tiny-probe", private=True)
    assert url == "https://hub/commit/1"
    assert calls["create_repo"] == (
        "rocl-org/tiny-probe",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    saved = probe.save_pretrained(tmp_path / "local")
    local = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*"))
    assert calls["files"] == local
    assert {"README.md", "config.json", "model.safetensors", "encoder/README.md"} <= set(local)
    assert 'RobustLinearProbe.from_pretrained("rocl-org/tiny-probe")' in str(calls["card"])
    upload = calls["upload"]
    assert isinstance(upload, dict)
    assert upload["repo_id"] == "rocl-org/tiny-probe"
    assert "*.safetensors" in upload["allow_patterns"]


def test_push_refuses_a_folder_without_weights(tmp_path: Path) -> None:
    from robust_contrastive.hub import push_folder_to_hub

    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        push_folder_to_hub(tmp_path, "rocl-org/x")


# ------------------------------------------------------------- a projector by its encoder's name
def _encoder_with_projector(folder: Path) -> tuple[RoCLEncoder, ProjectionHead]:
    """An encoder folder laid out as RoCLTrainer writes it: the projector in projector/."""
    encoder, projector = RoCLEncoder(width=4).eval(), ProjectionHead(32, 16, 8).eval()
    encoder.save_pretrained(folder)
    projector.save_pretrained(folder / "projector")
    return encoder, projector


def test_projector_by_a_bundled_name_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "rocl-resnet18-w16-cifar10-cpu"
    encoder = RoCLEncoder.from_pretrained(name)
    projector = ProjectionHead.from_pretrained(name)
    assert not projector.training
    assert projector.config.in_dim == encoder.feature_dim
    own_folder = ProjectionHead.from_pretrained(resolve_model_folder(name) / "projector")
    for mine, theirs in zip(projector.state_dict().values(), own_folder.state_dict().values()):
        assert torch.equal(mine, theirs)


def test_projector_by_a_registered_hub_name_is_checksum_verified(tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--rocl-org--tiny-run" / "snapshots" / COMMIT
    _, projector = _encoder_with_projector(snapshot)
    (snapshot.parents[1] / "refs").mkdir(parents=True)
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    entry = entry_from_folder(
        snapshot, name="tiny-run", repo_id="rocl-org/tiny-run", revision=COMMIT
    )
    assert "projector/model.safetensors" in entry.sha256
    register_pretrained(entry, overwrite=True)
    try:
        loaded = ProjectionHead.from_pretrained("tiny-run", cache_dir=cache, local_files_only=True)
        features = torch.rand(2, 32)
        assert torch.equal(loaded(features), projector(features))
        tensors = load_file(snapshot / "projector" / "model.safetensors")
        tensors["linear_1.bias"] = tensors["linear_1.bias"] + 1
        save_file(tensors, snapshot / "projector" / "model.safetensors")
        with pytest.raises(ChecksumError):
            ProjectionHead.from_pretrained("tiny-run", cache_dir=cache, local_files_only=True)
    finally:
        unregister_pretrained("tiny-run")


def test_projector_from_a_run_folder_and_its_own_folder(tmp_path: Path) -> None:
    _, projector = _encoder_with_projector(tmp_path / "run")
    features = torch.rand(2, 32)
    for source in (tmp_path / "run", tmp_path / "run" / "projector"):
        assert torch.equal(ProjectionHead.from_pretrained(source)(features), projector(features))


def test_no_projector_to_load_is_a_clear_error(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path / "alone")
    with pytest.raises(FileNotFoundError, match="without a projector/ sub-folder"):
        ProjectionHead.from_pretrained(tmp_path / "alone")
    with pytest.raises(FileNotFoundError, match="rocl-linear-probe"):
        ProjectionHead.from_pretrained("rocl-resnet18-w16-cifar10-cpu-probe")


def test_hub_is_a_leaf_module() -> None:
    """hub imports only the folder layout (and the version string): no cycle with registry."""
    import ast

    import robust_contrastive.hub as hub
    import robust_contrastive.registry as registry

    def package_imports(module: object) -> set[tuple[str, str]]:
        tree = ast.parse(Path(str(getattr(module, "__file__", ""))).read_text())
        return {
            (node.module or "", alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level > 0
            for alias in node.names
        }

    assert {module for module, _ in package_imports(hub)} <= {"layout", ""}
    assert {name for module, name in package_imports(hub) if not module} == {"__version__"}
    assert not any(m == "hub" and n.startswith("_") for m, n in package_imports(registry))
    for name in ("hub", "registry"):  # each imports alone, in a fresh interpreter
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys, robust_contrastive.{name}; "
                "print(' '.join(m for m in sys.modules if m.startswith('robust_contrastive.')))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert "robust_contrastive.models" not in loaded
        if name == "hub":
            assert "robust_contrastive.registry" not in loaded
