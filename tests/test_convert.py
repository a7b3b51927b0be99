"""Conversion of checkpoints laid out as the original implementations save them: RoCL, then
ACL / DynACL / AIR, DeACL (Lightning) and AdvCL."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_contrastive import ProjectionHead, RoCLEncoder
from robust_contrastive.cli import main
from robust_contrastive.convert import (
    convert_acl,
    convert_advcl,
    convert_checkpoint,
    convert_checkpoint_record,
    convert_deacl,
    convert_encoder,
    convert_projector,
    detect_layout,
    read_checkpoint,
)
from tests.reference.original_networks import (
    ACLResNet18,
    AdvCLResNet18,
    DeACLModule,
    DynACLMomentum,
    randomize,
    save_acl_checkpoint,
    save_advcl_checkpoint,
    save_dynacl_checkpoint,
    save_lightning_checkpoint,
)


class OriginalBlock(nn.Module):
    """The original BasicBlock, re-implemented from its published description."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class OriginalResNet18(nn.Module):
    """The original CIFAR ResNet18 (contrastive mode: no linear layer), at a given width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes, layers = width, []
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**i
            layers.append(
                nn.Sequential(OriginalBlock(planes, out, stride), OriginalBlock(out, out, 1))
            )
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)  # the original pools a 4x4 map of 32x32 inputs
        return out.view(out.size(0), -1)  # (B, C, 1, 1) -> (B, C)


class OriginalProjector(nn.Module):
    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, 2048)
        self.linear_2 = nn.Linear(2048, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear_2(F.relu(self.linear_1(x)))
        return out


def _save_like_the_original(model: nn.Module, path: Path) -> None:
    """As the original's utils.checkpoint: a DDP state dict (module. prefixes) in a dict."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {
            "epoch": 999,
            "acc": torch.tensor(1.0),
            "model": state,
            "rng_state": torch.get_rng_state(),
        },
        path,
    )


@pytest.fixture
def original(tmp_path: Path) -> tuple[OriginalResNet18, OriginalProjector, Path, Path]:
    torch.manual_seed(0)
    encoder, projector = OriginalResNet18(width=8), OriginalProjector(64)
    encoder.train()
    encoder(torch.rand(8, 3, 32, 32))  # non-trivial BatchNorm statistics
    encoder.eval()
    _save_like_the_original(encoder, tmp_path / "ckpt.t7rocl_0")
    _save_like_the_original(projector, tmp_path / "ckpt.t7rocl_0_projector")
    return encoder, projector, tmp_path / "ckpt.t7rocl_0", tmp_path / "ckpt.t7rocl_0_projector"


def test_converted_features_equal_the_original_network(
    original: tuple[OriginalResNet18, OriginalProjector, Path, Path],
) -> None:
    net, head, encoder_path, projector_path = original
    encoder, projector = convert_encoder(encoder_path), convert_projector(projector_path)
    assert (encoder.config.arch, encoder.config.width) == ("resnet18", 8)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), net(x), atol=1e-6)
        assert torch.allclose(projector(encoder(x)), head(net(x)), atol=1e-6)


