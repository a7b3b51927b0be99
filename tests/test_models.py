from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from robust_contrastive import ProjectionHead, RoCLEncoder
from robust_contrastive.models import (
    Classifier,
    PretrainedMixin,
    RobustClassifier,
    load_pretrained,
    model_class,
)
from robust_contrastive.models.pretrained import CONFIG_NAME, WEIGHTS_NAME


@pytest.mark.parametrize(
    ("arch", "width", "feature_dim"),
    [("resnet18", 64, 512), ("resnet18", 4, 32), ("resnet34", 4, 32), ("resnet50", 4, 128)],
)
def test_feature_dims(arch: str, width: int, feature_dim: int) -> None:
    encoder = RoCLEncoder(arch, width=width)
    assert encoder.feature_dim == feature_dim
    if width == 4:
        assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, feature_dim)


def test_cifar_resnet18_matches_the_paper() -> None:
    encoder = RoCLEncoder("resnet18", width=64)
    assert encoder.conv1.kernel_size == (3, 3)
    assert encoder.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in encoder.modules())
    assert sum(p.numel() for p in encoder.parameters()) == 11_168_832  # ResNet18 minus its fc
    head = ProjectionHead()
    assert (head.linear_1.in_features, head.linear_1.out_features) == (512, 2048)
    assert head.linear_2.out_features == 128


def test_normalisation_inside_the_model() -> None:
    torch.manual_seed(0)
    plain = RoCLEncoder(width=4).eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalising = RoCLEncoder(width=4, mean=mean, std=std).eval()
    normalising.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 16, 16)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalising(x), plain(manual), atol=1e-6)
    assert set(normalising.state_dict()) == set(plain.state_dict())  # no extra weights


@pytest.mark.parametrize("normalise", [False, True])
def test_save_load_round_trip(tmp_path: Path, normalise: bool) -> None:
    kwargs = {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.2, 0.2)} if normalise else {}
    encoder = RoCLEncoder("resnet18", width=4, **kwargs)  # type: ignore[arg-type]
    encoder.train()
    encoder(torch.rand(4, 3, 16, 16))  # move the BatchNorm running statistics
    encoder.eval()
    encoder.save_pretrained(tmp_path)
    assert (tmp_path / WEIGHTS_NAME).is_file()
    assert (tmp_path / CONFIG_NAME).is_file()
    loaded = RoCLEncoder.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == encoder.config
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(loaded(x), encoder(x))

    head = ProjectionHead(encoder.feature_dim, 16, 8)
    head.save_pretrained(tmp_path / "projector")
    loaded_head = ProjectionHead.from_pretrained(tmp_path / "projector")
    f = torch.randn(3, encoder.feature_dim)
    assert torch.equal(loaded_head(f), head(f))


