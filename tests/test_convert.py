"""Conversion of checkpoints laid out as the original RoCL implementation saves them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_contrastive import ProjectionHead, RoCLEncoder
from robust_contrastive.cli import main
from robust_contrastive.convert import convert_encoder, convert_projector


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
