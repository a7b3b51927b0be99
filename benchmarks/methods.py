"""Every label-free method through the command line, side by side: images/s and encoder work.

For each method this runs ``robust-contrastive train --method M`` in a fresh process on the same
images of the bundled CIFAR-10 sample (the same width, epochs, batch and device), times the whole
process, and reads the training throughput (``images_per_s`` of the last epoch) from the run's
``metrics.jsonl``. The encoder work per image of one step (a forward = 1 unit, an input-gradient
backward = 1, a backward with weight gradients = 2) is counted with the tests' forward hook
(``tests/reference/encoder_work.py``) on a small copy of each method's objective with the same
settings. DeACL's teacher is the bundled ``simclr-resnet18-w16-cifar10-cpu`` (its width sets the
student's); the other methods train at ``--width``.

Run: ``python benchmarks/methods.py`` (200 images per class, width 16, 1 epoch, batch 128, CPU);
the quickest check::

    python benchmarks/methods.py --max-per-class 4 --epochs 1 --batch-size 20 \\
        --out /tmp/methods.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig
from robust_contrastive.training.acl import ACLObjective, build_acl_models
from robust_contrastive.training.acl_config import ACLConfig
from robust_contrastive.training.deacl import DeACLConfig, DeACLObjective

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference.encoder_work import count_encoder_work

RESULTS = Path(__file__).resolve().parent / "results" / "methods.json"
TEACHER = "simclr-resnet18-w16-cifar10-cpu"
METHODS: tuple[str, ...] = ("rocl", "simclr", "acl", "dynacl", "air", "deacl")


def _rocl_step(adversarial: bool) -> Callable[[dict[str, Any], torch.Tensor], None]:
    def step(options: dict[str, Any], batch: torch.Tensor) -> None:
        config = TrainConfig(adversarial=adversarial, device="cpu", progress=False, **options)
        RoCLTrainer(config).loss((batch,), torch.Generator().manual_seed(0))

    return step


def _deacl_step(options: dict[str, Any], batch: torch.Tensor) -> None:
    teacher = RoCLEncoder(width=options["width"]).eval()
    student = RoCLEncoder(width=options["width"])
    config = DeACLConfig(device="cpu", progress=False)
    objective = DeACLObjective(student, teacher, config)
    objective.train()
    objective.loss((batch,), torch.Generator().manual_seed(0))


def _acl_step(method: str) -> Callable[[dict[str, Any], torch.Tensor], None]:
    def step(options: dict[str, Any], batch: torch.Tensor) -> None:
        config = ACLConfig.for_method(method, device="cpu", progress=False, **options)
        encoder, projector = build_acl_models(config)
        momentum = config.key_momentum > 0  # DynACL's momentum copies
        objective = ACLObjective(
            encoder,
            projector,
            config,
            copy.deepcopy(encoder) if momentum else None,
            copy.deepcopy(projector) if momentum else None,
        )
        objective.train()
        objective.loss((batch,), torch.Generator().manual_seed(0))

    return step


# method -> one step of its objective at its default settings (for the work count).
STEPS: dict[str, Callable[[dict[str, Any], torch.Tensor], None]] = {
    "rocl": _rocl_step(True),
    "simclr": _rocl_step(False),
    "acl": _acl_step("acl"),
    "dynacl": _acl_step("dynacl"),
    "air": _acl_step("air"),
    "deacl": _deacl_step,
}


def counted_units(method: str) -> float:
    """Encoder units per image of one step of ``method``'s objective (width 4, 16x16 images)."""
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    options = {"width": 4}
    with torch.random.fork_rng(devices=[]), count_encoder_work() as total:
        torch.manual_seed(0)
        STEPS[method](options, batch)
    return total[0] / batch.shape[0]


def run_method(method: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One ``robust-contrastive train --method`` run in a fresh process."""
    command = [
        sys.executable, "-m", "robust_contrastive", "train", "--method", method,
        "--data", "sample", "--max-per-class", str(args.max_per_class),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--device", args.device, "--no-progress", "--out", str(out),
    ]  # fmt: skip
    if method == "deacl":
        command += ["--teacher", TEACHER]
    else:
        command += ["--width", str(args.width)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "method": method,
        "images_per_s": records[-1]["images_per_s"],
        "process_seconds": seconds,
        "last_loss": records[-1]["loss"],
        "units_per_image": counted_units(method),
        "command": " ".join(command[1:]).replace(str(out), "OUT"),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--max-per-class", type=int, default=200)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            rows.append(run_method(method, args, Path(tmp) / method))
            print(f"{method}: {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    print("| method | images/s | process s | units / image | last loss |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['method']} | {row['images_per_s']:.1f} | {row['process_seconds']:.0f} | "
            f"{row['units_per_image']:g} | {row['last_loss']:.4f} |"
        )
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"teacher": TEACHER},
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
