"""Real processes SIGKILLed during training resume to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("crash_worker.py")
WEIGHTS = ("model.safetensors", "projector/model.safetensors")


def _run(out: Path, mode: str, resume: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(out), mode, "1" if resume else "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _losses(out: Path) -> list[tuple[int, float]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(r["epoch"], r["loss"]) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash") / "reference"
    completed = _run(out, "none", resume=False)
    assert completed.returncode == 0, completed.stderr
    return out


def _assert_same_run(out: Path, reference: Path) -> None:
    for name in WEIGHTS:
        got, want = load_file(str(out / name)), load_file(str(reference / name))
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), f"{name}: {key} differs"
    assert _losses(out) == _losses(reference)
    assert not list((out / "checkpoints").glob("*.tmp"))


@pytest.mark.parametrize(
    "mode",
    [
        "step:5",  # in epoch 2, after its first step
        "checkpoint-write:2",  # half of checkpoint 2 written
        "metrics-write:3",  # metrics of epoch 3 written to the temporary file only
        "step:12",  # the last step of the run
        "final-save",  # while the final encoder weights are written
    ],
)
def test_killed_run_resumes_to_the_same_weights(mode: str, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    killed = _run(out, mode, resume=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _run(out, "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(out, reference)


def test_killed_from_outside_resumes_to_the_same_weights(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ready = Path(str(out) + ".ready")
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(out), "wait-after-checkpoint:2", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, "the run ended before its second checkpoint"
            assert time.monotonic() < deadline, "the run never reached its second checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = _run(out, "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(out, reference)


def test_killed_twice_still_resumes_exactly(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(out, "checkpoint-write:1", resume=False).returncode == -signal.SIGKILL
    # No complete checkpoint yet: resuming starts from scratch; this run dies in epoch 3.
    assert _run(out, "step:8", resume=True).returncode == -signal.SIGKILL
    assert _run(out, "none", resume=True).returncode == 0
    _assert_same_run(out, reference)
