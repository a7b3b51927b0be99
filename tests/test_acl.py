"""ACL, DynACL and AIR on the training loop: the losses, schedules, attack and momentum update
equal the official code's (tests/reference/acl.py); tiny runs train, save a loadable encoder
(the adversarial branch) and resume exactly; the encoder work per image is the documented one."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import PairContrastiveAttack
from robust_contrastive.models.dual_bn import BranchView, bn_branch, collapse_dual_bn
from robust_contrastive.training import loop as loop_module
from robust_contrastive.training import save_checkpoint
from robust_contrastive.training.acl import (
    ACLObjective,
    ACLProjectionHead,
    acl_adv_weight,
    acl_loss,
    acl_lr,
    acl_strength,
    air_regularizers,
    build_acl_models,
    train_acl,
)
from robust_contrastive.training.acl_config import ACL_METHODS, ACLConfig
from tests.reference.acl import (
    OfficialProjHead,
    interleave,
    official_acl_ir_loss,
    official_acl_loss,
    official_air_strength_and_weight,
    official_dynacl_loss,
    official_dynacl_strengths,
    official_dynacl_weight_adv,
    official_lrs_per_epoch,
    official_lrs_per_step,
    official_momentum_update,
    official_pgd_contrastive,
)
from tests.reference.encoder_work import count_encoder_work
from tests.reference.original_networks import randomize

TINY: dict[str, Any] = {
    "width": 4,
    "epochs": 2,
    "batch_size": 16,
    "image_size": 16,
    "lr": 0.5,
    "warmup_epochs": 1,
    "augment_period": 1,
    "attack_steps": 2,
    "device": "cpu",
    "progress": False,
    "checkpoint_every": 1,
}


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=generator)


def _latents(n: int, batch: int = 12, dim: int = 10, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator, dtype=torch.float64) for _ in range(n)]


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------- losses
@pytest.mark.parametrize("weight_adv", [1.0, 1.2, 5 / 3, 2.0])
def test_acl_and_dynacl_losses_equal_the_official_ones(weight_adv: float) -> None:
    z1, z2, a1, a2 = _latents(4)
    loss, clean, adv = acl_loss((z1, z2), (a1, a2))
    torch.testing.assert_close(loss, official_acl_loss(interleave(z1, z2), interleave(a1, a2)))
    assert float(clean) > 0
    assert float(adv) > 0
    loss, _, _ = acl_loss((z1, z2), (a1, a2), adv_weight=weight_adv - 1)
    expected = official_dynacl_loss(interleave(z1, z2), interleave(a1, a2), weight_adv)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_air_loss_equals_the_official_acl_ir_loss(weight: float) -> None:
    base = _latents(5, seed=2)
    ours = [t.clone().requires_grad_(True) for t in base]
    theirs = [t.clone().requires_grad_(True) for t in base]
    z1, z2, zo, a1, a2 = ours
    contrastive, nat, adv = acl_loss((z1, z2), (a1, a2), adv_weight=weight, scale=1.0)
    sir, air = air_regularizers(z1, z2, zo, a1, a2)
    loss = contrastive + 0.5 * sir + 0.5 * air
    expected = official_acl_ir_loss(*theirs, weight=weight)
    for got, want in zip((loss, nat, adv, sir, air), expected, strict=True):
        torch.testing.assert_close(got, want)
    loss.backward()
    expected[0].backward()
    for a, b in zip(ours, theirs, strict=True):
        assert a.grad is not None
        assert b.grad is not None
        torch.testing.assert_close(a.grad, b.grad)


# ---------------------------------------------------------------------- schedules
def test_dynacl_schedules_equal_the_official_ones() -> None:
    config = ACLConfig.for_method("dynacl")
    strengths = official_dynacl_strengths(config.epochs, config.augment_period)
    for epoch in range(config.epochs):
        assert acl_strength(epoch, config) == pytest.approx(strengths[epoch])
        official = official_dynacl_weight_adv(epoch + 1, 50, config.epochs, 2 / 3)
        assert acl_adv_weight(epoch, config) == pytest.approx(official - 1)
    assert acl_strength(0, config) == 1.0
    assert acl_adv_weight(48, config) == 0.0
    assert acl_adv_weight(49, config) > 0  # the weight moves one epoch before the strength
    assert acl_strength(49, config) == 1.0
    acl = ACLConfig.for_method("acl")
    assert {acl_strength(e, acl) for e in range(0, 1000, 37)} == {1.0}
    assert {acl_adv_weight(e, acl) for e in range(0, 1000, 37)} == {0.0}


def test_air_schedules_equal_the_official_ones() -> None:
    config = ACLConfig.for_method("air")
    for epoch in range(config.epochs):
        strength, weight = official_air_strength_and_weight(epoch + 1, config.epochs)
        assert acl_strength(epoch, config) == pytest.approx(strength)
        assert acl_adv_weight(epoch, config) == pytest.approx(weight)


def test_lr_schedules_equal_the_official_ones() -> None:
    config = ACLConfig.for_method("acl", epochs=20, lr=5.0)
    steps = 3
    official = official_lrs_per_step(5.0, 20, steps)
    ours = [acl_lr(e + s / steps, config, steps) for e in range(20) for s in range(steps)]
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-12)
    dynacl = ACLConfig.for_method("dynacl", epochs=20, lr=5.0)
    official = official_lrs_per_epoch(5.0, 20)
    ours = [acl_lr(e + s / steps, dynacl, steps) for e in range(20) for s in range(steps)]
    assert ours == pytest.approx([lr for lr in official for _ in range(steps)], abs=1e-12)
    assert acl_lr(0.0, dynacl, steps) == 0.0  # the official DynACL's first epoch: lr 0


# ---------------------------------------------------------------------- attack
@pytest.mark.parametrize("momentum", [False, True])
def test_attack_iterates_equal_the_official_pgd_contrastive(momentum: bool) -> None:
    config = ACLConfig.for_method("acl", width=4)
    encoder, projector = build_acl_models(config)
    query = BranchView(nn.Sequential(encoder, projector), "adv").double().eval()
    key = None
    if momentum:
        key = copy.deepcopy(query)
        with torch.no_grad():
            for p in key.parameters():
                p.add_(0.05 * torch.randn_like(p))
    generator = torch.Generator().manual_seed(3)
    t1, t2 = (torch.rand(4, 3, 16, 16, generator=generator, dtype=torch.float64) for _ in "12")
    attack = PairContrastiveAttack(query, key, steps=3, random_start=False)

    def official_model(x: torch.Tensor) -> torch.Tensor:
        if key is None:
            return query(x)
        out = torch.zeros(x.shape[0], 32, dtype=x.dtype)  # swap=True: q on even, k on odd rows
        out[::2] = query(x[::2])
        out[1::2] = key(x[1::2])
        return out

    query.train()
    x_adv = attack(torch.cat((t1, t2)))
    assert query.training  # the attack restores the mode
    inputs = interleave(t1, t2)
    query.eval()
    expected = official_pgd_contrastive(official_model, inputs, torch.zeros_like(inputs), iters=3)
    a1, a2 = x_adv.chunk(2)
    torch.testing.assert_close(interleave(a1, a2), expected, rtol=0, atol=1e-12)
    assert float((x_adv - torch.cat((t1, t2))).abs().max()) <= 8 / 255 + 1e-12
    assert all(p.grad is None for p in query.parameters())
    with pytest.raises(TypeError, match="no target"):
        attack(torch.cat((t1, t2)), t1)
    with pytest.raises(ValueError, match="even"):
        attack(torch.cat((t1, t2))[:5])


def test_momentum_update_equals_the_official_one(images: torch.Tensor) -> None:
    config = ACLConfig.for_method("dynacl", **TINY)
    encoder, projector = build_acl_models(config)
    key_e, key_p = copy.deepcopy(encoder), copy.deepcopy(projector)
    with torch.no_grad():
        for p in [*encoder.parameters(), *projector.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    objective = ACLObjective(encoder, projector, config, key_e, key_p)
    expected = [p.detach().clone() for p in [*key_e.parameters(), *key_p.parameters()]]
    query = [p.detach() for p in [*encoder.parameters(), *projector.parameters()]]
    official_momentum_update(query, expected, m=0.99)
    objective._momentum_update()
    for got, want in zip([*key_e.parameters(), *key_p.parameters()], expected, strict=True):
        torch.testing.assert_close(got, want)


# ---------------------------------------------------------------------- head and one step
def _official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The library's dual-BN keys in the official layout: ``bn.clean`` / ``bn.adv`` ->
    ``bn.bn_list.0`` / ``bn.bn_list.1``."""
    renamed = (k.replace(".clean.", ".bn_list.0.").replace(".adv.", ".bn_list.1.") for k in state)
    return dict(zip(renamed, state.values(), strict=True))


