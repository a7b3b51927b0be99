"""Smoke tests of ``examples/``: each script runs with ``--tiny`` and writes its outputs.

Every example runs in its own interpreter (``sys.executable examples/X.py --tiny --out DIR``),
exactly as a user would start it, so a broken import, argument or output path fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RUN_FILES = (
    "model.safetensors",
    "config.json",
    "projector/model.safetensors",
    "projector/config.json",
    "metrics.jsonl",
    "train_config.json",
    "checkpoints/last.pt",
)


def run_example(name: str, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name> --tiny *args`` and fail with its output unless it exits 0."""
    script = EXAMPLES / name
    assert script.is_file(), f"{script} is missing"
    completed = subprocess.run(
        [sys.executable, str(script), "--tiny", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert completed.returncode == 0, (
        f"{name} exited with {completed.returncode}\n"
        f"--- stdout ---\n{completed.stdout}\n--- stderr ---\n{completed.stderr}"
    )
    return completed


def test_train_rocl(tmp_path: Path) -> None:
    out = tmp_path / "rocl"
    run_example("train_rocl.py", "--out", out)
    for name in RUN_FILES:
        assert (out / name).is_file(), f"train_rocl.py did not write {name}"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["loss_regularizer"] > 0  # the adversarial term of eq. (6) is on
    assert json.loads((out / "train_config.json").read_text())["adversarial"] is True


def test_train_simclr(tmp_path: Path) -> None:
    out = tmp_path / "simclr"
    run_example("train_simclr.py", "--out", out)
    for name in RUN_FILES:
        assert (out / name).is_file(), f"train_simclr.py did not write {name}"
    assert json.loads((out / "train_config.json").read_text())["adversarial"] is False


def test_instance_wise_attack(tmp_path: Path) -> None:
    out = tmp_path / "attack"
    run_example("instance_wise_attack.py", "--out", out)
    assert (out / "attack.png").stat().st_size > 0
    summary = json.loads((out / "attack.json").read_text())
    assert summary["model"] == "rocl-resnet18-w16-cifar10-cpu"  # the bundled encoder
    assert summary["max_perturbation"] <= summary["eps"] + 1e-6
    assert summary["max_perturbation"] > 0
    assert summary["loss_after"] > summary["loss_before"]


def test_augmentation(tmp_path: Path) -> None:
    out = tmp_path / "augmentation"
    run_example("augmentation.py", "--out", out)
    png = out / "augmentations.png"
    assert png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_and_load(tmp_path: Path) -> None:
    out = tmp_path / "save-load"
    completed = run_example("save_and_load.py", "--out", out)
    for name in (
        "encoder/config.json",
        "encoder/model.safetensors",
        "projector/config.json",
        "projector/model.safetensors",
    ):
        assert (out / name).is_file(), f"save_and_load.py did not write {name}"
    assert "identical features" in completed.stdout


def test_linear_probe(tmp_path: Path) -> None:
    out = tmp_path / "probe"
    run_example("linear_probe.py", "--out", out)
    for folder in ("probe-clean", "probe-rle"):
        for name in ("config.json", "model.safetensors", "encoder/config.json"):
            assert (out / folder / name).is_file(), f"linear_probe.py did not write {folder}/{name}"
    assert json.loads((out / "probe-rle" / "config.json").read_text())["adversarial"] is True
    summary = json.loads((out / "linear_probe.json").read_text())
    assert summary["held_out_images"] == 100
    # a probe on the bundled encoder learns: well above chance (10 %) on held-out images
    assert summary["results"]["clean probe"]["clean_accuracy"] > 0.15
    for name in ("clean probe", "r-LE probe"):
        for value in summary["results"][name].values():
            assert 0.0 <= value <= 1.0


def test_evaluate_robustness(tmp_path: Path) -> None:
    out = tmp_path / "report"
    run_example("evaluate_robustness.py", "--out", out)
    report = json.loads((out / "report.json").read_text())
    assert [result["name"] for result in report["results"]] == ["linf-8/255-pgd10"]
    assert report["n_images"] == 100
    assert report["info"]["probe"] == "rocl-resnet18-w16-cifar10-cpu-probe"
    # the bundled probe on held-out images: above chance, and the attack lowers it
    assert report["clean_accuracy"] > 0.2
    for result in report["results"]:
        assert 0.0 <= result["accuracy"] < report["clean_accuracy"]
        assert result["n_images"] == 100
    assert "| linf-8/255-pgd10 |" in (out / "report.md").read_text()


def test_finetune(tmp_path: Path) -> None:
    out = tmp_path / "finetune"
    run_example("finetune.py", "--out", out)
    for method in ("at", "trades"):
        for name in (
            "config.json",
            "model.safetensors",
            "encoder/model.safetensors",
            "metrics.jsonl",
        ):
            assert (out / method / name).is_file(), f"finetune.py did not write {method}/{name}"
    summary = json.loads((out / "finetune.json").read_text())
    assert sorted(summary["results"]) == ["at", "trades"]
    assert "near chance" in summary["note"]  # --tiny says what its numbers are
    (reference,) = summary["reference"].values()
    assert reference["clean_accuracy"] > 0.2  # the bundled probe on the same images


def test_smoothed_classifier(tmp_path: Path) -> None:
    out = tmp_path / "smoothing"
    run_example("smoothed_classifier.py", "--out", out)
    summary = json.loads((out / "smoothing.json").read_text())
    assert summary["images"] == 100
    assert summary["probe_clean_accuracy"] > 0.2  # the bundled probe, held-out images
    assert sorted(summary["smoothed_clean_accuracy_per_samples"]) == ["1", "4"]
    for key in ("smoothed_accuracy_pgd", "smoothed_accuracy_eot_pgd"):
        assert 0.0 <= summary[key] <= 1.0


def test_black_box_transfer(tmp_path: Path) -> None:
    out = tmp_path / "transfer"
    run_example("black_box_transfer.py", "--out", out)
    summary = json.loads((out / "transfer.json").read_text())
    results = summary["results"]
    assert set(results) >= {"transfer_pgd_from_source", "transfer_inst_from_source"}
    for value in results.values():
        assert 0.0 <= value <= 1.0
    assert results["target_clean"] > 0.2  # the bundled SimCLR probe, held-out images
    # white-box PGD on the target is stronger than the attacks transferred from the source
    assert results["target_white_box_pgd"] < results["transfer_pgd_from_source"]


@pytest.mark.parametrize(
    "name",
    [
        "train_rocl.py",
        "train_simclr.py",
        "instance_wise_attack.py",
        "augmentation.py",
        "save_and_load.py",
        "linear_probe.py",
        "evaluate_robustness.py",
        "finetune.py",
        "smoothed_classifier.py",
        "black_box_transfer.py",
    ],
)
def test_example_has_docstring_and_tiny_flag(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    assert source.lstrip().startswith('"""'), f"{name} needs a module docstring"
    assert '"--tiny"' in source, f"{name} needs a --tiny flag"


def test_publish_model(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    out = tmp_path / "publish"
    completed = run_example("publish_model.py", "--out", out)
    assert "identical features" in completed.stdout
    card = ModelCard.load(out / "encoder" / "README.md")
    names = [r.metric_name for r in card.data.eval_results or []]
    assert names == ["clean accuracy", "robust accuracy, PGD-20 linf eps=8/255 step=2/255"]
    assert (out / "probe" / "eval_results.json").is_file()
    # Honest figures: held-out images of every class, enough of them, not a degenerate 100 %.
    report = json.loads((out / "probe" / "eval_results.json").read_text())["entries"][0]["report"]
    assert report["n_images"] >= 100
    assert min(report["class_counts"]) > 0
    assert 0.15 < report["clean_accuracy"] < 0.6  # the bundled encoder: about 0.3, chance 0.1
    assert "load_sample(held_out=True)" in card.text


def test_custom_objective(tmp_path: Path) -> None:
    out = tmp_path / "distil"
    completed = run_example("custom_objective.py", "--out", out)
    record = json.loads(completed.stdout.splitlines()[-1])
    assert record["epoch"] == 1
    assert 0 < record["loss_adv"] <= 2  # a cosine distance is in [0, 2]
    assert record["loss"] == pytest.approx(record["loss_clean"] + record["loss_adv"], rel=1e-3)
    for name in ("metrics.jsonl", "distil_config.json", "checkpoints/last.pt"):
        assert (out / name).is_file(), f"custom_objective.py did not write {name}"
    run_example("custom_objective.py", "--out", out, "--resume")  # done: resumes, trains nothing
