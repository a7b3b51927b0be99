"""RobustLinearProbe (clean linear evaluation and r-LE, eq. 7) and accuracy()."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robust_contrastive import PGD, ImageDataset, RoCLEncoder
from robust_contrastive.evaluation.checks import ProbeNotLearningWarning
from robust_contrastive.evaluation.probe import ProbeConfig, RobustLinearProbe, accuracy

NUM_CLASSES = 4
_PALETTE = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.7, 0.7, 0.2]])


def colour_data(n: int, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """A separable problem: the mean colour of an image encodes its class.

    Returns images (n, 3, 16, 16) float in [0, 1] and labels (n,) int64 (balanced).
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    colours = _PALETTE[labels].view(n, 3, 1, 1)  # (n, 3) -> (n, 3, 1, 1)
    images = colours + noise * torch.randn(n, 3, 16, 16, generator=generator)
    return images.clamp(0, 1), labels


def calibrate(encoder: RoCLEncoder) -> RoCLEncoder:
    """Give a random encoder sensible BatchNorm statistics (one pass over random images), so that
    its eval-mode features are not vanishingly small."""
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one pass sets the statistics
    encoder.train()
    with torch.no_grad():
        encoder(torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(5)))
    return encoder.eval()


@pytest.fixture
def encoder(tiny_encoder: RoCLEncoder) -> RoCLEncoder:
    return calibrate(tiny_encoder)


def _count_images(encoder: nn.Module) -> list[int]:
    """Attach a hook that appends the batch size of every encoder forward pass."""
    seen: list[int] = []
    encoder.register_forward_hook(lambda _m, inputs, _out: seen.append(int(inputs[0].shape[0])))
    return seen