def test_convert_command(
    original: tuple[OriginalResNet18, OriginalProjector, Path, Path], tmp_path: Path
) -> None:
    _, _, encoder_path, projector_path = original
    out = tmp_path / "converted"
    assert (
        main(["convert", str(encoder_path), "--projector", str(projector_path), "--out", str(out)])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["arch"] == "resnet18"
    RoCLEncoder.from_pretrained(out)
    ProjectionHead.from_pretrained(out / "projector")


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.t7"
    torch.save({"model": Exploit()}, path)
    with pytest.raises(ValueError, match="refused to load"):
        convert_encoder(path)
    assert not marker.exists()


def test_missing_key_and_wrong_files(
    original: tuple[OriginalResNet18, OriginalProjector, Path, Path], tmp_path: Path
) -> None:
    _, _, encoder_path, projector_path = original
    state = torch.load(encoder_path, weights_only=True)
    del state["model"]["module.layer2.0.bn1.running_mean"]
    torch.save(state, tmp_path / "broken.t7")
    with pytest.raises(ValueError, match="missing keys"):
        convert_encoder(tmp_path / "broken.t7")
    with pytest.raises(ValueError, match=r"no conv1\.weight"):
        convert_encoder(projector_path)
    with pytest.raises(ValueError, match="not an original projector"):
        convert_projector(encoder_path)
    with pytest.raises(FileNotFoundError):
        convert_encoder(tmp_path / "absent.t7")


# ------------------------------------------------------------------------------------------
# ACL / DynACL / AIR, DeACL (Lightning) and AdvCL layouts, against re-implementations of the
# original networks in their own layouts (tests/reference/original_networks.py).
WIDTH = 8


@dataclass(frozen=True)
class Originals:
    """The tiny original networks of the module fixture, their checkpoints and a batch."""

    nets: dict[str, ACLResNet18 | AdvCLResNet18 | DeACLModule]
    paths: dict[str, Path]
    x: torch.Tensor


def _features_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a, b, atol=1e-5, rtol=1e-5))


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Originals:
    """One tiny original network per layout, saved as its code saves it (random weights and
    BatchNorm statistics, every branch different)."""
    root = tmp_path_factory.mktemp("originals")
    torch.manual_seed(0)
    acl, advcl, deacl = ACLResNet18(WIDTH), AdvCLResNet18(WIDTH), DeACLModule(WIDTH)
    for seed, net in enumerate((acl, advcl, deacl)):
        randomize(net, seed)
        net.eval()
    save_acl_checkpoint(acl, root / "ACL_DS.pt")
    save_advcl_checkpoint(advcl, root / "epoch_1000.ckpt")
    save_lightning_checkpoint(deacl, root / "deacl-ep=99.ckpt")
    return Originals(
        nets={"acl": acl, "advcl": advcl, "deacl": deacl},
        paths={
            "acl": root / "ACL_DS.pt",
            "advcl": root / "epoch_1000.ckpt",
            "deacl": root / "deacl-ep=99.ckpt",
        },
        x=torch.rand(4, 3, 32, 32),
    )


def _original_features(originals: Originals, layout: str, branch: str) -> torch.Tensor:
    net, x = originals.nets[layout], originals.x
    with torch.no_grad():
        if isinstance(net, DeACLModule):
            backbone = net.backbone if branch == "student" else net.momentum_backbone
            features: torch.Tensor = backbone(x)
            return features
        return net.features(x, branch)


# (layout, converter, branch kept by default, its name in the original, another branch)
CASES = [
    ("acl", convert_acl, "adv", "pgd", "clean", "normal"),
    ("advcl", convert_advcl, "pgd", "pgd", "normal", "normal"),
    ("advcl", convert_advcl, "pgd", "pgd", "pgd_ce", "pgd_ce"),
    ("deacl", convert_deacl, "student", "student", "teacher", "teacher"),
]


@pytest.mark.parametrize(("layout", "convert", "default", "kept", "other", "other_name"), CASES)
def test_each_layout_converts_to_the_original_features_under_its_branch(
    originals: Originals,
    layout: str,
    convert: Callable[..., RoCLEncoder],
    default: str,
    kept: str,
    other: str,
    other_name: str,
) -> None:
    path = originals.paths[layout]
    x = originals.x
    encoder = convert(path)  # the default branch: the one the authors evaluate
    assert not encoder.training
    expected, elsewhere = (
        _original_features(originals, layout, kept),
        _original_features(originals, layout, other_name),
    )
    with torch.no_grad():
        features = encoder(x)
    assert features.shape == (4, 8 * WIDTH)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)
    assert not _features_close(features, elsewhere)  # a wrong branch would be seen
    with torch.no_grad():
        torch.testing.assert_close(convert(path, other)(x), elsewhere, atol=1e-5, rtol=1e-5)


def test_the_quirks_are_recorded_in_the_config(originals: Originals) -> None:
    acl_path, deacl_path = originals.paths["acl"], originals.paths["deacl"]
    advcl_path = originals.paths["advcl"]
    acl, deacl, advcl = convert_acl(acl_path), convert_deacl(deacl_path), convert_advcl(advcl_path)
    imagenet = torch.tensor([0.485, 0.456, 0.406])
    assert torch.equal(torch.tensor(acl.config.mean), imagenet)  # float32 values, exactly
    assert (acl.config.stem_padding, advcl.config.stem_padding) == (1, 1)
    assert advcl.config.mean is None
    assert advcl.config.std is None
    assert deacl.config.stem_padding == 2
    assert torch.equal(torch.tensor(deacl.config.std), torch.tensor([0.247, 0.243, 0.261]))
    # Without its recorded quirks the same weights give other features.
    x = originals.x
    plain = RoCLEncoder("resnet18", width=WIDTH)
    plain.load_state_dict(deacl.state_dict())
    with torch.no_grad():
        assert not _features_close(plain.eval()(x), deacl(x))


