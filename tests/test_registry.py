"""The registry of named pretrained models: pinned revisions and checked SHA-256."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from robust_contrastive import (
    ChecksumError,
    PretrainedModel,
    RobustLinearProbe,
    RoCLEncoder,
    list_pretrained,
    register_pretrained,
)
from robust_contrastive.registry import (
    PRETRAINED_DIR,
    REGISTRY_FILE,
    _load_registry_file,
    entry_from_folder,
    unregister_pretrained,
    write_registry_entry,
)

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


def test_an_unpublished_model_must_be_bundled() -> None:
    values: dict[str, object] = {
        "name": "ok",
        "repo_id": REPO,
        "revision": None,
        "model_type": "rocl-encoder",
        "sha256": {"model.safetensors": "a" * 64},
    }
    with pytest.raises(ValueError, match="push the folder first"):
        PretrainedModel(**values)  # type: ignore[arg-type]
    entry = PretrainedModel(**values, bundled=True)  # type: ignore[arg-type]
    assert entry.revision is None
    assert "not published yet" in entry.source


def test_write_registry_entry_adds_replaces_and_checks_the_files(tmp_path: Path) -> None:
    registry_file = tmp_path / "registry.json"
    encoder = RoCLEncoder(width=4).eval()
    encoder.save_pretrained(tmp_path / "tiny-bundled")
    entry = entry_from_folder(
        tmp_path / "tiny-bundled", name="tiny-bundled", repo_id=REPO, revision=None, bundled=True
    )
    write_registry_entry(entry, registry_file)
    assert _load_registry_file(registry_file) == [entry]
    renamed = dataclasses.replace(entry, description="second version")
    write_registry_entry(renamed, registry_file)
    assert _load_registry_file(registry_file) == [renamed]  # replaced, not duplicated
    weights = tmp_path / "tiny-bundled" / "model.safetensors"
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, weights)
    with pytest.raises(ChecksumError, match="tiny-bundled"):
        write_registry_entry(entry, registry_file)
    assert _load_registry_file(registry_file) == [renamed]  # a refused entry changes nothing


# ---------------------------------------------------------------- the project's own models
# Bundled by ``tools/register_pretrained.py`` from a run of ``experiments/reproduce_cifar10.py``:
# every bundled entry must load offline by name and carry its measured figures in its card.
SHIPPED = ("rocl-resnet18-w16-cifar10-cpu", "simclr-resnet18-w16-cifar10-cpu")
BUNDLED = [entry for entry in list_pretrained() if entry.bundled]
ROOT = Path(__file__).resolve().parent.parent
CIFAR10_TRAIN = ROOT.parent / "shared" / "data" / "cifar10-train"


@pytest.mark.parametrize("entry", BUNDLED, ids=lambda entry: entry.name)
def test_a_bundled_model_loads_offline_by_name_with_its_card(
    entry: PretrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loader = {"rocl-encoder": RoCLEncoder, "rocl-linear-probe": RobustLinearProbe}
    model = loader[entry.model_type].from_pretrained(entry.name)
    assert not model.training
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    expected = 10 if entry.model_type == "rocl-linear-probe" else model.feature_dim
    assert out.shape == (2, expected)
    assert entry.folder is not None
    # The card's figures are the folder's own records, tied to these weights.
    card = ModelCard.load(entry.folder / "README.md")
    records = json.loads((entry.folder / "eval_results.json").read_text())["entries"]
    # One clean figure per set of evaluated images (records on the same images share it).
    card_clean = [
        r.metric_value for r in card.data.eval_results if r.metric_name.startswith("clean accuracy")
    ]
    clean = [100 * r["report"]["clean_accuracy"] for r in records]
    assert sorted(card_clean) == pytest.approx(sorted(set(clean)), abs=0.01)
    headline = "robust accuracy, PGD-20 linf eps=8/255 step=2/255"
    card_pgd = [
        r.metric_value for r in card.data.eval_results if r.metric_name.startswith(headline)
    ]
    recorded_pgd = [
        100 * result["accuracy"]
        for r in records
        for result in r["report"]["results"]
        if result["attack"] == "pgd"
        and result["norm"] == "linf"
        and result["steps"] == 20
        and result["eps"] == pytest.approx(8 / 255)
        and result["alpha"] == pytest.approx(2 / 255)
    ]
    assert sorted(card_pgd) == pytest.approx(sorted(recorded_pgd), abs=0.01)
    assert card_pgd, "the card lacks the headline PGD-20 figure"
    names = {r.metric_name for r in card.data.eval_results}
    assert "robust accuracy, AutoAttack (standard) linf eps=8/255" in names


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10_TRAIN.is_dir(), reason="needs ../shared/data/cifar10-train")
@pytest.mark.skipif(
    f"{SHIPPED[0]}-probe" not in {entry.name for entry in BUNDLED},
    reason="the reproduction's RoCL probe is not bundled yet",
)
def test_the_bundled_rocl_probe_gives_its_card_figures_when_re_evaluated() -> None:
    """Re-evaluate the bundled RoCL probe on the held-out images of the reproduction run."""
    from robust_contrastive import evaluate_robustness, load_dataset

    split = json.loads((ROOT / "experiments" / "results" / "cifar10_cpu_split.json").read_text())
    held_out = load_dataset(str(CIFAR10_TRAIN)).subset(split["val"])
    probe = RobustLinearProbe.from_pretrained(f"{SHIPPED[0]}-probe")
    report = evaluate_robustness(
        probe, held_out, ["linf-8/255"], seed=0, sanity_checks=False, progress=False
    )
    folder = PRETRAINED_DIR / f"{SHIPPED[0]}-probe"
    records = json.loads((folder / "eval_results.json").read_text())["entries"]
    stated = next(r["report"] for r in records if r["report"]["n_images"] == len(held_out))
    assert report.clean_accuracy == pytest.approx(stated["clean_accuracy"], abs=0.005)
    stated_pgd = next(r["accuracy"] for r in stated["results"] if r["name"] == "linf-8/255")
    assert report.accuracy("linf-8/255") == pytest.approx(stated_pgd, abs=0.005)