def test_clean_probe_learns_a_separable_problem(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(64, seed=0)
    test_images, test_labels = colour_data(64, seed=1)
    probe = RobustLinearProbe(encoder, NUM_CLASSES, epochs=30, batch_size=16, lr=0.5, augment=False)
    history = probe.fit(images, labels, progress=False).history
    assert len(history) == 30
    assert history[-1]["loss"] < history[0]["loss"]
    assert not probe.training
    assert accuracy(probe, test_images, test_labels) >= 0.6  # chance is 0.25
    assert probe.best_epoch == 30


def test_fit_accepts_an_image_dataset(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(32, seed=0)
    dataset = ImageDataset(
        images=(images * 255).round().to(torch.uint8),
        labels=labels,
        classes=("red", "green", "blue", "yellow"),
    )
    probe = RobustLinearProbe(encoder, NUM_CLASSES, epochs=2, batch_size=8, augment=False)
    history = probe.fit(dataset, val=dataset, progress=False).history
    assert [h["epoch"] for h in history] == [1, 2]
    assert 0.0 <= history[-1]["val_clean_acc"] <= 1.0
    assert accuracy(probe, dataset) == pytest.approx(max(h["val_clean_acc"] for h in history))


def test_fast_path_encodes_once_and_matches_the_slow_path(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(40, seed=0)
    val_images, val_labels = colour_data(12, seed=1)
    epochs = 4
    fast = RobustLinearProbe(encoder, NUM_CLASSES, epochs=epochs, batch_size=16, augment=False)
    seen = _count_images(encoder)
    fast_history = fast.fit(images, labels, val=(val_images, val_labels), progress=False).history
    # One pass over the training data and one over the validation data, not one per epoch.
    assert sum(seen) == 40 + 12

    # The slow path (per-batch encoding) on the same, un-augmented images gives the same run.
    seen.clear()
    slow = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        epochs=epochs,
        batch_size=16,
        augment=True,
        augmentation=lambda x, _generator: x,
    )
    slow_history = slow.fit(images, labels, val=(val_images, val_labels), progress=False).history
    # per epoch, plus validation once, plus the clean training images once (the chance check)
    assert sum(seen) == 40 * epochs + 12 + 40
    for f, s in zip(fast_history, slow_history):
        assert f["loss"] == pytest.approx(s["loss"], rel=1e-4)
        assert f["train_clean_acc"] == s["train_clean_acc"]
    torch.testing.assert_close(fast.head.weight, slow.head.weight, rtol=1e-4, atol=1e-5)
    assert accuracy(fast, val_images, val_labels) == accuracy(slow, val_images, val_labels)


def test_rle_trains_on_the_injected_attack_once_per_batch(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(20, seed=0)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    outputs: list[torch.Tensor] = []

    def stub_attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append((x.clone(), y.clone()))
        adversarial = (1 - x).detach()  # clearly not the clean images
        outputs.append(adversarial)
        return adversarial

    probe = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=3,
        batch_size=8,
        augment=False,
        attack=stub_attack,
    )
    encoded: list[torch.Tensor] = []
    encoder.register_forward_hook(lambda _m, inputs, _out: encoded.append(inputs[0].clone()))
    probe.fit(images, labels, progress=False)

    assert len(calls) == 3 * 3  # 3 epochs of ceil(20 / 8) = 3 batches
    for x, y in calls:
        # the attack gets clean images with their own labels
        match = (images.unsqueeze(0) == x.unsqueeze(1)).flatten(2).all(dim=2)  # (b, 20)
        assert bool(match.any(dim=1).all())
        assert torch.equal(labels[match.int().argmax(dim=1)], y)
    # the encoder trained on exactly the stub's outputs, in order, then saw only the clean
    # training images, once (fit's chance-level check of the kept head)
    assert len(encoded) == len(outputs) + 3  # 20 clean images in batches of 8
    for seen, returned in zip(encoded, outputs):
        assert torch.equal(seen, returned)
    assert torch.equal(torch.cat(encoded[len(outputs) :]), images)


def test_rle_with_the_default_pgd_attack(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(16, seed=0)
    probe = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=2,
        batch_size=8,
        attack_steps=2,
        augment=False,
    )
    history = probe.fit(images, labels, progress=False).history
    assert len(history) == 2
    assert all(h["loss"] > 0 for h in history)
    assert probe.config.adversarial
    assert probe.config.alpha == pytest.approx(0.007)


def test_augmentation_then_attack(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(8, seed=0)
    order: list[str] = []

    def augmentation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert isinstance(generator, torch.Generator)
        order.append("augment")
        return x.flip(-1)

    def attack(x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        order.append("attack")
        return x

    probe = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=1,
        batch_size=4,
        attack=attack,
        augmentation=augmentation,
    )
    probe.fit(images, labels, progress=False)
    assert order == ["augment", "attack"] * 2


def test_encoder_is_frozen(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(16, seed=0)
    params = {k: v.clone() for k, v in encoder.named_parameters()}
    buffers = {k: v.clone() for k, v in encoder.named_buffers()}
    probe = RobustLinearProbe(
        encoder, NUM_CLASSES, adversarial=True, epochs=2, batch_size=8, attack_steps=1
    )  # SimCLR augmentation + real PGD: the slowest path touches the encoder most
    probe.train()
    assert not encoder.training
    probe.fit(images, labels, progress=False)
    for name, value in encoder.named_parameters():
        assert torch.equal(value, params[name]), name
        assert value.grad is None
        assert not value.requires_grad
    for name, buffer in encoder.named_buffers():
        assert torch.equal(buffer, buffers[name]), name  # BatchNorm statistics untouched
    assert not encoder.training
    assert probe.head.weight.requires_grad


def test_best_validation_epoch_is_kept_and_val_never_trains(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(32, seed=0)
    val_images, val_labels = colour_data(16, seed=1)
    wrong_labels = (val_labels + 1) % NUM_CLASSES  # the better the probe, the worse on these
    kwargs = {"epochs": 8, "batch_size": 8, "lr": 0.5, "augment": False}
    probe = RobustLinearProbe(encoder, NUM_CLASSES, **kwargs)  # type: ignore[arg-type]
    history = probe.fit(images, labels, val=(val_images, wrong_labels), progress=False).history
    scores = [h["val_clean_acc"] for h in history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # earliest of the best
    assert probe.best_epoch == best + 1
    assert accuracy(probe, val_images, wrong_labels) == pytest.approx(scores[best])

    # The validation data only selects: training is the same without it.
    plain = RobustLinearProbe(encoder, NUM_CLASSES, **kwargs)  # type: ignore[arg-type]
    plain_history = plain.fit(images, labels, progress=False).history
    assert [h["loss"] for h in plain_history] == [h["loss"] for h in history]
    assert plain.best_epoch == 8
    assert probe.best_epoch is not None
    assert probe.best_epoch < 8  # the selection did pick an earlier head here
    assert not torch.equal(plain.head.weight, probe.head.weight)


def test_robust_selection_keeps_the_epoch_with_the_best_pgd_accuracy(
    encoder: RoCLEncoder,
) -> None:
    images, labels = colour_data(32, seed=0)
    val_images, val_labels = colour_data(16, seed=1, noise=0.3)
    probe = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        eps=16 / 255,
        alpha=4 / 255,
        attack_steps=3,
        epochs=5,
        batch_size=8,
        lr=0.5,
        augment=False,
    )
    history = probe.fit(
        images, labels, val=(val_images, val_labels), select="robust", seed=2, progress=False
    ).history
    robust = [h["val_adv_acc"] for h in history]
    assert all("val_clean_acc" in h for h in history)  # clean accuracy is still recorded
    best = max(range(len(robust)), key=lambda i: (robust[i], -i))  # earliest of the best
    assert probe.best_epoch == best + 1
    # The kept head's accuracy under the same attack, recomputed with an independent PGD run
    # from the same random start, is the recorded score of its epoch. It attacks the same batches
    # of 8 as fit: one batch of 16 would round differently in float32, and a flipped near-zero
    # gradient sign would make another adversary on some CPUs.
    pgd = PGD(probe, eps=16 / 255, alpha=4 / 255, steps=3, norm="linf")
    generator = torch.Generator().manual_seed(2 + 1)
    adversarial = torch.cat(
        [pgd(val_images[i : i + 8], val_labels[i : i + 8], generator) for i in (0, 8)]
    )
    assert accuracy(probe, adversarial, val_labels) == pytest.approx(robust[best])
    assert min(robust) < max(h["val_clean_acc"] for h in history)  # the attack does bite


def test_select_must_be_clean_or_robust(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(8, seed=0)
    probe = RobustLinearProbe(encoder, NUM_CLASSES, epochs=1, augment=False)
    with pytest.raises(ValueError, match="select must be one of"):
        probe.fit(images, labels, val=(images, labels), select="pgd", progress=False)


def test_fit_is_reproducible_and_restarts(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(16, seed=0)
    probe = RobustLinearProbe(encoder, NUM_CLASSES, epochs=3, batch_size=8)
    probe.fit(images, labels, seed=3, progress=False)
    first = probe.head.weight.clone()
    probe.fit(images, labels, seed=3, progress=False)
    torch.testing.assert_close(probe.head.weight, first, rtol=0, atol=0)
    probe.fit(images, labels, seed=4, progress=False)
    assert not torch.equal(probe.head.weight, first)


def test_warm_start_continues_from_the_current_head(encoder: RoCLEncoder) -> None:
    """A short r-LE from a clean probe's head: it starts there, not from a fresh head."""
    images, labels = colour_data(16, seed=0)
    clean = RobustLinearProbe(encoder, NUM_CLASSES, epochs=5, batch_size=8, augment=False)
    clean.fit(images, labels, progress=False)
    robust = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=1,
        batch_size=16,
        lr=1e-12,
        attack_steps=1,
        augment=False,
    )
    robust.head.load_state_dict(clean.head.state_dict())
    robust.fit(images, labels, progress=False, warm_start=True)
    # lr ~ 0: one step from the clean head leaves it where it was.
    torch.testing.assert_close(robust.head.weight, clean.head.weight)
    robust.fit(images, labels, progress=False)  # without warm_start: a fresh head
    assert not torch.allclose(robust.head.weight, clean.head.weight)
    with pytest.raises(TypeError, match="warm_start"):
        robust.fit(images, labels, progress=False, warm_start=1)  # type: ignore[arg-type]


def test_step_schedule_follows_the_original() -> None:
    probe = RobustLinearProbe(RoCLEncoder("resnet18", width=4), 10, lr=0.1)
    rates = [probe.learning_rate(e) for e in (0, 29, 30, 49, 50, 99, 100, 149)]
    expected = [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4]
    assert rates == pytest.approx(expected)
    cosine = RobustLinearProbe(RoCLEncoder("resnet18", width=4), 10, epochs=10, schedule="cosine")
    assert cosine.learning_rate(0) == pytest.approx(0.1)
    assert cosine.learning_rate(5) == pytest.approx(0.05)


def test_save_and_load_round_trip(encoder: RoCLEncoder, tmp_path: Path) -> None:
    images, labels = colour_data(16, seed=0)
    probe = RobustLinearProbe(
        encoder,
        NUM_CLASSES,
        adversarial=True,
        epochs=1,
        batch_size=8,
        attack_steps=1,
        augment=False,
    )
    probe.fit(images, labels, progress=False)
    probe.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",  # the generated model card
        "config.json",
        "encoder",
        "model.safetensors",
    ]
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "rocl-linear-probe"
    assert config["num_classes"] == NUM_CLASSES
    assert config["feature_dim"] == encoder.feature_dim
    assert config["adversarial"] is True
    assert config["epochs"] == 1
    assert set(load_file(str(tmp_path / "model.safetensors"))) == {"weight", "bias"}

    loaded = RobustLinearProbe.from_pretrained(tmp_path)
    assert not loaded.training
    assert not loaded.encoder.training
    assert all(not p.requires_grad for p in loaded.encoder.parameters())
    assert loaded.config == probe.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), probe(images), rtol=0, atol=0)


def test_load_rejects_mismatched_weights(encoder: RoCLEncoder, tmp_path: Path) -> None:
    probe = RobustLinearProbe(encoder, NUM_CLASSES)
    probe.save_pretrained(tmp_path)
    save_file({"weight": torch.zeros(3, encoder.feature_dim)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing keys"):
        RobustLinearProbe.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="rocl-encoder"):
        RobustLinearProbe.from_pretrained(tmp_path / "encoder")
    with pytest.raises(FileNotFoundError):
        RobustLinearProbe.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("images", "labels", "error", "message"),
    [
        (torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 4]), ValueError, "num_classes"),
        (torch.rand(4, 3, 8, 8), torch.tensor([0, 1, -1, 2]), ValueError, ">= 0"),
        (torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2]), ValueError, "one label per image"),
        (torch.rand(0, 3, 8, 8), torch.zeros(0, dtype=torch.int64), ValueError, "empty"),
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4).long(), TypeError, "float"),
        (torch.rand(4, 3, 8, 8) * 2, torch.zeros(4).long(), ValueError, r"\[0, 1\]"),
        (torch.rand(4, 3, 8, 8), torch.zeros(4), TypeError, "integer"),
        (torch.rand(4, 3, 8, 8), None, ValueError, "labels"),
        (torch.rand(4, 1, 8, 8), torch.zeros(4).long(), ValueError, r"\(B, 3, H, W\)"),
        ([[0.0]], torch.zeros(1).long(), TypeError, "ImageDataset"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    tiny_encoder: RoCLEncoder, images: object, labels: object, error: type, message: str
) -> None:
    probe = RobustLinearProbe(tiny_encoder, NUM_CLASSES, epochs=1)
    with pytest.raises(error, match=message):
        probe.fit(images, labels, progress=False)  # type: ignore[arg-type]