@pytest.mark.parametrize("layout", ["acl", "advcl", "deacl"])
def test_convert_save_pretrained_from_pretrained_round_trip(
    originals: Originals, layout: str, tmp_path: Path
) -> None:
    path = originals.paths[layout]
    encoder = convert_checkpoint(path)  # layout detected
    folder = encoder.save_pretrained(tmp_path / layout)
    loaded = RoCLEncoder.from_pretrained(folder)
    assert loaded.config == encoder.config
    x = originals.x
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("layout", "branch", "kept"),
    [("acl", None, "pgd"), ("advcl", "normal", "normal"), ("deacl", "teacher", "teacher")],
)
def test_convert_command_round_trip_per_layout(
    originals: Originals, layout: str, branch: str | None, kept: str, tmp_path: Path
) -> None:
    path = originals.paths[layout]
    out = tmp_path / "converted"
    argv = ["convert", str(path), "--layout", layout, "--out", str(out)]
    assert main(argv + (["--branch", branch] if branch else [])) == 0
    config = json.loads((out / "config.json").read_text())
    assert config.get("stem_padding", 1) == (2 if layout == "deacl" else 1)
    card = (out / "README.md").read_text()
    assert f"layout `{layout}`" in card
    assert path.name in card
    assert "Branch kept" in card
    with torch.no_grad():
        torch.testing.assert_close(
            RoCLEncoder.from_pretrained(out)(originals.x),
            _original_features(originals, layout, kept),
            atol=1e-5,
            rtol=1e-5,
        )


def test_heads_are_skipped_with_a_warning(
    originals: Originals, caplog: pytest.LogCaptureFixture
) -> None:
    path = originals.paths["advcl"]
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.convert"):
        convert_advcl(path)
    message = caplog.text
    for head in ("head_proj.*", "head_pred.*", "head_ce.*", "fc_500.*", "bn_list.0 of the encoder"):
        assert head in message