@pytest.mark.parametrize("training", [False, True])
def test_projection_head_equals_the_official_proj_head(training: bool) -> None:
    """Three layers (twoLayerProj=False), the official key names, each branch its BatchNorms."""
    _, projector = build_acl_models(ACLConfig(width=4))
    randomize(projector, 0)
    official = OfficialProjHead(32)
    official.load_state_dict(_official_keys(projector.state_dict()), strict=True)
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(1))
    projector.train(training)
    official.train(training)
    for branch, name in (("clean", "normal"), ("adv", "pgd")):
        with torch.no_grad(), bn_branch(projector, branch):
            torch.testing.assert_close(projector(x), official(x, name))
    got = _official_keys(projector.state_dict())
    for key, value in official.state_dict().items():  # the statistics updated alike
        torch.testing.assert_close(got[key], value)
    assert isinstance(ACLProjectionHead(8).fc3, nn.Linear)


class _OfficialNet(nn.Module):
    """``resnet18(bn_names=['normal', 'pgd'])`` with ``fc = proj_head``, called as
    ``model(x, bn_name)``: a copy of the library's dual-BN encoder for the trunk (its branch
    picked by name) and the official head."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.fc = OfficialProjHead(encoder.feature_dim).double()
        self.fc.load_state_dict(_official_keys(projector.state_dict()), strict=True)

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        with bn_branch(self.encoder, {"normal": "clean", "pgd": "adv"}[bn_name]):
            out: torch.Tensor = self.fc(self.encoder(x), bn_name)
        return out


def _official_step(
    method: str,
    q: _OfficialNet,
    k: _OfficialNet | None,
    t1: torch.Tensor,
    t2: torch.Tensor,
    originals: torch.Tensor,
    config: ACLConfig,
) -> torch.Tensor:
    """One step of ``train()`` of train_simCLR.py --ACL_DS (acl), train_DynACL.py (dynacl:
    ``swap=True``, the momentum update after the forwards) or AIR's pretraining.py (air), up to
    the loss: the interleaved views, PGD_contrastive (eval mode, 'pgd'), then the training
    forwards ('pgd' on the adversarial views, 'normal' on the clean ones, AIR's originals)."""
    inputs = interleave(t1, t2)

    def model(x: torch.Tensor, bn_name: str) -> torch.Tensor:
        if k is None:
            return q(x, bn_name)
        out = torch.zeros(x.shape[0], q.encoder.feature_dim, dtype=x.dtype)  # swap=True
        out[::2] = q(x[::2], bn_name)
        out[1::2] = k(x[1::2], bn_name)
        return out

    for net in (q, k):
        if net is not None:
            net.eval()
    inputs_adv = official_pgd_contrastive(
        lambda x: model(x, "pgd"), inputs, torch.zeros_like(inputs), iters=config.attack_steps
    )
    for net in (q, k):
        if net is not None:
            net.train()
    features_adv = model(inputs_adv, "pgd")
    features = model(inputs, "normal")
    if k is not None:
        official_momentum_update(list(q.parameters()), list(k.parameters()), m=0.99)
    if method == "acl":
        return official_acl_loss(features, features_adv)
    if method == "dynacl":
        weight_adv = official_dynacl_weight_adv(1, config.augment_period, config.epochs, 2 / 3)
        return official_dynacl_loss(features, features_adv, weight_adv)
    z_orig = q(originals, "normal")
    _, weight = official_air_strength_and_weight(1, config.epochs)
    zi, zj, zi_adv, zj_adv = features[::2], features[1::2], features_adv[::2], features_adv[1::2]
    return official_acl_ir_loss(zi, zj, z_orig, zi_adv, zj_adv, weight=weight)[0]


@pytest.mark.parametrize("method", ACL_METHODS)
def test_one_step_equals_the_official_training_step(method: str) -> None:
    """ACLObjective.loss against the official step on the same views (the augmentation
    replaced, no random start): the loss, every gradient, every BatchNorm statistic of both
    branches, and DynACL's momentum copy after its update. Checks which branch and mode each
    forward uses, how the forwards are batched and the order of the updates."""
    config = ACLConfig.for_method(method, **{**TINY, "attack_random_start": False})
    encoder, projector = (m.double() for m in build_acl_models(config))
    randomize(encoder, 2)
    randomize(projector, 3)
    keys: tuple[nn.Module | None, nn.Module | None] = (None, None)
    if config.key_momentum > 0:
        keys = (copy.deepcopy(encoder), copy.deepcopy(projector))
        with torch.no_grad():  # a key copy that differs from the query
            for p in [*keys[0].parameters(), *keys[1].parameters()]:
                p.add_(0.02 * torch.randn_like(p)).requires_grad_(False)
        randomize(keys[0], 4)
    q = _OfficialNet(encoder, projector)
    k = None if keys[0] is None else _OfficialNet(keys[0], keys[1]).requires_grad_(False)
    objective = ACLObjective(encoder, projector, config, *keys)
    objective.train()
    generator = torch.Generator().manual_seed(5)
    originals, t1, t2 = (
        torch.rand(6, 3, 16, 16, generator=generator, dtype=torch.float64) for _ in "o12"
    )
    views = iter((t1, t2))
    objective.augment = lambda images, generator: next(views)  # type: ignore[assignment,misc]

    loss, _ = objective.loss((originals,), torch.Generator().manual_seed(0))
    expected = _official_step(method, q, k, t1, t2, originals, config)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    ours = [*encoder.parameters(), *projector.parameters()]
    for a, b in zip(ours, q.parameters(), strict=True):
        assert a.grad is not None
        assert b.grad is not None
        torch.testing.assert_close(a.grad, b.grad)
    pairs = [(encoder, q.encoder, False), (projector, q.fc, True)]
    if keys[0] is not None and keys[1] is not None and k is not None:
        pairs += [(keys[0], k.encoder, False), (keys[1], k.fc, True)]
    for library, official, rename in pairs:
        state = library.state_dict()
        state = _official_keys(state) if rename else state
        for key, value in official.state_dict().items():
            torch.testing.assert_close(state[key], value, msg=f"{method}: {key}")


# ---------------------------------------------------------------------- runs
@pytest.mark.parametrize("method", ACL_METHODS)
def test_tiny_run_trains_and_saves_the_adversarial_branch(
    method: str, tmp_path: Path, images: torch.Tensor
) -> None:
    config = ACLConfig.for_method(method, **TINY)
    result = train_acl(images, config, tmp_path)
    assert [r["epoch"] for r in result.history] == [1, 2]
    for record in result.history:
        assert all(
            torch.isfinite(torch.tensor(v)) for k, v in record.items() if k.startswith("loss")
        )
        assert record["images_per_s"] > 0
    if method != "acl":
        assert [r["aug_strength"] for r in result.history] == pytest.approx([1.0, 0.5])
    if method == "air":
        assert "loss_sir" in result.history[0]
        assert "loss_air" in result.history[0]
    saved = json.loads((tmp_path / "acl_config.json").read_text())
    assert saved["method"] == method
    loaded = RoCLEncoder.from_pretrained(tmp_path)
    x = images[:4].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.encoder(x))
    if method != "dynacl":  # the saved encoder is the adversarial branch of the trained one
        with torch.no_grad(), bn_branch(result.dual_encoder, "adv"):
            torch.testing.assert_close(loaded(x), result.dual_encoder(x))