def test_bad_dataset_and_validation_inputs(tiny_encoder: RoCLEncoder) -> None:
    probe = RobustLinearProbe(tiny_encoder, 2, epochs=1)
    dataset = ImageDataset(
        images=torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
        labels=torch.tensor([0, 1, 2]),
        classes=("a", "b", "c"),
    )
    with pytest.raises(ValueError, match="num_classes"):
        probe.fit(dataset, progress=False)
    with pytest.raises(ValueError, match="do not pass labels"):
        probe.fit(dataset, torch.tensor([0, 1, 1]), progress=False)
    images = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match="val labels"):
        probe.fit(images, torch.tensor([0, 1, 0, 1]), val=(images, torch.tensor([0, 5, 0, 1])))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 10, "schedule": "linear"}, "schedule"),
        ({"num_classes": 10, "epochs": 0}, "epochs"),
        ({"num_classes": 10, "batch_size": 0}, "batch_size"),
        ({"num_classes": 10, "lr": 0.0}, "lr"),
        ({"num_classes": 10, "eps": -1.0}, "eps"),
        ({"num_classes": 10, "attack_steps": -1}, "steps"),
    ],
)
def test_bad_settings_raise(
    tiny_encoder: RoCLEncoder, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RobustLinearProbe(tiny_encoder, **kwargs)  # type: ignore[arg-type]


def test_encoder_type_is_checked() -> None:
    with pytest.raises(TypeError, match="RoCLEncoder"):
        RobustLinearProbe(nn.Linear(2, 2), 2)  # type: ignore[arg-type]


def test_accuracy_counts_and_restores_the_mode(images: torch.Tensor) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    model.train()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    with torch.no_grad():
        expected = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy(model, images, labels, batch_size=3) == pytest.approx(expected)
    assert model.training
    with pytest.raises(ValueError, match="one label per image"):
        accuracy(model, images, labels[:3])


def test_probe_config_defaults_are_the_original_linear_evaluation() -> None:
    config = ProbeConfig(num_classes=10, feature_dim=512)
    assert (config.epochs, config.batch_size, config.momentum) == (150, 1024, 0.9)
    assert config.weight_decay == 5e-4
    assert (config.eps, config.alpha, config.attack_steps) == (8 / 255, 0.007, 10)
    assert config.schedule == "step"


def _collapsed(encoder: RoCLEncoder) -> RoCLEncoder:
    """An encoder whose features are all zero, whatever the image (a collapsed encoder)."""
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.zero_()
    return encoder.eval()


def test_a_probe_at_chance_warns(
    tiny_encoder: RoCLEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    images, labels = colour_data(40, seed=0)
    probe = RobustLinearProbe(_collapsed(tiny_encoder), NUM_CLASSES, epochs=3, augment=False)
    with pytest.warns(ProbeNotLearningWarning, match="at chance") as record:
        probe.fit(images, labels, progress=False)
    assert "25.0 %" in str(record[0].message)  # its accuracy: one class of four
    assert any("at chance" in r.getMessage() for r in caplog.records)  # logged too


def test_the_majority_class_of_imbalanced_data_is_chance(tiny_encoder: RoCLEncoder) -> None:
    images, _ = colour_data(40, seed=0)
    labels = torch.zeros(40, dtype=torch.int64)
    labels[:4] = 1  # 90 % of the images are of class 0: always predicting it scores 90 %
    probe = RobustLinearProbe(_collapsed(tiny_encoder), NUM_CLASSES, epochs=3, augment=False)
    with pytest.warns(ProbeNotLearningWarning, match=r"chance 90\.0 %"):
        probe.fit(images, labels, progress=False)


def test_a_probe_that_learns_does_not_warn(encoder: RoCLEncoder) -> None:
    images, labels = colour_data(64, seed=0)
    probe = RobustLinearProbe(encoder, NUM_CLASSES, epochs=30, batch_size=16, lr=0.5, augment=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeNotLearningWarning)
        probe.fit(images, labels, progress=False)
    assert accuracy(probe, images, labels) >= 0.6  # well above chance (0.25)
