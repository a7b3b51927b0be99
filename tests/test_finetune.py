"""Adversarial fine-tuning (AT, TRADES, AT + SS) and the RobustClassifier: tiny CPU runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from robust_contrastive import ProjectionHead, RoCLEncoder
from robust_contrastive.data import ImageDataset
from robust_contrastive.evaluation.finetuning import (
    AdversarialFinetuning,
    FinetuneConfig,
    RobustClassifier,
    finetune,
    finetune_lr,
    random_crop_flip,
)
from robust_contrastive.training import NonFiniteLossError, save_checkpoint
from robust_contrastive.training import loop as loop_module

TINY = FinetuneConfig(
    epochs=1,
    batch_size=8,
    attack_steps=1,
    ss_attack_steps=1,
    val_attack_steps=1,
    lr=0.02,
    checkpoint_every=1,
    progress=False,
    device="cpu",
)


def _synthetic(n: int, seed: int) -> ImageDataset:
    """(n, 3, 16, 16) uint8 noise; class 1 has a bright red channel: learnable at a glance."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 80, (n, 3, 16, 16), dtype=torch.uint8, generator=generator)
    images[labels == 1, 0] += 150
    return ImageDataset(images, labels, ("dark", "red"))


@pytest.fixture
def data() -> ImageDataset:
    """32 images: 4 steps of 8 per epoch."""
    return _synthetic(32, 0)


@pytest.fixture
def val() -> ImageDataset:
    return _synthetic(8, 1)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- the three methods
@pytest.mark.parametrize("method", ["at", "trades", "at+ss"])
def test_each_method_runs_and_changes_the_weights(
    method: str, data: ImageDataset, tiny_encoder: RoCLEncoder, tiny_projector: ProjectionHead
) -> None:
    before = _weights(tiny_encoder)
    projector_before = _weights(tiny_projector)
    config = replace(TINY, method=method)
    projector = tiny_projector if method == "at+ss" else None
    result = finetune(tiny_encoder, data, config, projector=projector)

    assert len(result.history) == 1
    record = result.history[0]
    second = {"trades": "loss_kl", "at+ss": "loss_ss"}.get(method)
    for key in ("loss", "loss_ce", "train_clean_acc", "train_adv_acc", "lr", "images_per_s"):
        assert torch.isfinite(torch.tensor(record[key])), key
    assert 0 <= record["train_clean_acc"] <= 1
    assert 0 <= record["train_adv_acc"] <= 1
    assert ("loss_kl" in record, "loss_ss" in record) == (second == "loss_kl", second == "loss_ss")
    assert not _same(_weights(result.model.encoder), before)  # the encoder is fine-tuned
    assert _same(_weights(tiny_encoder), before)  # ... on a copy: the argument is untouched
    assert not result.model.training
    assert result.model(torch.rand(2, 3, 16, 16)).shape == (2, 2)
    if method == "at+ss":
        assert result.projector is not None
        assert not _same(_weights(result.projector), projector_before)
        assert _same(_weights(tiny_projector), projector_before)
    else:
        assert result.projector is None


def test_at_learns_an_easy_task(data: ImageDataset, tiny_encoder: RoCLEncoder) -> None:
    # train_clean_acc is measured in eval mode: BatchNorm statistics need a few dozen steps.
    config = replace(TINY, epochs=6, lr=0.01, lr_schedule="constant")
    result = finetune(tiny_encoder, data, config)
    assert result.history[-1]["train_clean_acc"] > 0.75
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_same_seed_same_result(data: ImageDataset, tiny_encoder: RoCLEncoder) -> None:
    a = finetune(tiny_encoder, data, TINY)
    b = finetune(tiny_encoder, data, TINY)
    assert _same(_weights(a.model), _weights(b.model))
    assert a.history[0]["loss"] == b.history[0]["loss"]


# ---------------------------------------------------------------------------- AT + SS
def test_at_ss_needs_a_matching_projector(data: ImageDataset, tiny_encoder: RoCLEncoder) -> None:
    config = replace(TINY, method="at+ss")
    with pytest.raises(ValueError, match=r'projector.*method="at"'):
        finetune(tiny_encoder, data, config)
    wrong = ProjectionHead(tiny_encoder.feature_dim + 1, 8, 4)
    with pytest.raises(ValueError, match="features"):
        finetune(tiny_encoder, data, config, projector=wrong)


# ---------------------------------------------------------------------------- scratch baseline
def test_no_encoder_trains_a_seeded_scratch_model(
    data: ImageDataset, tiny_encoder: RoCLEncoder
) -> None:
    scratch = finetune(None, data, TINY, arch="resnet18", width=4)
    again = finetune(None, data, TINY, arch="resnet18", width=4)
    pretrained = finetune(tiny_encoder, data, TINY)
    assert scratch.model.encoder.config.width == 4
    assert _same(_weights(scratch.model), _weights(again.model))  # seeded by config.seed
    assert not _same(_weights(scratch.model.encoder), _weights(pretrained.model.encoder))
    other_seed = finetune(None, data, replace(TINY, seed=1), width=4)
    assert not _same(_weights(scratch.model), _weights(other_seed.model))
    with pytest.raises(ValueError, match="arch"):
        finetune(None, data, TINY, arch="vgg", width=4)


