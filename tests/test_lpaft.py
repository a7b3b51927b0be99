"""DynACL++'s post-processing (LP-AFT): k-means equals the official assignment
(tests/reference/lpaft.py), the TRADES stage equals the official ``trades_loss`` from the same
start, a tiny run saves a loadable encoder, resumes without redoing finished stages, and never
reads a label."""

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

from robust_contrastive import RoCLEncoder
from robust_contrastive.attacks import TradesAttack
from robust_contrastive.cli import main
from robust_contrastive.data import ImageDataset
from robust_contrastive.evaluation import finetuning as finetuning_module
from robust_contrastive.evaluation.finetuning import (
    AdversarialFinetuning,
    FinetuneConfig,
    finetune_lr,
)
from robust_contrastive.evaluation.probe import RobustLinearProbe
from robust_contrastive.models.classifier import RobustClassifier
from robust_contrastive.training import loop as loop_module
from robust_contrastive.training import lpaft as lpaft_module
from robust_contrastive.training import save_checkpoint
from robust_contrastive.training.lpaft import (
    FINETUNE_DIR,
    PROBE_DIR,
    PSEUDO_LABELS_NAME,
    LPAFTConfig,
    kmeans,
    pseudo_labels,
    train_lpaft,
)
from tests.reference.encoder_work import count_encoder_work
from tests.reference.lpaft import official_kmeans, official_lr, official_trades_loss

# A tiny encoder's probe on random images is at chance: the warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:the linear probe is at chance")

TINY = LPAFTConfig(
    clusters=3,
    probe_epochs=1,
    epochs=1,
    batch_size=16,
    attack_steps=2,
    device="cpu",
    progress=False,
    checkpoint_every=1,
)


@pytest.fixture
def encoder() -> RoCLEncoder:
    torch.manual_seed(0)
    return RoCLEncoder("resnet18", width=4).eval()


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=generator)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    ours, theirs = _weights(a), _weights(b)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)


# ------------------------------------------------------------------------------ config
def test_defaults_are_the_official_run() -> None:
    config = LPAFTConfig()
    assert (config.clusters, config.kmeans_init, config.kmeans_tol) == (10, "random", 1e-4)
    assert (config.probe_epochs, config.probe_lr) == (10, 0.01)
    assert (config.probe_momentum, config.probe_weight_decay) == (0.9, 1e-4)
    assert (config.epochs, config.lr, config.milestones) == (25, 0.1, (10, 20))
    assert (config.momentum, config.weight_decay, config.trades_beta) == (0.9, 1e-4, 6.0)
    assert (config.eps, config.alpha, config.attack_steps) == (8 / 255, 2 / 255, 10)
    assert (config.batch_size, config.crop_padding) == (512, 4)


