from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from robust_contrastive import InstanceWiseAttack, ProjectionHead, RoCLEncoder
from robust_contrastive.attacks import PGD
from robust_contrastive.evaluation.checks import (
    UnreliableEvaluationWarning,
    class_counts,
    evaluation_set_warnings,
    figure_warnings,
    majority_rate,
    steps_warnings,
    zero_gradient_warnings,
)
from robust_contrastive.evaluation.suite import (
    THREATS,
    Threat,
    ThreatResult,
    evaluate_robustness,
    zero_gradient_fraction,
)
from robust_contrastive.evaluation.transfer import transfer_accuracy

NUM_CLASSES = 4


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    palette = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    noise = torch.rand(n, 3, 16, 16, generator=g) * 0.6 + 0.2
    images = noise + 0.15 * (palette[labels] - 0.5).view(n, 3, 1, 1)  # (n, 3) -> (n, 3, 1, 1)
    return images.clamp(0, 1), labels


def _train(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(RoCLEncoder(width=4), nn.Linear(32, NUM_CLASSES))
    images, labels = _synthetic(512, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(150):
        idx = torch.randint(0, 512, (64,), generator=g)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    return _train(0)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return _synthetic(64, seed=3)


class NoisyModel(nn.Module):
    """A randomised model: the classifier applied to images with fresh noise each call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner((x + 0.02 * torch.randn_like(x)).clamp(0, 1))
        return out


def test_report_has_every_threat_asked_for(
    classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    asked = ["linf-8/255", "linf-8/255-legacy", "l2-0.5", "l1-12"]
    fast = [Threat(**{**THREATS[n].__dict__, "steps": 5}) for n in asked]
    report = evaluate_robustness(classifier, data, fast, seed=0, progress=False)
    assert [r.name for r in report.results] == asked
    assert not report.randomized
    for result in report.results:
        assert 0 <= result.accuracy <= report.clean_accuracy
        assert result.n_images == 64
        assert result.seed == 0
        assert result.attack == "pgd"
    assert report.accuracy("linf-8/255") <= report.accuracy("linf-8/255-legacy") + 1e-9
    saved = json.loads(report.to_json(tmp_path / "report.json").read_text())
    assert {r["name"] for r in saved["results"]} == set(asked)
    assert "| linf-8/255 | pgd | headline |" in report.to_markdown()
    again = evaluate_robustness(classifier, data, fast, seed=0, progress=False)
    assert [r.accuracy for r in again.results] == [r.accuracy for r in report.results]


def test_autoattack_threat(classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    pytest.importorskip("torchattacks")
    report = evaluate_robustness(
        classifier,
        (data[0][:4], data[1][:4]),
        ["autoattack-linf-8/255"],
        sanity_checks=False,
        progress=False,
    )
    assert report.results[0].attack == "autoattack"
    assert report.results[0].accuracy <= report.clean_accuracy


def test_randomized_models_are_attacked_with_eot(
    classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    threat = Threat(name="linf-8/255", norm="linf", eps=8 / 255, alpha=2 / 255, steps=3)
    report = evaluate_robustness(
        NoisyModel(classifier),
        data,
        [threat],
        eot_samples=2,
        sanity_checks=False,
        progress=False,
    )
    assert report.randomized
    assert report.results[0].attack == "eot-pgd"
    assert report.results[0].eot_samples == 2
    assert any("EOT" in w for w in report.warnings)


def test_sanity_checks_flag_masked_gradients(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    class Masked(nn.Module):
        """Rounds its input: zero gradients everywhere, robust in appearance only."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, NUM_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear((x * 4).round().mean(dim=(2, 3)))
            return out

    masked = Masked()
    assert zero_gradient_fraction(masked, *data) == 1.0
    threat = Threat(name="linf-8/255", norm="linf", eps=8 / 255, alpha=2 / 255, steps=2)
    report = evaluate_robustness(masked, data, [threat], progress=False)
    assert any("gradient masking" in w for w in report.warnings)


def test_unknown_threat_and_bad_data(
    classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    with pytest.raises(ValueError, match="unknown threat"):
        evaluate_robustness(classifier, data, ["linf-9/255"], progress=False)
    with pytest.raises(ValueError, match="labels"):
        evaluate_robustness(classifier, (data[0], data[1][:3]), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_robustness(classifier, (data[0] * 3, data[1]), progress=False)


def test_black_box_transfer(classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    source = _train(5)
    white = transfer_accuracy(classifier, data, PGD(classifier, steps=10), progress=False)
    black = transfer_accuracy(classifier, data, PGD(source, steps=10), progress=False)
    clean = float((classifier(data[0]).argmax(1) == data[1]).float().mean())
    assert white <= black <= clean
    encoder = RoCLEncoder(width=4)
    instance = InstanceWiseAttack(encoder, ProjectionHead(32, 16, 8), steps=2)
    assert 0 <= transfer_accuracy(classifier, data, instance, progress=False) <= 1


def test_eot_returns_the_last_iterate(classifier: nn.Module) -> None:
    # Keeping the first iterate that fools one random draw would weaken attacks on randomised
    # models; EOT-PGD always returns the last iterate.
    from robust_contrastive.attacks import EOTPGD

    assert not EOTPGD(classifier).keep_first_success
    assert PGD(classifier).keep_first_success
    assert "eot_samples=10" in repr(EOTPGD(classifier))


def test_instance_transfer_with_a_lone_last_image(
    classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    instance = InstanceWiseAttack(RoCLEncoder(width=4), ProjectionHead(32, 16, 8), steps=1)
    five = (data[0][:5], data[1][:5])
    assert 0 <= transfer_accuracy(classifier, five, instance, batch_size=4, progress=False) <= 1
    with pytest.raises(ValueError, match="n_images"):
        transfer_accuracy(classifier, data, instance, n_images=0, progress=False)


def test_n_images_is_a_seeded_subset_across_classes(
    classifier: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = data
    order = labels.argsort()  # sorted by class, as split indices are
    threat = Threat(name="linf-8/255", norm="linf", eps=8 / 255, alpha=2 / 255, steps=1)
    report = evaluate_robustness(
        classifier,
        (images[order], labels[order]),
        [threat],
        n_images=16,
        progress=False,
        sanity_checks=False,
    )
    assert report.n_images == 16


def test_a_single_class_evaluation_set_is_flagged(classifier: nn.Module) -> None:
    images, _ = _synthetic(64, seed=3)
    labels = torch.zeros(64, dtype=torch.int64)  # e.g. the first images of a class-sorted set
    with pytest.warns(UnreliableEvaluationWarning, match="all 64 evaluation images are of class 0"):
        report = evaluate_robustness(classifier, (images, labels), [], progress=False)
    assert report.class_counts == [64, 0, 0, 0]
    assert any("class 0" in w and "load_sample(held_out=True)" in w for w in report.warnings)
    assert any("only 64 evaluation images" in w for w in report.warnings)
    assert "all 64 evaluation images" in report.to_markdown()
    assert report.to_dict()["class_counts"] == [64, 0, 0, 0]  # kept in the JSON report


def test_a_sound_evaluation_set_gives_no_data_warning(classifier: nn.Module) -> None:
    images, labels = _synthetic(200, seed=4)
    assert min(torch.bincount(labels, minlength=NUM_CLASSES).tolist()) >= 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableEvaluationWarning)
        report = evaluate_robustness(classifier, (images, labels), [], progress=False)
    assert report.warnings == []
    assert sum(report.class_counts) == 200


def test_missing_and_thin_classes_are_flagged(classifier: nn.Module) -> None:
    images, _ = _synthetic(120, seed=5)
    labels = torch.zeros(120, dtype=torch.int64)
    labels[:5] = 1  # class 1: 5 images; classes 2 and 3: none
    with pytest.warns(UnreliableEvaluationWarning):
        report = evaluate_robustness(classifier, (images, labels), [], progress=False)
    assert any("cover 2 of 4 classes (missing [2, 3])" in w for w in report.warnings)
    assert any("classes [1] have fewer than 10" in w for w in report.warnings)
    assert not any("evaluation images are of class" in w for w in report.warnings)


def test_evaluation_set_rules() -> None:
    assert evaluation_set_warnings([50, 50, 50]) == []
    assert len(evaluation_set_warnings([99, 0, 0], num_classes=3)) == 2  # one class, < 100
    (few,) = evaluation_set_warnings([40, 40], num_classes=2)
    assert "only 80 evaluation images" in few
    assert "1.2 points" in few  # 100 / 80 per image


def test_class_counts_and_the_majority_rate() -> None:
    assert class_counts(torch.tensor([0, 2, 2])) == [1, 0, 2]
    assert class_counts([1, 1], num_classes=4) == [0, 2, 0, 0]
    assert class_counts([]) == []
    with pytest.raises(ValueError, match=">= 0"):
        class_counts([0, -1])
    assert majority_rate([1, 0, 3]) == 0.75
    assert majority_rate([0, 0]) == 0.0


def _figure(name: str, eps: float, accuracy: float) -> ThreatResult:
    return ThreatResult(name, "linf", eps, eps / 4, 20, "pgd", "headline", accuracy, 100, 0, 1.0)


def test_figure_checks_are_pure_functions_of_the_numbers() -> None:
    assert zero_gradient_warnings(0.0) == []
    assert "25.0 % of images" in zero_gradient_warnings(0.25)[0]
    sound = [_figure("small", 4 / 255, 0.5), _figure("large", 8 / 255, 0.3)]
    assert figure_warnings(0.9, sound) == []
    (above,) = figure_warnings(0.4, sound)
    assert "small: robust accuracy 50.00 % exceeds the clean accuracy 40.00 %" in above
    (rising,) = figure_warnings(
        0.9, [_figure("small", 4 / 255, 0.3), _figure("large", 8 / 255, 0.5)]
    )
    assert "rises with a larger radius" in rising
    assert steps_warnings("pgd", 20, 0.40, 100, 0.39, 100) == []  # converged
    assert "rises with more steps" in steps_warnings("pgd", 20, 0.40, 100, 0.41, 100)[0]
    assert "PGD-20 has not converged" in steps_warnings("pgd", 20, 0.40, 100, 0.30, 100)[0]


def test_the_checks_import_neither_torch_nor_the_suite() -> None:
    # The evaluation package imports torch; its checks module alone must not, nor the suite.
    script = (
        "import sys, types, robust_contrastive; "
        "package = types.ModuleType('robust_contrastive.evaluation'); "
        "package.__path__ = [robust_contrastive.__path__[0] + '/evaluation']; "
        "sys.modules['robust_contrastive.evaluation'] = package; "
        "import robust_contrastive.evaluation.checks; "
        "assert 'torch' not in sys.modules; "
        "assert 'robust_contrastive.evaluation.suite' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