# ---------------------------------------------------------------------------- saving, validation
def test_round_trip_gives_identical_logits(
    tmp_path: Path, tiny_encoder: RoCLEncoder, images: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = RobustClassifier(tiny_encoder, num_classes=5).eval()
    model.save_pretrained(tmp_path / "clf")
    assert (tmp_path / "clf" / "encoder" / "model.safetensors").is_file()
    loaded = RobustClassifier.from_pretrained(tmp_path / "clf")
    assert not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_from_pretrained_is_strict(tmp_path: Path, tiny_encoder: RoCLEncoder) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        RobustClassifier.from_pretrained(tmp_path / "missing")
    tiny_encoder.save_pretrained(tmp_path / "encoder_only")
    with pytest.raises(ValueError, match="'rocl-encoder' model"):
        RobustClassifier.from_pretrained(tmp_path / "encoder_only")
    # A head saved with another encoder width does not fit this folder's encoder.
    RobustClassifier(tiny_encoder, num_classes=3).save_pretrained(tmp_path / "a")
    RobustClassifier(RoCLEncoder("resnet18", width=8), num_classes=3).save_pretrained(
        tmp_path / "b"
    )
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="shape mismatches"):
        RobustClassifier.from_pretrained(tmp_path / "a")
    with pytest.raises(TypeError, match="from_pretrained"):
        RobustClassifier.from_config({"feature_dim": 32, "num_classes": 3})


def test_validation_selects_and_out_dir_holds_the_run(
    tmp_path: Path, data: ImageDataset, val: ImageDataset, tiny_encoder: RoCLEncoder
) -> None:
    config = replace(TINY, epochs=2)
    result = finetune(tiny_encoder, data, config, val=val, out_dir=tmp_path)
    assert result.best_epoch in (1, 2)
    assert sum(r["best"] for r in result.history) >= 1
    best = max(r["val_adv_acc"] for r in result.history)
    assert result.history[result.best_epoch - 1]["val_adv_acc"] == best
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert json.loads((tmp_path / "finetune_config.json").read_text())["epochs"] == 2
    loaded = RobustClassifier.from_pretrained(tmp_path)
    x = val.images.float() / 255
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
    data: ImageDataset,
    val: ImageDataset,
    tiny_encoder: RoCLEncoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = replace(TINY, epochs=2)
    reference = finetune(tiny_encoder, data, config, val=val, out_dir=tmp_path / "reference")

    def crash_after_epoch_one(state: dict[str, Any], path: Path) -> Path:
        written = save_checkpoint(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")
        return written

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_encoder, data, config, val=val, out_dir=tmp_path / "resumed")
    monkeypatch.undo()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()

    resumed = finetune(
        tiny_encoder, data, config, val=val, out_dir=tmp_path / "resumed", resume=True
    )
    assert _same(_weights(resumed.model), _weights(reference.model))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    assert resumed.best_epoch == reference.best_epoch
    with pytest.raises(ValueError, match=r"config differs.*eps: now"):
        finetune(
            tiny_encoder,
            data,
            replace(config, eps=4 / 255),
            out_dir=tmp_path / "resumed",
            resume=True,
        )
    with pytest.raises(ValueError, match="out_dir"):
        finetune(tiny_encoder, data, config, resume=True)


def test_nan_loss_raises(
    tmp_path: Path, data: ImageDataset, tiny_encoder: RoCLEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = AdversarialFinetuning.loss

    def poisoned(
        self: AdversarialFinetuning, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, stats = original(self, batch, generator)
        return loss * float("nan"), stats * float("nan")

    monkeypatch.setattr(AdversarialFinetuning, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        finetune(tiny_encoder, data, TINY, out_dir=tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


# ---------------------------------------------------------------------------- validation of input
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "pgd"),
        ("eps", -0.1),
        ("trades_beta", -1.0),
        ("epochs", 0),
        ("batch_size", 1),
        ("lr", 0.0),
        ("attack_norm", "l3"),
        ("augment", "cutout"),
        ("lr_schedule", "linear"),
        ("ss_alpha", float("nan")),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        FinetuneConfig(**{field: value})  # type: ignore[arg-type]


def test_labels_out_of_range(data: ImageDataset, tiny_encoder: RoCLEncoder) -> None:
    four_classes = ImageDataset(
        data.images, data.labels * 3 % 4, ("a", "b", "c", "d")
    )  # labels 0 and 3
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*num_classes=4"):
        finetune(tiny_encoder, four_classes, TINY, num_classes=2)
    with pytest.raises(ValueError, match=r"val labels"):
        finetune(tiny_encoder, data, TINY, val=four_classes)
    with pytest.raises(TypeError, match="ImageDataset"):
        finetune(tiny_encoder, data.images, TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        finetune(tiny_encoder, data, TINY, num_classes=1)


# ---------------------------------------------------------------------------- helpers
def test_random_crop_flip(images: torch.Tensor) -> None:
    uint8 = (images * 255).round().to(torch.uint8)
    out = random_crop_flip(uint8, 4, torch.Generator().manual_seed(0))
    again = random_crop_flip(uint8, 4, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert out.dtype == torch.float32
    assert torch.equal(out, again)
    assert float(out.min()) >= 0
    assert float(out.max()) <= 1
    # Without padding the crop is the image itself, possibly mirrored.
    plain = random_crop_flip(images, 0, torch.Generator().manual_seed(0))
    for original, augmented in zip(images, plain):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))
    assert any(not torch.equal(a, b) for a, b in zip(plain, images))  # some are flipped
    assert not torch.equal(out, uint8.float() / 255)
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(images, -1)


def test_lr_schedules() -> None:
    config = FinetuneConfig(epochs=100)
    assert finetune_lr(0, config) == pytest.approx(0.1)
    assert finetune_lr(49.9, config) == pytest.approx(0.1)
    assert finetune_lr(50, config) == pytest.approx(0.01)
    assert finetune_lr(75, config) == pytest.approx(0.001)
    cosine = replace(config, lr_schedule="cosine")
    assert finetune_lr(50, cosine) == pytest.approx(0.05)
