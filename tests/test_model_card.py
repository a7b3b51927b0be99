"""Model cards generated from a folder's files: YAML metadata, training settings, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from robust_contrastive import (
    FinetuneConfig,
    ImageDataset,
    RobustLinearProbe,
    RoCLEncoder,
    TrainConfig,
    attach_evaluation,
    finetune,
    write_model_card,
)
from robust_contrastive.evaluation.suite import RobustnessReport, ThreatResult
from robust_contrastive.model_card import (
    COMPARISON_NAME,
    EVAL_RESULTS_NAME,
    METRICS_NAME,
    PROVENANCE_NAME,
    render_model_card,
    weights_checksums,
)
from robust_contrastive.registry import PRETRAINED_DIR, list_pretrained

BUNDLED_CARDS = sorted(PRETRAINED_DIR.glob("**/README.md"))


def _report(
    clean: float = 0.5,
    pgd: float = 0.25,
    aa: float = 0.2,
    n: int = 200,
    class_counts: list[int] | None = None,
) -> RobustnessReport:
    return RobustnessReport(
        clean_accuracy=clean,
        n_images=n,
        seed=0,
        randomized=False,
        class_counts=[n // 10] * 10 if class_counts is None else class_counts,
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
                n_images=n,
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
                n_images=n,
                seed=0,
                seconds=1.0,
            ),
        ],
    )


def test_card_metadata_from_training_and_evaluation(tmp_path: Path) -> None:
    encoder = RoCLEncoder(width=4)
    config = TrainConfig(width=4, epochs=2, batch_size=8)
    encoder.save_pretrained(tmp_path, training=config, evaluation=_report(), split="val 200")
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
    assert aa.dataset_split == "val 200"
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


def test_attach_refuses_an_evaluation_on_a_single_class(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    report = _report(clean=1.0, pgd=1.0, aa=1.0, class_counts=[0, 0, 200] + [0] * 7)
    with pytest.raises(ValueError, match="single class") as error:
        attach_evaluation(tmp_path, report, dataset="cifar10", split="first 200")
    assert "load_sample(held_out=True)" in str(error.value)  # the message says what to do
    assert not (tmp_path / EVAL_RESULTS_NAME).exists()
    assert "100.00" not in (tmp_path / "README.md").read_text()


def test_card_refuses_a_recorded_single_class_evaluation(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    attach_evaluation(tmp_path, _report(), dataset="cifar10", split="val")
    record = json.loads((tmp_path / EVAL_RESULTS_NAME).read_text())
    record["entries"][0]["report"]["class_counts"] = [200] + [0] * 9  # e.g. an older version's
    (tmp_path / EVAL_RESULTS_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="Remove that entry"):
        write_model_card(tmp_path)


def test_a_handful_of_images_is_flagged_and_kept_out_of_the_metadata(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    small = _report(clean=0.75, n=16, class_counts=[2] * 8)
    attach_evaluation(tmp_path, small, dataset="cifar10", split="16 images")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results is None  # no leaderboard reads it
    assert "**Warning:** only 16 evaluation images" in card.text
    assert card.text.index("**Warning:**") < card.text.index("## Usage")  # at the top too
    assert "| clean accuracy | 75.00 | 16 |" in card.text  # shown, under the warning
    attach_evaluation(tmp_path, _report(), dataset="cifar10", split="200 images")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results is not None
    assert {r.metric_args["n_images"] for r in card.data.eval_results if r.metric_args} == {200}


def test_repeated_figures_appear_once(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    for _ in range(2):  # the same report attached twice, then one on more images
        attach_evaluation(tmp_path, _report(), dataset="cifar10", split="val", description="LE")
    attach_evaluation(tmp_path, _report(clean=0.6, n=500), dataset="cifar10", split="val")
    card = ModelCard.load(tmp_path / "README.md")
    names = [r.metric_name for r in card.data.eval_results or []]
    assert len(names) == len(set(names)) == 6
    assert "clean accuracy" in names
    assert "clean accuracy (200 images)" in names
    assert card.text.count("| clean accuracy |") == 2  # one table per set of images
    headings = [line for line in card.text.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings))
    assert card.text.index("measured on 500") < card.text.index("measured on 200")  # largest first


def test_card_details_and_radii(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path, training=TrainConfig(width=4, batch_size=8))
    text = (tmp_path / "README.md").read_text()
    assert "feature dimension 32" in text  # 8 * width for resnet18
    assert "trained on 32 x 32 images" in text  # train_config.json's image_size
    assert "| eps | 8/255 |" in text
    assert "## Intended use and limitations" in text
    assert f"No data record (`{PROVENANCE_NAME}`)" in text
    assert 'RoCLEncoder.from_pretrained("path/to/this/folder")' in text  # not registered
    assert "ProjectionHead" not in text.split("## Model details")[0]  # saved without projector/


def test_provenance_and_comparison_are_rendered(tmp_path: Path) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path)
    provenance = {
        "format_version": 1,
        "dataset": "Toy images.",
        "image_size": [16, 16],
        "splits": [
            {
                "name": "train",
                "role": "trained it",
                "images": 1200,
                "which": "the first 1,200",
                "overlap": {"load_sample()": 7},
            },
        ],
        "notes": ["A note."],
        "limitations": ["Tiny."],
    }
    comparison = {
        "format_version": 1,
        "tables": [
            {
                "title": "T",
                "columns": ["model", "clean"],
                "rows": [["twin", "1.0"]],
                "notes": ["From a run."],
            }
        ],
    }
    (tmp_path / PROVENANCE_NAME).write_text(json.dumps(provenance))
    (tmp_path / COMPARISON_NAME).write_text(json.dumps(comparison))
    text = render_model_card(tmp_path)
    assert "| train | trained it | 1,200 | the first 1,200 | 7 |" in text
    assert "trained on 16 x 16 images" in text
    assert "- Tiny." in text
    assert "A note." in text
    assert "## Comparison" in text
    assert "| twin | 1.0 |" in text
    provenance["format_version"] = 2
    (tmp_path / PROVENANCE_NAME).write_text(json.dumps(provenance))
    with pytest.raises(ValueError, match="format_version"):
        render_model_card(tmp_path)


@pytest.mark.parametrize("card", BUNDLED_CARDS, ids=lambda p: str(p.relative_to(PRETRAINED_DIR)))
def test_bundled_cards_are_generated_from_their_folders(card: Path) -> None:
    # tools/write_bundled_cards.py regenerates them; a stale card fails here.
    assert card.read_text() == render_model_card(card.parent)


@pytest.mark.parametrize("name", [e.name for e in list_pretrained() if e.bundled])
def test_bundled_cards_carry_what_a_researcher_needs(name: str) -> None:
    folder = PRETRAINED_DIR / name
    card = ModelCard.load(folder / "README.md")
    text = card.text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings))
    for section in (
        "## Usage",
        "## Model details",
        "## Intended use and limitations",
        "## Training data",
        "## Training",
        "## Evaluation",
        "## Comparison",
    ):
        assert section in headings
    assert f'.from_pretrained("{name}")' in text
    assert "path/to/this/folder" not in text
    assert "feature dimension 128" in text or "on 128 encoder features" in text
    assert "32 x 32" in text
    assert "load_sample(held_out=True)" in text
    assert "4,722" in text
    assert "SimCLR, LE" in text
    assert "the paper" in text
    assert "eps=0.0313" not in text
    assert "eps=8/255" in text
    results = card.data.eval_results or []
    names = [r.metric_name for r in results]
    assert len(names) == len(set(names))
    assert "clean accuracy" in names
    assert all((r.metric_args or {}).get("n_images", 0) >= 100 for r in results)
    if name.endswith("-probe"):
        assert "## Linear probe" in headings
        assert "kept epoch" in text
    else:
        assert 'ProjectionHead.from_pretrained("' + name + '")' in text


def test_the_card_of_a_fine_tuned_folder_describes_the_fine_tuning(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=generator)
    data = ImageDataset(images, torch.arange(12) % 2, ("a", "b"))
    config = FinetuneConfig(
        method="trades", epochs=2, batch_size=4, attack_steps=1, val_attack_steps=1, progress=False
    )
    finetune(RoCLEncoder(width=4), data, config, val=data.subset(range(4)), out_dir=tmp_path)
    text = (tmp_path / "README.md").read_text()  # written by save_pretrained at the end
    assert "No training record" not in text
    assert "fine-tuned together by TRADES" in text
    assert "trained together by TRADES (Zhang et al.)" in text
    assert "| trades_beta | 6.0 |" in text
    assert "| alpha | 2/255 |" in text
    assert "ss_weight" not in text  # an AT+SS setting
    assert "Started from a resnet18 encoder whose training is not recorded" in text
    assert "Fine-tuned 2 epochs" in text
    assert "the best validation PGD-1 accuracy" in text
    assert "`finetune_config.json`" in text
    assert "adversarial-training" in ModelCard.load(tmp_path / "README.md").data.to_dict()["tags"]
    # A folder written before the metric names were unified (clean_acc, adv_acc) still reads.
    old_names = {"train_clean_acc": "clean_acc", "train_adv_acc": "adv_acc"}
    records = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    records = [{old_names.get(k, k): v for k, v in r.items()} for r in records]
    (tmp_path / METRICS_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    last = records[-1]
    assert (
        f"training accuracy {100 * last['clean_acc']:.1f} % clean and "
        f"{100 * last['adv_acc']:.1f} % under the training attack"
    ) in render_model_card(tmp_path)
    # With the encoder's own training record, the card says which encoder it started from.
    (tmp_path / "encoder" / "train_config.json").write_text(
        json.dumps(TrainConfig(width=4, batch_size=8).to_dict())
    )
    text = render_model_card(tmp_path)
    assert "fine-tuned together by TRADES (RoCL encoder)" in text
    assert "Started from a RoCL encoder: its training is described below." in text
    assert "### The encoder's training" in text
