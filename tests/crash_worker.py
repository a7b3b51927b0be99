"""A training run that SIGKILLs itself (or waits to be killed) at a chosen point.

Used by tests/test_crash_safety.py: ``python crash_worker.py OUT MODE RESUME`` with MODE one of
``none``, ``step:N`` (killed as the N-th training step starts), ``checkpoint-write:N`` (killed
in the middle of writing the N-th checkpoint: half of its bytes are in the temporary file),
``metrics-write:N`` (killed after writing the N-th metrics file's temporary copy, before the
rename), ``final-save`` (killed while the final encoder weights are being written) and
``wait-after-checkpoint:N`` (touches OUT.ready after the N-th checkpoint and sleeps, so that
the test kills it from outside).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from robust_contrastive import RoCLTrainer, TrainConfig
from robust_contrastive.layout import METRICS_NAME
from robust_contrastive.models import pretrained
from robust_contrastive.training import checkpoint, loop, trainer

CONFIG = TrainConfig(
    width=4,
    projection_hidden_dim=16,
    projection_dim=8,
    epochs=4,
    batch_size=8,
    image_size=16,
    attack_steps=2,
    warmup_epochs=1,
    lr=0.5,
    lars=False,
    checkpoint_every=1,
    progress=False,
    device="cpu",
    seed=3,
)


def data() -> torch.Tensor:
    """24 uint8 images (3 steps of 8 per epoch), the same in every process."""
    return torch.randint(
        0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    out, mode, resume = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    kind, _, number = mode.partition(":")
    n = int(number) if number else 0
    calls = {"count": 0}

    def nth_call() -> bool:
        calls["count"] += 1
        return calls["count"] == n

    if kind == "step":
        real_loss = trainer.RoCLTrainer.compute_loss

        def compute_loss(self: Any, batch: torch.Tensor) -> Any:
            if nth_call():
                die()
            return real_loss(self, batch)

        trainer.RoCLTrainer.compute_loss = compute_loss  # type: ignore[method-assign]
    elif kind == "checkpoint-write":
        real_save = torch.save

        def torn_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
            real_save(obj, handle, *args, **kwargs)
            if nth_call():
                handle.flush()
                handle.truncate(handle.tell() // 2)  # a torn temporary file
                os.fsync(handle.fileno())
                die()

        checkpoint.torch.save = torn_save  # type: ignore[assignment]
    elif kind == "metrics-write":
        real_write = loop.atomic_write_text

        def write(path: Path, text: str) -> None:
            if path.name == METRICS_NAME and nth_call():
                path.with_name(path.name + ".tmp").write_text(text)
                die()
            real_write(path, text)

        loop.atomic_write_text = write
    elif kind == "final-save":
        real_save_file = pretrained.save_file

        def save_file(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
            Path(filename).write_bytes(b"half a file")
            die()

        pretrained.save_file = save_file
        del real_save_file
    elif kind == "wait-after-checkpoint":
        real_checkpoint = loop.save_checkpoint

        def save_then_wait(state: Any, path: Any) -> Any:
            result = real_checkpoint(state, path)
            if nth_call():
                Path(str(out) + ".ready").touch()
                time.sleep(600)
            return result

        loop.save_checkpoint = save_then_wait
    elif kind != "none":
        raise SystemExit(f"unknown mode {mode}")
    RoCLTrainer(CONFIG, out).fit(data(), resume=resume)


if __name__ == "__main__":
    main()