def test_config_module_is_torch_free() -> None:
    code = (
        "import sys; import robust_contrastive.training.lpaft_config as c; "
        "c.LPAFTConfig; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_round_trip_and_milestones() -> None:
    config = LPAFTConfig(milestones=[3, 5])  # type: ignore[arg-type]  # a JSON list
    assert config.milestones == (3, 5)
    assert LPAFTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert LPAFTConfig(milestones=[]).milestones == ()  # type: ignore[arg-type]  # constant lr


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"clusters": 1}, "clusters"),
        ({"kmeans_init": "farthest"}, "kmeans_init"),
        ({"kmeans_tol": 0.0}, "kmeans_tol"),
        ({"probe_epochs": 0}, "probe_epochs"),
        ({"milestones": (20, 10)}, "milestones"),
        ({"momentum": 1.0}, "momentum"),
        ({"batch_size": 1}, "batch_size"),
        ({"trades_beta": -1.0}, "trades_beta"),
        ({"device": "gpu0"}, "device"),
    ],
)
def test_bad_config_errors(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LPAFTConfig(**changes)


# ------------------------------------------------------------------------------ k-means
def test_kmeans_recovers_well_separated_clusters() -> None:
    generator = torch.Generator().manual_seed(1)
    centres = torch.eye(4, 6) * 20  # (4, 6): four far-apart centres
    truth = torch.arange(4).repeat_interleave(25)  # (100,)
    points = centres[truth] + 0.1 * torch.randn(100, 6, generator=generator)
    for init in ("random", "k-means++"):
        labels, centroids = kmeans(points, 4, generator=torch.Generator().manual_seed(2), init=init)
        # every true cluster is one found cluster, and the four are distinct
        mapping = {int(t): set(labels[truth == t].tolist()) for t in range(4)}
        assert all(len(found) == 1 for found in mapping.values()), (init, mapping)
        assert len({next(iter(found)) for found in mapping.values()}) == 4
        for t, found in mapping.items():
            torch.testing.assert_close(centroids[next(iter(found))], centres[t], atol=0.1, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_matches_the_official_assignment(seed: int) -> None:
    data = torch.randn(300, 8, generator=torch.Generator().manual_seed(10 + seed))
    data = data.double()
    labels, centroids = kmeans(data, 5, generator=torch.Generator().manual_seed(seed))
    start = torch.randperm(300, generator=torch.Generator().manual_seed(seed))[:5]
    expected_labels, expected_centroids = official_kmeans(data, 5, start)
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(centroids, expected_centroids)


def test_kmeans_is_deterministic_under_a_generator() -> None:
    data = torch.randn(200, 4, generator=torch.Generator().manual_seed(3))
    for init in ("random", "k-means++"):
        first = kmeans(data, 6, generator=torch.Generator().manual_seed(7), init=init)
        second = kmeans(data, 6, generator=torch.Generator().manual_seed(7), init=init)
        assert torch.equal(first[0], second[0])
        assert torch.equal(first[1], second[1])
        assert first[0].dtype == torch.int64
        assert int(first[0].min()) >= 0
        assert int(first[0].max()) < 6


def test_kmeans_iteration_cap_and_empty_clusters(caplog: pytest.LogCaptureFixture) -> None:
    data = torch.randn(50, 3, generator=torch.Generator().manual_seed(4))
    with caplog.at_level("WARNING"):
        labels, _ = kmeans(data, 4, generator=torch.Generator().manual_seed(0), iterations=1)
    assert "without converging" in caplog.text
    assert labels.shape == (50,)
    # duplicated rows: k-means++ still finds k distinct starts while it can
    same = torch.zeros(6, 2)
    same[3:] = 1.0
    labels, _ = kmeans(same, 2, generator=torch.Generator().manual_seed(0), init="k-means++")
    assert sorted(torch.bincount(labels).tolist()) == [3, 3]
    # two distinct rows, three clusters: a cluster is left empty and takes a row (the official
    # rule), never a NaN mean
    lone = torch.zeros(10, 2)
    lone[9] = 5.0
    labels, centroids = kmeans(lone, 3, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.bincount(labels, minlength=3).tolist()) == [0, 1, 9]
    assert bool(torch.isfinite(centroids).all())
    assert {tuple(c) for c in centroids.tolist()} == {(0.0, 0.0), (5.0, 5.0)}


@pytest.mark.parametrize(
    ("features", "k", "kwargs", "error", "match"),
    [
        (torch.randn(5, 2), 6, {}, ValueError, "at least 6 rows"),
        (torch.randn(5), 2, {}, TypeError, "2-D"),
        (torch.full((5, 2), float("nan")), 2, {}, ValueError, "NaN"),
        (torch.randn(5, 2), 0, {}, ValueError, "k must"),
        (torch.randn(5, 2), 2, {"init": "farthest"}, ValueError, "init"),
        (torch.randn(5, 2), 2, {"tol": 0.0}, ValueError, "tol"),
    ],
)
def test_kmeans_bad_input_errors(
    features: torch.Tensor, k: int, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        kmeans(features, k, **kwargs)


def test_pseudo_labels_keep_the_encoder_mode(encoder: RoCLEncoder, images: torch.Tensor) -> None:
    encoder.train()
    labels, centroids = pseudo_labels(encoder, images, 3, generator=torch.Generator())
    assert encoder.training
    assert labels.shape == (32,)
    assert centroids.shape == (3, encoder.feature_dim)
    with pytest.raises(TypeError, match="RoCLEncoder"):
        pseudo_labels(torch.nn.Linear(2, 2), images, 3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ TRADES stage
def test_trades_stage_equals_the_official_loss(encoder: RoCLEncoder, images: torch.Tensor) -> None:
    """From the same start, the attack's iterates and the loss equal ``utils.trades_loss``."""
    config = FinetuneConfig(
        method="trades", attack_steps=3, augment="none", device="cpu", progress=False
    )
    torch.manual_seed(5)
    model = RobustClassifier(copy.deepcopy(encoder), 3).train()
    theirs, attacked_copy = copy.deepcopy(model), copy.deepcopy(model)
    batch = images[:8]
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    x = batch.float() / 255
    start = TradesAttack(model).start(x, torch.Generator().manual_seed(0))
    loss, _ = AdversarialFinetuning(model, None, config).loss(
        (batch, labels), torch.Generator().manual_seed(0)
    )
    expected, x_adv = official_trades_loss(theirs, x, labels, start, perturb_steps=3)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    attack = TradesAttack(attacked_copy, steps=3)  # before any BatchNorm update
    attacked = attack.perturb(x, None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(attacked, x_adv, rtol=0, atol=1e-6)


def test_lr_schedules_are_the_official_ones() -> None:
    config = LPAFTConfig()
    tuned = FinetuneConfig(
        lr=config.lr, epochs=config.epochs, lr_schedule="step", milestones=config.milestones
    )
    for epoch in range(1, config.epochs + 1):
        assert finetune_lr(epoch - 1, tuned) == pytest.approx(official_lr(epoch))


def test_encoder_work_per_image(encoder: RoCLEncoder, images: torch.Tensor) -> None:
    """One fine-tuning step, counted by a forward hook: the eval-mode clean forward of the
    accuracy statistics (1), the clean prediction the attack aims from (1), K attack steps
    (2K), the training forwards and weight-gradient backwards of x and x_adv (3 + 3): 8 + 2K
    units per image, 28 at the official K = 10."""
    config = FinetuneConfig(method="trades", attack_steps=10, device="cpu", progress=False)
    model = RobustClassifier(copy.deepcopy(encoder), 3).train()
    batch, labels = images[:8], torch.zeros(8, dtype=torch.long)
    with count_encoder_work() as total:
        AdversarialFinetuning(model, None, config).loss(
            (batch, labels), torch.Generator().manual_seed(0)
        )
    assert total[0] / batch.shape[0] == 8 + 2 * config.attack_steps


def test_finetune_starts_from_the_given_head(encoder: RoCLEncoder) -> None:
    head = torch.nn.Linear(encoder.feature_dim, 3)
    config = FinetuneConfig(device="cpu")
    model, _ = finetuning_module._build_models(encoder, None, 3, config, "resnet18", 4, head)
    torch.testing.assert_close(model.head.weight, head.weight)
    torch.testing.assert_close(model.head.bias, head.bias)
    assert model.head.weight is not head.weight  # copied
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        finetuning_module._build_models(
            encoder, None, 4, config, "resnet18", 4, torch.nn.Linear(encoder.feature_dim, 3)
        )
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        finetuning_module._build_models(
            encoder,
            None,
            3,
            config,
            "resnet18",
            4,
            torch.nn.Identity(),  # type: ignore[arg-type]
        )


# ------------------------------------------------------------------------------ end to end
def test_tiny_run_saves_a_loadable_encoder(
    tmp_path: Path, encoder: RoCLEncoder, images: torch.Tensor
) -> None:
    before = _weights(encoder)
    result = train_lpaft(encoder, images, TINY, tmp_path / "run")
    assert all(torch.equal(before[k], v) for k, v in _weights(encoder).items())
    loaded = RoCLEncoder.from_pretrained(tmp_path / "run")
    x = images[:4].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.encoder(x))
    saved = json.loads((tmp_path / "run" / PSEUDO_LABELS_NAME).read_text())
    assert saved["labels"] == result.pseudo_labels.tolist()
    assert saved["cluster_sizes"] == result.cluster_sizes
    assert sum(result.cluster_sizes) == 32
    assert (tmp_path / "run" / PROBE_DIR / "config.json").is_file()
    assert (tmp_path / "run" / FINETUNE_DIR / "checkpoints" / "last.pt").is_file()
    assert [r["epoch"] for r in result.history] == [1]
    assert {"loss", "loss_ce", "loss_kl", "train_adv_acc"} <= set(result.history[0])
    assert result.probe_history[0]["lr"] == pytest.approx(TINY.probe_lr)
    assert not result.encoder.training
    tuned = _weights(result.encoder)
    assert not all(torch.equal(before[k], tuned[k]) for k in before)  # it was fine-tuned


def test_no_label_is_used(encoder: RoCLEncoder, images: torch.Tensor) -> None:
    labels = torch.arange(32) % 4
    classes = ("a", "b", "c", "d")
    permuted = labels[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    first = train_lpaft(encoder, ImageDataset(images, labels, classes), TINY)
    second = train_lpaft(encoder, ImageDataset(images, permuted, classes), TINY)
    unlabelled = train_lpaft(encoder, images, TINY)
    assert torch.equal(first.pseudo_labels, second.pseudo_labels)
    assert torch.equal(first.pseudo_labels, unlabelled.pseudo_labels)
    _assert_same_weights(first.encoder, second.encoder)
    _assert_same_weights(first.encoder, unlabelled.encoder)


def test_resume_skips_finished_stages_and_equals_an_uninterrupted_run(
    tmp_path: Path,
    encoder: RoCLEncoder,
    images: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = replace(TINY, epochs=2, milestones=(1,))
    reference = train_lpaft(encoder, images, config, tmp_path / "reference")
    assert [r["lr"] for r in reference.history] == pytest.approx([0.1, 0.01])

    def crash_after_epoch_one(state: dict[str, Any], path: Path) -> Path:
        written = save_checkpoint(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")
        return written

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train_lpaft(encoder, images, config, tmp_path / "resumed")
    monkeypatch.undo()

    def redone(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished stage was redone")

    monkeypatch.setattr(lpaft_module, "pseudo_labels", redone)
    monkeypatch.setattr(RobustLinearProbe, "fit", redone)
    resumed = train_lpaft(encoder, images, config, tmp_path / "resumed", resume=True)
    monkeypatch.undo()
    assert [r["loss"] for r in resumed.history] == pytest.approx(
        [r["loss"] for r in reference.history]
    )
    assert torch.equal(resumed.pseudo_labels, reference.pseudo_labels)
    _assert_same_weights(resumed.encoder, reference.encoder)
    probe_losses = [[r["loss"] for r in run.probe_history] for run in (resumed, reference)]
    assert probe_losses[0] == pytest.approx(probe_losses[1])

    with pytest.raises(ValueError, match="other settings"):
        train_lpaft(
            encoder, images, replace(config, trades_beta=1.0), tmp_path / "resumed", resume=True
        )
    other = RoCLEncoder("resnet18", width=4)
    with pytest.raises(ValueError, match="another encoder"):
        train_lpaft(other, images, config, tmp_path / "resumed", resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        train_lpaft(encoder, images, config, resume=True)


def test_bad_arguments_error(encoder: RoCLEncoder, images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="LPAFTConfig"):
        train_lpaft(encoder, images, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RoCLEncoder"):
        train_lpaft(torch.nn.Linear(2, 2), images, TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        train_lpaft(encoder, images[:, :1], TINY)
    with pytest.raises(ValueError, match="cannot make 3 clusters"):
        train_lpaft(encoder, images[:2], TINY)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_lpaft(encoder, images.float(), TINY)  # float images must be in [0, 1]


def test_cli(tmp_path: Path, encoder: RoCLEncoder, capsys: pytest.CaptureFixture[str]) -> None:
    encoder.save_pretrained(tmp_path / "encoder")
    out = tmp_path / "out"
    argv = [
        "lpaft", "--model", str(tmp_path / "encoder"), "--data", "sample",
        "--max-per-class", "2", "--out", str(out), "--clusters", "2", "--probe-epochs", "1",
        "--epochs", "1", "--batch-size", "10", "--attack-steps", "1", "--milestones", "1",
        "--alpha", "1/255", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pseudo-labels" in printed
    assert RoCLEncoder.from_pretrained(out).feature_dim == encoder.feature_dim
    saved = json.loads((out / "lpaft_config.json").read_text())
    assert (saved["clusters"], saved["alpha"], saved["milestones"]) == (2, 1 / 255, [1])
    assert len(json.loads((out / PSEUDO_LABELS_NAME).read_text())["labels"]) == 20
    with pytest.raises(SystemExit):  # OUT holds a run: --resume or --overwrite
        main(argv)
    assert main([*argv, "--resume"]) == 0
    torch.manual_seed(1)
    RoCLEncoder("resnet18", width=4).save_pretrained(tmp_path / "clean")
    assert main([*argv, "--overwrite", "--cluster-model", str(tmp_path / "clean")]) == 0
    saved = json.loads((out / PSEUDO_LABELS_NAME).read_text())
    assert saved["cluster_encoder_sha256"] != saved["encoder_sha256"]


def test_a_fresh_start_forgets_the_stages_of_an_earlier_run(
    tmp_path: Path, encoder: RoCLEncoder, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train_lpaft(encoder, images, TINY, run)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("killed during the probe")

    monkeypatch.setattr(RobustLinearProbe, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        train_lpaft(encoder, images, replace(TINY, probe_lr=0.02), run)  # resume=False
    assert (run / PSEUDO_LABELS_NAME).is_file()  # stage 1 of this run
    assert not (run / PROBE_DIR / "probe_history.json").exists()  # the earlier run's probe
    assert not (run / FINETUNE_DIR / "checkpoints" / "last.pt").exists()
    with pytest.raises(FileNotFoundError):  # nor is the earlier run's encoder loadable
        RoCLEncoder.from_pretrained(run)


def test_a_redone_stage_makes_the_later_ones_stale(
    tmp_path: Path, encoder: RoCLEncoder, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 1 redone on resume (its file lost): the probe and the fine-tuning of the earlier
    labels are not reused but redone, and the run equals an uninterrupted one."""
    run = tmp_path / "run"
    reference = train_lpaft(encoder, images, TINY, run)
    (run / PSEUDO_LABELS_NAME).unlink()
    fits: list[int] = []
    real_fit = RobustLinearProbe.fit

    def counted(self: RobustLinearProbe, *args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(RobustLinearProbe, "fit", counted)
    resumed = train_lpaft(encoder, images, TINY, run, resume=True)
    assert fits == [1]  # the probe was redone, not read back
    assert [r["epoch"] for r in resumed.history] == [1]  # the fine-tuning too
    _assert_same_weights(resumed.encoder, reference.encoder)


def test_cluster_encoder_makes_the_pseudo_labels(
    tmp_path: Path, encoder: RoCLEncoder, images: torch.Tensor
) -> None:
    """``cluster_encoder`` (the official clean branch) is clustered; ``encoder`` is tuned."""
    torch.manual_seed(1)
    clean = RoCLEncoder("resnet18", width=4).eval()
    result = train_lpaft(encoder, images, TINY, tmp_path / "run", cluster_encoder=clean)
    expected, _ = pseudo_labels(clean, images, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.pseudo_labels, expected)
    own, _ = pseudo_labels(encoder, images, 3, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(result.pseudo_labels, own)
    with pytest.raises(ValueError, match="cluster_encoder"):  # resumed with another one
        train_lpaft(encoder, images, TINY, tmp_path / "run", resume=True)
    with pytest.raises(TypeError, match="cluster_encoder"):
        train_lpaft(encoder, images, TINY, cluster_encoder=torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_out_dir_is_not_the_encoders_folder(
    tmp_path: Path, encoder: RoCLEncoder, images: torch.Tensor
) -> None:
    encoder.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="overwritten"):
        train_lpaft(tmp_path / "encoder", images, TINY, tmp_path / "encoder")
    with pytest.raises(ValueError, match="overwritten"):
        train_lpaft(
            encoder, images, TINY, tmp_path / "encoder", cluster_encoder=tmp_path / "encoder"
        )


def test_the_fine_tuning_gets_every_setting(
    encoder: RoCLEncoder, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LPAFTConfig's fine-tuning fields reach finetune's TRADES run, from the probe's head."""
    seen: dict[str, Any] = {}

    def spy(encoder: RoCLEncoder, data: ImageDataset, config: FinetuneConfig, **kwargs: Any) -> Any:
        seen.update(config=config, **kwargs)
        raise KeyboardInterrupt("stop before training")

    monkeypatch.setattr(finetuning_module, "finetune", spy)
    config = replace(
        TINY, lr=0.05, milestones=(3, 7), epochs=9, momentum=0.8, weight_decay=2e-4,
        trades_beta=3.0, eps=4 / 255, alpha=1 / 255, attack_steps=4, crop_padding=2, seed=5,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train_lpaft(encoder, images, config)
    tuned: FinetuneConfig = seen["config"]
    assert (tuned.method, tuned.attack_norm, tuned.augment) == ("trades", "linf", "crop_flip")
    for name in (
        "lr", "milestones", "epochs", "momentum", "weight_decay", "trades_beta", "eps", "alpha",
        "attack_steps", "crop_padding", "seed", "batch_size", "device", "checkpoint_every",
    ):  # fmt: skip
        assert getattr(tuned, name) == getattr(config, name), name
    assert tuned.lr_schedule == "step"
    assert seen["num_classes"] == config.clusters
    assert seen["head"].weight.shape == (config.clusters, encoder.feature_dim)
