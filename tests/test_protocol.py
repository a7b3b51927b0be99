"""The SLF / ALF / AFF evaluation protocol (evaluation.protocol) on a tiny encoder."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from robust_contrastive import FinetuneConfig, RoCLEncoder
from robust_contrastive.data import ImageDataset
from robust_contrastive.evaluation import (
    ProtocolConfig,
    RobustLinearProbe,
    evaluate_protocol,
    repeated_images,
    shared_images,
)
from robust_contrastive.evaluation import protocol as protocol_module
from robust_contrastive.evaluation.finetuning import finetune_lr

# The test sets are tiny on purpose: evaluate_robustness's small-set warnings are expected.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::robust_contrastive.evaluation.checks.UnreliableEvaluationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore::robust_contrastive.evaluation.checks.ProbeNotLearningWarning"
    ),
]

CLASSES = ("a", "b", "c")


def _images(n_per_class: int, seed: int, size: int = 16) -> ImageDataset:
    """Random images whose class shifts the mean brightness (learnable, distinct per seed)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat_interleave(n_per_class)
    noise = torch.randint(0, 120, (len(labels), 3, size, size), generator=g)
    images = (noise + 60 * labels.view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    return ImageDataset(images=images, labels=labels, classes=CLASSES)


def _tiny_config(**changes: object) -> ProtocolConfig:
    values: dict[str, object] = dict(
        epochs=2,
        milestones=(1,),
        linear_batch_size=8,
        aff_batch_size=8,
        train_attack_steps=1,
        test_attack_steps=2,
        autoattack=False,
        sanity_checks=False,
        device="cpu",
    )
    values.update(changes)
    return ProtocolConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def encoder() -> RoCLEncoder:
    torch.manual_seed(0)
    return RoCLEncoder("resnet18", width=4)


def test_all_three_modes_write_one_table(encoder: RoCLEncoder, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, val, test = _images(4, 0), _images(2, 1), _images(3, 2)
    result = evaluate_protocol(
        encoder, train, val, test, config=_tiny_config(), out_dir=tmp_path, progress=False
    )
    assert [row.mode for row in result.rows] == ["slf", "alf", "aff"]
    for row in result.rows:
        assert 0 <= row.pgd_accuracy <= 1
        assert 0 <= row.clean_accuracy <= 1
        assert row.autoattack_accuracy is None  # not asked for
        assert 1 <= row.best_epoch <= 2
        assert row.epochs == 2
        assert (row.n_train, row.n_val, row.n_test) == (12, 6, 9)
        # the lr decays from the milestone (0-based epoch 1), for the linear modes and AFF
        assert [record["lr"] for record in row.history] == pytest.approx(
            [0.01, 0.001] if row.mode != "aff" else [0.1, 0.01]
        )
    selected = [row.selected_on for row in result.rows]
    assert selected == ["val_clean_acc", "val_adv_acc", "val_adv_acc"]
    # the argument is neither trained nor frozen
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert all(p.requires_grad for p in encoder.parameters())
    table = result.to_markdown("caption line")
    lines = table.splitlines()
    assert lines[0] == "caption line"
    assert lines[2].startswith("| mode | clean (%) | PGD-2 (%) | AutoAttack (%) | epoch kept")
    assert [line.split("|")[1].strip() for line in lines[4:7]] == ["SLF", "ALF", "AFF"]
    saved = json.loads((tmp_path / "protocol.json").read_text())
    assert [row["mode"] for row in saved["rows"]] == ["slf", "alf", "aff"]
    assert saved["config"]["milestones"] == [1]
    assert (tmp_path / "protocol.md").read_text().startswith("| mode |")


def test_selection_never_sees_the_test_images(
    encoder: RoCLEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test images go to the final evaluation only: training and the choice of epoch are
    the same whatever they are, and nothing but evaluate_robustness receives them."""
    train, val = _images(4, 0), _images(2, 1)
    test_ids: set[int] = set()
    seen_by_evaluation: list[int] = []
    real = protocol_module.evaluate_robustness

    def spy(model: torch.nn.Module, data: ImageDataset, *args: object, **kwargs: object) -> object:
        seen_by_evaluation.append(id(data))
        return real(model, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(protocol_module, "evaluate_robustness", spy)
    histories = []
    for seed in (2, 3):  # two different test sets
        test = _images(3, seed)
        test_ids.add(id(test))
        result = evaluate_protocol(encoder, train, val, test, config=_tiny_config(), progress=False)
        histories.append([(row.best_epoch, row.history) for row in result.rows])
    assert set(seen_by_evaluation) == test_ids
    assert len(seen_by_evaluation) == 6
    first, second = histories
    for (epoch_a, history_a), (epoch_b, history_b) in zip(first, second, strict=True):
        assert epoch_a == epoch_b
        for a, b in zip(history_a, history_b, strict=True):
            for key in ("loss", "val_clean_acc", "val_adv_acc"):
                if key in a:
                    assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9)


def test_test_images_inside_train_or_val_are_refused(encoder: RoCLEncoder) -> None:
    train, val, test = _images(4, 0), _images(2, 1), _images(3, 2)
    leaky = ImageDataset(
        images=torch.cat((train.images, test.images[:2])),
        labels=torch.cat((train.labels, test.labels[:2])),
        classes=CLASSES,
    )
    assert shared_images(leaky, test).tolist() == [12, 13]
    with pytest.raises(ValueError, match="2 test images are also in train"):
        evaluate_protocol(encoder, leaky, val, test, config=_tiny_config(), progress=False)
    with pytest.raises(ValueError, match="also in val"):
        evaluate_protocol(encoder, train, test, test, config=_tiny_config(), progress=False)


def test_without_val_the_last_epoch_is_kept(encoder: RoCLEncoder) -> None:
    result = evaluate_protocol(
        encoder,
        _images(4, 0),
        None,
        _images(3, 2),
        modes=("slf",),
        config=_tiny_config(),
        progress=False,
    )
    (row,) = result.rows
    assert (row.best_epoch, row.selected_on, row.n_val) == (2, "last epoch", 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"milestones": (20, 15)}, "milestones must be increasing"),
        ({"milestones": ()}, "milestones must be increasing"),
        ({"slf_select": "best"}, "slf_select must be one of"),
        ({"augment": "simclr"}, "augment must be one of"),
        ({"n_test_images": 0}, "n_test_images must be a positive integer"),
        ({"test_attack_steps": 0}, "test_attack_steps must be a positive integer"),
        ({"momentum": 1.0}, "momentum must be in"),
    ],
)
def test_bad_config_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny_config(**changes)


def test_bad_modes_and_inputs_are_refused(encoder: RoCLEncoder) -> None:
    train, val, test = _images(4, 0), _images(2, 1), _images(3, 2)
    with pytest.raises(ValueError, match="modes must be distinct modes"):
        evaluate_protocol(encoder, train, val, test, modes=("slf", "slf"), progress=False)
    with pytest.raises(ValueError, match="modes must be distinct modes"):
        evaluate_protocol(encoder, train, val, test, modes=("lp",), progress=False)
    with pytest.raises(TypeError, match="the string"):
        evaluate_protocol(encoder, train, val, test, modes="slf", progress=False)
    with pytest.raises(TypeError, match="encoder must be a RoCLEncoder"):
        evaluate_protocol(torch.nn.Linear(2, 2), train, val, test)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="test must be an ImageDataset"):
        evaluate_protocol(encoder, train, val, (test.images, test.labels))  # type: ignore[arg-type]


def test_milestones_option_of_the_probe_and_of_finetuning(
    encoder: RoCLEncoder, tmp_path: Path
) -> None:
    probe = RobustLinearProbe(encoder, 3, epochs=25, lr=0.01, milestones=(15, 20))
    probe.save_pretrained(tmp_path / "probe")  # config.json holds a list: read back as a tuple
    assert RobustLinearProbe.from_pretrained(tmp_path / "probe").config == probe.config
    rates = [probe.learning_rate(epoch) for epoch in range(25)]
    assert rates[:15] == pytest.approx([0.01] * 15)
    assert rates[15:20] == pytest.approx([0.001] * 5)
    assert rates[20:] == pytest.approx([0.0001] * 5)
    default = RobustLinearProbe(encoder, 3, epochs=150)
    assert default.config.milestones is None
    assert [default.learning_rate(e) for e in (29, 30, 49, 50, 99, 100)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001, 0.001, 0.0001]
    )
    with pytest.raises(ValueError, match="schedule='step' only"):
        RobustLinearProbe(encoder, 3, schedule="cosine", milestones=(5,))
    config = FinetuneConfig(epochs=25, lr=0.1, milestones=[15, 20])  # a JSON list
    assert config.milestones == (15, 20)
    assert FinetuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert [finetune_lr(e, config) for e in (14.9, 15.0, 19.5, 20.0)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001]
    )
    with pytest.raises(ValueError, match="milestones must be increasing"):
        FinetuneConfig(milestones=(20, 15))
    with pytest.raises(ValueError, match="lr_schedule='step' only"):
        FinetuneConfig(lr_schedule="cosine", milestones=(5,))


def test_repeated_images_keeps_the_first_copy() -> None:
    images = torch.randint(
        0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    images[3] = images[1]
    images[4] = images[1]
    data = ImageDataset(images, torch.zeros(5, dtype=torch.int64), classes=("a",))
    assert repeated_images(data).tolist() == [3, 4]
    assert repeated_images(data.subset(torch.tensor([0, 1, 2]))).tolist() == []


def test_autoattack_on_its_own_subset_of_the_test_images(encoder: RoCLEncoder) -> None:
    pytest.importorskip("torchattacks")
    g = torch.Generator().manual_seed(0)
    classes = ("a", "b", "c", "d")  # AutoAttack standard needs at least 4 classes
    labels = torch.arange(4).repeat_interleave(4)
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g)
    train = ImageDataset(images=images[:8], labels=labels[::2], classes=classes)
    test = ImageDataset(images=images[8:], labels=labels[1::2], classes=classes)
    config = _tiny_config(autoattack=True, n_autoattack_images=4, epochs=1, milestones=(5,))
    result = evaluate_protocol(encoder, train, None, test, modes=("slf",), config=config,
                               progress=False)  # fmt: skip
    row = result.row("slf")
    assert (row.n_test, row.n_autoattack) == (len(test), 4)  # PGD on all, AutoAttack on 4
    assert row.autoattack_accuracy is not None
    assert row.autoattack_accuracy * 4 == round(row.autoattack_accuracy * 4)  # of 4 images
    assert "(on 4)" in result.to_markdown()
    # Never more AutoAttack images than PGD's: its subset lies within theirs.
    config = replace(config, n_test_images=4, n_autoattack_images=6)
    result = evaluate_protocol(encoder, train, None, test, modes=("slf",), config=config,
                               progress=False)  # fmt: skip
    assert (result.row("slf").n_test, result.row("slf").n_autoattack) == (4, 4)
    assert "(on " not in result.to_markdown()
    with pytest.raises(ValueError, match="n_autoattack_images"):
        _tiny_config(n_autoattack_images=0)
