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


@pytest.mark.parametrize(
    "name",
    [
        "train_rocl.py",
        "train_simclr.py",
        "instance_wise_attack.py",
        "augmentation.py",
        "save_and_load.py",
    ],
)
def test_example_has_docstring_and_tiny_flag(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    assert source.lstrip().startswith('"""'), f"{name} needs a module docstring"
    assert '"--tiny"' in source, f"{name} needs a --tiny flag"