def test_each_converter_names_the_right_one_for_another_layout(
    originals: Originals, tmp_path: Path
) -> None:
    acl_path, deacl_path = originals.paths["acl"], originals.paths["deacl"]
    advcl_path = originals.paths["advcl"]
    with pytest.raises(ValueError, match="convert_deacl"):
        convert_acl(deacl_path)
    with pytest.raises(ValueError, match="convert_acl"):
        convert_advcl(acl_path)
    with pytest.raises(ValueError, match="convert_advcl"):
        convert_deacl(advcl_path)
    with pytest.raises(ValueError, match="convert_acl"):
        convert_encoder(acl_path)
    with pytest.raises(ValueError, match="unknown ACL branch"):
        convert_acl(acl_path, "pgd_ce")
    assert detect_layout(torch.load(acl_path, weights_only=True)["state_dict"]) == "acl"
    torch.save({"model": {"linear_1.weight": torch.zeros(2, 2)}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="match none of the layouts"):
        convert_checkpoint(tmp_path / "odd.pt")


def test_single_branch_acl_refuses_the_adversarial_branch(tmp_path: Path) -> None:
    net = ACLResNet18(WIDTH, bn_names=("normal",))  # ACL trained without --ACL_DS
    randomize(net, 3)
    save_acl_checkpoint(net.eval(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="branch='clean'"):
        convert_acl(tmp_path / "model.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            convert_acl(tmp_path / "model.pt", "clean")(x),
            net.features(x, "normal"),
            atol=1e-5,
            rtol=1e-5,
        )


def test_lightning_metadata_is_read_as_inert_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lightning checkpoint pickles its hyper-parameters as an ``AttributeDict`` (here a class
    of that name in a stand-in module): its code never runs and the weights are read."""
    calls: list[str] = []

    class AttributeDict(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: object, value: object) -> None:
            calls.append("setitem")
            super().__setitem__(key, value)

    modules = [
        "pytorch_lightning",
        "pytorch_lightning.utilities",
        "pytorch_lightning.utilities.parsing",
    ]
    for name in modules:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    AttributeDict.__module__ = modules[-1]
    AttributeDict.__qualname__ = "AttributeDict"
    sys.modules[modules[-1]].AttributeDict = AttributeDict  # type: ignore[attr-defined]
    module = DeACLModule(WIDTH)
    randomize(module, 5)
    # solo-learn's --data_dir is a pathlib.Path: read as an inert stand-in too.
    hparams = AttributeDict(lr=0.5, backbone_args={"cifar": True}, data_dir=Path("/data"))
    calls.clear()
    save_lightning_checkpoint(module.eval(), tmp_path / "last.ckpt", hparams)
    raw = read_checkpoint(tmp_path / "last.ckpt")
    assert type(raw["hyper_parameters"]) is dict
    assert raw["hyper_parameters"]["lr"] == 0.5
    assert not isinstance(raw["hyper_parameters"]["data_dir"], Path)  # a stand-in, not built
    assert not calls
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            convert_deacl(tmp_path / "last.ckpt")(x), module.backbone(x), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("where", ["state_dict", "hyper_parameters"])
def test_a_code_running_pickle_is_refused_in_every_layout(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    state: dict[str, object] = {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}
    payload = {"state_dict": state, "hyper_parameters": argparse.Namespace(lr=0.5)}
    if where == "state_dict":
        state["backbone.bn1.weight"] = Exploit()
    else:
        payload["hyper_parameters"] = Exploit()
    torch.save(payload, tmp_path / "evil.ckpt")
    for convert in (convert_deacl, convert_acl, convert_advcl, convert_checkpoint):
        with pytest.raises(ValueError, match="refused to load"):
            convert(tmp_path / "evil.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_stem_padding_two_keeps_the_feature_shape_and_defaults_write_the_same_files(
    tmp_path: Path,
) -> None:
    x = torch.rand(2, 3, 16, 16)
    assert RoCLEncoder("resnet18", width=4, stem_padding=2)(x).shape == (2, 32)
    default = RoCLEncoder("resnet18", width=4).save_pretrained(tmp_path / "default")
    assert "stem_padding" not in json.loads((default / "config.json").read_text())
    padded = RoCLEncoder("resnet18", width=4, stem_padding=2).save_pretrained(tmp_path / "p2")
    assert json.loads((padded / "config.json").read_text())["stem_padding"] == 2
    assert RoCLEncoder.from_pretrained(padded).conv1.padding == (2, 2)
    bundled = RoCLEncoder.from_pretrained("rocl-resnet18-w16-cifar10-cpu")  # no such field
    assert bundled.config.stem_padding == 1
    assert bundled.conv1.padding == (1, 1)
    with pytest.raises(ValueError, match="stem_padding"):
        RoCLEncoder("resnet18", width=4, stem_padding=-1)


def test_dynacl_two_network_file_converts_to_encoder_k(tmp_path: Path) -> None:
    """DynACL's ``model.pt`` holds ``encoder_q.*`` and ``encoder_k.*``: detected as the ACL
    layout, converted to ``encoder_k`` (the network DynACL evaluates), ``encoder_q`` skipped."""
    net = DynACLMomentum(WIDTH)
    randomize(net, 11)
    net.eval()
    save_dynacl_checkpoint(net, tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert detect_layout(state) == "acl"
    conversion = convert_checkpoint_record(tmp_path / "model.pt")
    assert conversion.layout == "acl"
    assert any("encoder_q.*" in group for group in conversion.skipped)
    assert any("encoder_k" in quirk for quirk in conversion.quirks)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        features = conversion.encoder(x)
        torch.testing.assert_close(features, net.encoder_k.features(x, "pgd"), atol=1e-5, rtol=1e-5)
        assert not _features_close(features, net.encoder_q.features(x, "pgd"))
        torch.testing.assert_close(
            convert_acl(tmp_path / "model.pt", "clean")(x),
            net.encoder_k.features(x, "normal"),
            atol=1e-5,
            rtol=1e-5,
        )


def test_the_card_says_when_the_branch_kept_is_not_the_evaluated_one(
    originals: Originals,
) -> None:
    acl_path, advcl_path = originals.paths["acl"], originals.paths["advcl"]
    for path, default, other in ((acl_path, None, "clean"), (advcl_path, None, "normal")):
        assert not any(
            "not the one" in q for q in convert_checkpoint_record(path, "auto", default).quirks
        )
        assert any(
            "not the one" in q for q in convert_checkpoint_record(path, "auto", other).quirks
        )


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_unreadable_files_raise_a_value_error(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "file.pt"
    if content == "truncated":
        torch.save({"model": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, path)
        path.write_bytes(path.read_bytes()[:100])
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"refused to load|not a readable torch\.save'd file"):
        read_checkpoint(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