def test_dynacl_saves_the_momentum_encoder(images: torch.Tensor) -> None:
    config = ACLConfig.for_method("dynacl", **TINY)
    encoder, projector = build_acl_models(config)
    key_e = copy.deepcopy(encoder).requires_grad_(False)
    key_p = copy.deepcopy(projector).requires_grad_(False)
    objective = ACLObjective(encoder, projector, config, key_e, key_p)
    assert list(objective.modules()) == ["encoder", "projector", "key_encoder", "key_projector"]
    objective.train()
    loss, stats = objective.loss((images[:8],), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in key_e.parameters())
    assert any(p.grad is not None for p in encoder.parameters())
    assert stats.shape == (len(objective.metrics),)
    result = train_acl(images, config)
    assert all(p.requires_grad for p in result.encoder.parameters())  # not frozen like the copy
    assert not torch.equal(
        collapse_dual_bn(result.dual_encoder).state_dict()["conv1.weight"],
        result.encoder.state_dict()["conv1.weight"],
    )


def test_resume_equals_an_uninterrupted_run(
    tmp_path: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ACLConfig.for_method("dynacl", **TINY)
    reference = train_acl(images, config, tmp_path / "reference")

    def crash_after_epoch_one(state: dict[str, Any], path: Path) -> Path:
        written = save_checkpoint(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")
        return written

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train_acl(images, config, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = train_acl(images, config, tmp_path / "resumed", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    for ours, theirs in (
        (resumed.encoder, reference.encoder),
        (resumed.dual_encoder, reference.dual_encoder),
        (resumed.projector, reference.projector),
    ):
        a, b = _weights(ours), _weights(theirs)
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"config differs.*key_momentum: now"):
        train_acl(images, replace(config, key_momentum=0.9), tmp_path / "resumed", resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        train_acl(images, config, resume=True)


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"method": "rocl"}, "method"),
        ({"reweight": "linear"}, "reweight"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"key_momentum": 1.0}, "key_momentum"),
        ({"batch_size": 1}, "batch_size"),
        ({"attack_steps": -1}, "attack_steps"),
        ({"sir_weight": -0.5}, "sir_weight"),
        ({"augment_period": 0}, "augment_period"),
        ({"min_lr": 10.0}, "min_lr"),
        ({"method": "dynacl"}, r"for_method\('dynacl'"),  # a label without DynACL's settings
        ({"method": "air"}, r"for_method\('air'"),
    ],
)
def test_bad_config_errors(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ACLConfig(**changes)


def test_for_method_defaults_and_errors(images: torch.Tensor) -> None:
    assert ACLConfig.for_method("acl") == ACLConfig()
    dynacl = ACLConfig.for_method("dynacl", epochs=3)
    assert (dynacl.method, dynacl.key_momentum, dynacl.epochs) == ("dynacl", 0.99, 3)
    air = ACLConfig.for_method("air")
    assert (air.sir_weight, air.air_weight, air.contrastive_scale) == (0.5, 0.5, 1.0)
    assert ACLConfig.from_dict(air.to_dict()) == air
    with pytest.raises(ValueError, match="unknown method"):
        ACLConfig.for_method("advcl")
    with pytest.raises(ValueError, match="method"):
        ACLConfig.for_method("acl", method="air")
    with pytest.raises(ValueError, match="unknown ACLConfig fields"):
        ACLConfig.for_method("acl", weight=2.0)
    with pytest.raises(TypeError, match="ACLConfig"):
        train_acl(images, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        train_acl(images[:, :1], ACLConfig.for_method("acl", **TINY))


def test_objective_refuses_single_batchnorm_models() -> None:
    config = ACLConfig(width=4)
    encoder, projector = build_acl_models(config)
    with pytest.raises(ValueError, match="encoder has no dual BatchNorm"):
        ACLObjective(collapse_dual_bn(encoder), projector, config)
    with pytest.raises(ValueError, match="projector has no dual BatchNorm"):
        ACLObjective(encoder, collapse_dual_bn(projector), config)


def test_config_module_imports_without_torch() -> None:
    code = (
        "import sys; import robust_contrastive.training.acl_config as c; c.ACLConfig; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------- encoder work
@pytest.mark.parametrize(("method", "fixed"), [("acl", 12), ("dynacl", 8), ("air", 15)])
def test_encoder_work_per_image(method: str, fixed: int, images: torch.Tensor) -> None:
    """Counted by a forward hook on one step: K attack steps of a forward + input-gradient
    backward of both views (4K), then ACL's training forwards + weight-gradient backwards of
    both views in both branches (4 x 3 = 12); AIR adds the original images' (3); DynACL's key
    copy embeds the second views without gradient (2 x 3 + 2 x 1 = 8). At K = 5: 32, 28, 35."""
    config = ACLConfig.for_method(method, **{**TINY, "attack_steps": 5})
    encoder, projector = build_acl_models(config)
    keys = (None, None)
    if config.key_momentum > 0:
        keys = (copy.deepcopy(encoder), copy.deepcopy(projector))
    objective = ACLObjective(encoder, projector, config, *keys)
    objective.train()
    batch = images[:8]
    with count_encoder_work() as total:
        objective.loss((batch,), torch.Generator().manual_seed(0))
    assert total[0] / batch.shape[0] == 4 * config.attack_steps + fixed


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 0.5), ("l1", 2.0)])
def test_attack_contract(norm: str, eps: float) -> None:
    """Within the ball and [0, 1], the modes restored, no parameter gradient, eps 0 a copy."""
    encoder, projector = build_acl_models(ACLConfig(width=4))
    model = BranchView(nn.Sequential(encoder, projector), "adv").train()
    views = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    attack = PairContrastiveAttack(model, eps=eps, alpha=eps / 4, steps=3, norm=norm)
    x_adv = attack(views, None, torch.Generator().manual_seed(0))
    p = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    assert float((x_adv - views).flatten(1).norm(p=p, dim=1).max()) <= eps * (1 + 1e-5)
    assert float(x_adv.min()) >= 0
    assert float(x_adv.max()) <= 1
    assert model.training
    assert all(q.grad is None for q in model.parameters())
    assert torch.equal(PairContrastiveAttack(model, eps=0.0)(views), views)
    assert "temperature=0.5" in repr(attack)
