"""Model cards generated from a folder's files: YAML metadata, training settings, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from robust_contrastive import (
    RobustLinearProbe,
    RoCLEncoder,
    TrainConfig,
    attach_evaluation,
    write_model_card,
)
from robust_contrastive.evaluation.suite import RobustnessReport, ThreatResult
from robust_contrastive.model_card import EVAL_RESULTS_NAME, weights_checksums


def _report(clean: float = 0.5, pgd: float = 0.25, aa: float = 0.2) -> RobustnessReport:
    return RobustnessReport(
        clean_accuracy=clean,
        n_images=40,
        seed=0,
        randomized=False,
        results=[
            ThreatResult(
                "linf-8/255",
                "linf",
                8 / 255,
                2 / 255,
                20,
                "pgd",
                "headline",
                pgd,
                n_images=40,
                seed=0,
                seconds=1.0,
            ),
            ThreatResult(
                "autoattack-linf-8/255",
                "linf",
                8 / 255,
                0.0,
                20,
                "autoattack",
                "headline",
                aa,
                n_images=40,
                seed=0,
                seconds=1.0,
            ),
        ],
    )


def test_card_metadata_from_training_and_evaluation(tmp_path: Path) -> None:
    encoder = RoCLEncoder(width=4)
    config = TrainConfig(width=4, epochs=2, batch_size=8)
    encoder.save_pretrained(tmp_path, training=config, evaluation=_report(), split="val 40")
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "robust-contrastive"
    assert data["license"] == "mit"
    assert data["datasets"] == ["cifar10"]
    assert {"rocl", "adversarial-robustness"} <= set(data["tags"])
    results = {r.metric_name: r for r in card.data.eval_results}
    assert results["clean accuracy"].metric_value == 50.0
    pgd = results["robust accuracy, PGD-20 linf eps=8/255 step=2/255"]
    assert pgd.metric_value == 25.0
    assert pgd.metric_args is not None
    assert pgd.metric_args["steps"] == 20
    assert pgd.metric_args["threat_model"] == "linf"
    aa = results["robust accuracy, AutoAttack (standard) linf eps=8/255"]
    assert aa.metric_value == 20.0
    assert aa.dataset_split == "val 40"
    # The training settings come from train_config.json, not from hand-typed text.
    assert json.loads((tmp_path / "train_config.json").read_text())["epochs"] == 2
    assert "| attack_steps | 7 |" in card.text
    assert weights_checksums(tmp_path)["model.safetensors"] in card.text


def test_results_of_other_weights_are_dropped(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path, evaluation=_report())
    assert "clean accuracy" in (tmp_path / "README.md").read_text()
    torch.manual_seed(1)
    RoCLEncoder(width=4).save_pretrained(tmp_path)  # new weights in the same folder
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results is None
    assert "Not evaluated yet" in card.text


def test_attach_refuses_a_report_of_other_weights(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path / "a")
    report = _report()
    report.info["weights_sha256"] = {"model.safetensors": "0" * 64}
    with pytest.raises(ValueError, match="other weights"):
        attach_evaluation(tmp_path / "a", report, dataset="cifar10", split="val")


def test_probe_report_attaches_to_its_encoder_folder(tmp_path: Path) -> None:
    encoder = RoCLEncoder(width=4)
    encoder.save_pretrained(tmp_path / "encoder-run")
    probe = RobustLinearProbe(encoder, num_classes=3)
    probe.save_pretrained(tmp_path / "probe")
    report = _report()
    report.info["weights_sha256"] = weights_checksums(tmp_path / "probe")
    for folder in (tmp_path / "probe", tmp_path / "encoder-run"):
        attach_evaluation(folder, report, dataset="cifar10", split="val", description="LE")
        assert len(json.loads((folder / EVAL_RESULTS_NAME).read_text())["entries"]) == 1
    probe_card = ModelCard.load(tmp_path / "probe" / "README.md")
    assert probe_card.data.pipeline_tag == "image-classification"
    assert "RobustLinearProbe.from_pretrained" in probe_card.text
    assert ModelCard.load(tmp_path / "encoder-run" / "README.md").data.eval_results


def test_write_model_card_names_the_repo(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    write_model_card(tmp_path, repo_id="rocl-org/tiny")
    text = (tmp_path / "README.md").read_text()
    assert 'RoCLEncoder.from_pretrained("rocl-org/tiny")' in text
    assert ModelCard.load(tmp_path / "README.md").data.model_name == "rocl-org/tiny"
