"""Dual BatchNorm (ACL): conversion, branch selection, and collapse to a plain encoder."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from robust_contrastive import RoCLEncoder
from robust_contrastive.models.dual_bn import (
    BranchView,
    DualBatchNorm,
    bn_branch,
    collapse_dual_bn,
    convert_dual_bn,
    has_dual_bn,
    set_bn_branch,
)


def _dual_encoder() -> RoCLEncoder:
    """A dual-BN encoder whose two branches differ (statistics and affine weights)."""
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global generator untouched
        torch.manual_seed(0)
        plain = RoCLEncoder("resnet18", width=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    encoder = convert_dual_bn(plain)
    generator = torch.Generator().manual_seed(1)
    for m in encoder.modules():
        if isinstance(m, DualBatchNorm):
            for norm in (m.clean, m.adv):
                shape = norm.running_mean.shape
                norm.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                with torch.no_grad():
                    norm.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                    norm.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
    return encoder


def test_conversion_keeps_the_class_and_doubles_the_batchnorms() -> None:
    plain = RoCLEncoder("resnet18", width=4)
    dual = convert_dual_bn(plain, inplace=False)
    assert type(dual) is RoCLEncoder
    assert not has_dual_bn(plain)
    assert has_dual_bn(dual)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    n_dual = sum(isinstance(m, DualBatchNorm) for m in dual.modules())
    assert n_bn == n_dual > 0
    keys = set(dual.state_dict())
    assert "bn1.clean.running_mean" in keys
    assert "bn1.adv.weight" in keys
    x = torch.rand(4, 3, 16, 16)
    plain.eval()
    dual.eval()
    with torch.no_grad():  # both branches start as copies: the same function as the original
        for branch in ("clean", "adv"):
            with bn_branch(dual, branch):
                torch.testing.assert_close(dual(x), plain(x))


@pytest.mark.parametrize("branch", ["adv", "clean"])
@pytest.mark.parametrize("training", [False, True])
def test_collapse_equals_the_dual_model_under_its_branch(branch: str, training: bool) -> None:
    dual = _dual_encoder()
    plain = collapse_dual_bn(dual, branch)
    assert type(plain) is RoCLEncoder
    assert not has_dual_bn(plain)
    assert set(plain.state_dict()) == set(RoCLEncoder("resnet18", width=4).state_dict())
    x = torch.rand(6, 3, 16, 16)
    dual.train(training)
    plain.train(training)
    with torch.no_grad(), bn_branch(dual, branch):
        expected = dual(x)
    with torch.no_grad():
        got = plain(x)
    torch.testing.assert_close(got, expected)
    other = "clean" if branch == "adv" else "adv"
    with torch.no_grad(), bn_branch(dual, other):
        assert not torch.allclose(dual(x), got)
    if training:  # the collapsed copy updated its own statistics as the branch did
        stats = {k: v for k, v in dual.state_dict().items() if f".{branch}.running_mean" in k}
        for key, value in stats.items():
            torch.testing.assert_close(plain.state_dict()[key.replace(f".{branch}", "")], value)


def test_default_collapse_is_the_adversarial_branch(tmp_path: Path) -> None:
    dual = _dual_encoder().eval()
    plain = collapse_dual_bn(dual)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad(), bn_branch(dual, "adv"):
        expected = dual(x)
    plain.save_pretrained(tmp_path)
    loaded = RoCLEncoder.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected)


def test_branch_selection_is_restored_and_views_pick_their_branch() -> None:
    dual = _dual_encoder().eval()
    set_bn_branch(dual, "clean")
    with bn_branch(dual, "adv"):
        assert all(m.branch == "adv" for m in dual.modules() if isinstance(m, DualBatchNorm))
    assert all(m.branch == "clean" for m in dual.modules() if isinstance(m, DualBatchNorm))
    with pytest.raises(RuntimeError), bn_branch(dual, "adv"):
        raise RuntimeError("inside")
    assert all(m.branch == "clean" for m in dual.modules() if isinstance(m, DualBatchNorm))
    x = torch.rand(2, 3, 16, 16)
    view = BranchView(dual, "adv")
    with torch.no_grad(), bn_branch(dual, "adv"):
        expected = dual(x)
    with torch.no_grad():
        torch.testing.assert_close(view(x), expected)
    view.train()
    assert dual.training  # the wrapped module follows the view's mode
    assert not list(view.parameters(recurse=False))


def test_errors() -> None:
    dual = _dual_encoder()
    with pytest.raises(ValueError, match="already"):
        convert_dual_bn(dual)
    with pytest.raises(ValueError, match="no dual"):
        collapse_dual_bn(RoCLEncoder("resnet18", width=4))
    with pytest.raises(ValueError, match="branch"):
        collapse_dual_bn(dual, "pgd")
    with pytest.raises(ValueError, match="branch"):
        set_bn_branch(dual, "normal")
    with pytest.raises(TypeError, match="BatchNorm"):
        DualBatchNorm(nn.Linear(2, 2))  # type: ignore[arg-type]
    head = convert_dual_bn(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), inplace=False)
    assert isinstance(head[1], DualBatchNorm)
    assert copy.deepcopy(head)[1].branch == "adv"