def test_strict_loading_errors(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / WEIGHTS_NAME))

    missing = dict(weights)
    del missing["conv1.weight"]
    save_file(missing, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=r"missing keys \[conv1.weight\]"):
        RoCLEncoder.from_pretrained(tmp_path)

    extra = dict(weights, **{"fc.weight": torch.zeros(2)})
    save_file(extra, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=r"unexpected keys \[fc.weight\]"):
        RoCLEncoder.from_pretrained(tmp_path)

    save_file(weights, str(tmp_path / WEIGHTS_NAME))
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "width": 8}))
    with pytest.raises(ValueError, match="shape mismatches"):
        RoCLEncoder.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "arch": "resnet19"}))
    with pytest.raises(ValueError, match="unknown arch"):
        RoCLEncoder.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "depth": 3}))
    with pytest.raises(ValueError, match="unknown rocl-encoder config fields"):
        RoCLEncoder.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(
        json.dumps({**config, "model_type": "rocl-projection-head"})
    )
    with pytest.raises(ValueError, match="matching class"):
        RoCLEncoder.from_pretrained(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        RoCLEncoder.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg16"}, "unknown arch"),
        ({"width": 0}, "width"),
        ({"mean": (0.5, 0.5, 0.5)}, "together"),
        ({"mean": (0.5, 0.5, 0.5), "std": (0.0, 1.0, 1.0)}, "positive"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoCLEncoder(**kwargs)  # type: ignore[arg-type]


def test_bad_forward_input() -> None:
    encoder = RoCLEncoder(width=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        encoder(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="in_dim"):
        ProjectionHead(16, 8, 4)(torch.rand(2, 32))


# ------------------------------------------------------------- the model_type registry, loaders
def _saved_models(tmp_path: Path) -> dict[str, tuple[type[PretrainedMixin], Path]]:
    """One folder of every model type: model_type -> (class, folder)."""
    from robust_contrastive import RobustLinearProbe

    torch.manual_seed(0)
    encoder = RoCLEncoder(width=4).eval()
    models: list[PretrainedMixin] = [
        encoder,
        ProjectionHead(encoder.feature_dim, 8, 4),
        RobustClassifier(encoder, num_classes=3),
        RobustLinearProbe(encoder, 3, epochs=1),
    ]
    return {m.model_type: (type(m), m.save_pretrained(tmp_path / m.model_type)) for m in models}


def test_the_generic_loader_returns_each_saved_type(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 16, 16)
    for model_type, (cls, folder) in _saved_models(tmp_path).items():
        loaded = load_pretrained(folder)
        assert type(loaded) is cls
        assert model_class(model_type) is cls
        assert not loaded.training
        same = cls.from_pretrained(folder)
        inputs = torch.rand(2, 32) if cls is ProjectionHead else images
        with torch.no_grad():
            assert torch.equal(loaded(inputs), same(inputs))


def test_classifier_loads_either_classifier_and_classes_refuse_other_types(
    tmp_path: Path,
) -> None:
    from robust_contrastive import RobustLinearProbe

    saved = _saved_models(tmp_path)
    probe_folder = saved["rocl-linear-probe"][1]
    assert isinstance(Classifier.from_pretrained(probe_folder), RobustLinearProbe)
    assert isinstance(
        Classifier.from_pretrained(saved["rocl-robust-classifier"][1]), RobustClassifier
    )
    with pytest.raises(ValueError, match="'rocl-encoder' model, not a 'Classifier'"):
        Classifier.from_pretrained(saved["rocl-encoder"][1])
    with pytest.raises(ValueError, match="matching class"):
        RobustClassifier.from_pretrained(probe_folder)
    with pytest.raises(ValueError, match="matching class"):
        RoCLEncoder.from_pretrained(probe_folder)


def test_a_config_without_model_type_is_refused_by_the_generic_loader(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    del config["model_type"]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="names no model_type"):
        load_pretrained(tmp_path)


def test_unknown_model_type_names_the_known_ones(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "model_type": "acl-encoder"}))
    with pytest.raises(ValueError, match="unknown model_type 'acl-encoder'") as err:
        load_pretrained(tmp_path)
    for known in ("rocl-encoder", "rocl-linear-probe", "rocl-robust-classifier"):
        assert known in str(err.value)
    with pytest.raises(ValueError, match="'acl-encoder' model, not a 'rocl-encoder'"):
        RoCLEncoder.from_pretrained(tmp_path)


def test_a_subclass_registers_its_model_type_once(tmp_path: Path) -> None:
    class WideEncoder(RoCLEncoder):
        model_type = "test-wide-encoder"

    WideEncoder(width=4).save_pretrained(tmp_path)
    assert type(load_pretrained(tmp_path)) is WideEncoder
    assert type(RoCLEncoder.from_pretrained(tmp_path)) is WideEncoder  # a registered subclass
    with pytest.raises(TypeError, match="already the model_type of"):

        class Clash(RoCLEncoder):
            model_type = "rocl-encoder"


def test_classifier_config_needs_its_encoder() -> None:
    with pytest.raises(TypeError, match="from_pretrained"):
        RobustClassifier.from_config({"feature_dim": 32, "num_classes": 3})
    with pytest.raises(ValueError, match="built for 16 features"):
        RobustClassifier.from_config(
            {"feature_dim": 16, "num_classes": 3}, encoder=RoCLEncoder(width=4)
        )
    with pytest.raises(ValueError, match="lacks the fields"):
        RobustClassifier.from_config({"num_classes": 3}, encoder=RoCLEncoder(width=4))


def test_bundled_folders_load_exactly_as_saved() -> None:
    """The folders shipped with the package (written before the one loader) load unchanged."""
    from robust_contrastive.registry import list_pretrained

    for entry in list_pretrained():
        if entry.folder is None:
            continue
        model = load_pretrained(entry.name)
        assert model.model_type == entry.model_type
        saved = load_file(str(entry.folder / WEIGHTS_NAME))
        assert saved.keys() == model.pretrained_state().keys()
        assert all(torch.equal(saved[k], v) for k, v in model.pretrained_state().items())
        if isinstance(model, Classifier):
            encoder = load_file(str(entry.folder / "encoder" / WEIGHTS_NAME))
            assert all(torch.equal(encoder[k], model.encoder.state_dict()[k]) for k in encoder)
