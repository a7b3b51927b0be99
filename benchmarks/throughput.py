"""Training-step throughput: the original RoCL algorithm vs ``RoCLTrainer`` (issue 5).

In one process, on the same model (same seeded initial weights), the same uint8 batch and the
same optimiser, this times

* ``baseline``: the original algorithm (``OriginalRoCL`` of ``tests/reference``, the reference
  the equivalence tests check the library against):
  per-image torchvision augmentation in a Python loop, an attack that forwards
  ``cat(x_adv, t'(x))`` at every step, and a separate train-mode forward for the regulariser;
* ``rocl-plain``: ``RoCLTrainer``'s step with every speed option off (the algorithmic savings
  only: the positives' latents once per attack, batched on-device augmentation);
* ``rocl``: ``RoCLTrainer``'s step with the exact speed options (BatchNorm folded into the
  attack's convolutions, channels_last, and --precision / --compile when asked for);
* ``rocl-shared``: ``rocl`` + ``regularizer_forward="shared"`` (a choice, not exact: the
  regulariser reuses the 3-view forward, so BatchNorm's batch statistics differ);
* ``simclr``: ``RoCLTrainer`` with ``adversarial=False`` and the ``rocl`` speed options;
* on request (``--variants``), the ablations ``rocl-fold`` (BatchNorm folding only) and
  ``rocl-channels-last`` (channels_last only).

A step is augmentation + loss + backward + optimiser step. After warm-up the variants are timed
round-robin (one step each per round, so load drift on a shared machine hits them alike) and the
median is reported. The encoder work per image is counted in units (a forward = 1, an
input-gradient backward = 1, a backward with weight gradients = 2) from the settings, and checked
with a forward hook on a small copy. Before timing, each library variant's loss is compared with
the baseline's on the same views and attack start.

Run: ``python benchmarks/throughput.py`` (resnet18, width 32, batch 128, 7 attack steps);
``--device cuda --precision bf16 --channels-last --compile`` on a GPU. The quickest check::

    python benchmarks/throughput.py --width 8 --batch-size 8 --steps 1 --warmup 0 --repeats 1 \\
        --no-memory-probe --out /tmp/throughput.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from robust_contrastive import RoCLTrainer, TrainConfig

# The baseline and the work counts are the tests' reference (tests/reference), which the
# equivalence tests check against the library: put the repository root on the path, so that
# both `python benchmarks/throughput.py` and `python -m benchmarks.throughput` find it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference import (
    OriginalRoCL,
    counted_units,
    library_step,
    library_views,
    units_baseline,
    units_library,
)

VARIANTS: tuple[str, ...] = ("baseline", "rocl-plain", "rocl", "rocl-shared", "simclr")
# Ablations of the "rocl" speed options, run only when named in --variants.
ABLATIONS: tuple[str, ...] = ("rocl-fold", "rocl-channels-last")
RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"


# ---------------------------------------------------------------- measuring
@dataclass
class Variant:
    """One timed configuration."""

    name: str
    config: TrainConfig  # the library's settings (the baseline: its model's settings)
    step: Callable[[torch.Tensor], torch.Tensor]  # one training step on a batch
    units: int  # encoder units per image, from the settings
    times: list[float]  # seconds per timed step
    peak_memory_mib: float | None = None
    loss_check: dict[str, float] | None = None


def configs(args: argparse.Namespace) -> dict[str, TrainConfig]:
    """The TrainConfig of each variant (the baseline's: the model, optimiser and attack)."""
    base = TrainConfig(
        arch=args.arch,
        width=args.width,
        batch_size=args.batch_size,
        attack_steps=args.steps,
        device=args.device,
        progress=False,
        epochs=1,
        channels_last=False,
        attack_fold_batchnorm=False,
    )
    fast = replace(
        base,
        channels_last=args.channels_last,
        attack_fold_batchnorm=True,
        precision=args.precision,
        compile=args.compile,
    )
    return {
        "baseline": base,
        "rocl-plain": base,
        "rocl": fast,
        "rocl-shared": replace(fast, regularizer_forward="shared"),
        "simclr": replace(fast, adversarial=False),
        "rocl-fold": replace(base, attack_fold_batchnorm=True),
        "rocl-channels-last": replace(base, channels_last=args.channels_last),
    }


def load_batch(batch_size: int) -> torch.Tensor:
    """(B, 3, 32, 32) uint8: the first images of the bundled CIFAR-10 sample (random pixels if
    the sample cannot be read)."""
    try:
        from robust_contrastive.data import load_sample

        images = load_sample().images
        if images.shape[0] >= batch_size:
            return images[:batch_size].contiguous()
    except (OSError, ValueError):
        pass
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=generator)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, cfg: TrainConfig) -> tuple[Callable[[torch.Tensor], torch.Tensor], Any]:
    """The step function of variant ``name`` and its owner (trainer or OriginalRoCL)."""
    trainer = RoCLTrainer(cfg)  # seeded: every variant starts from the same weights
    if name != "baseline":
        return (lambda batch: library_step(trainer, batch)), trainer
    original = OriginalRoCL.from_trainer(trainer)
    return original.step, original


def check_losses(
    owners: dict[str, Any], batch: torch.Tensor, device: torch.device
) -> dict[str, dict[str, float]]:
    """Each adversarial library variant's loss vs the baseline's on the same views and start
    (before any training step: all models hold the same initial weights)."""
    baseline = owners.get("baseline")
    out: dict[str, dict[str, float]] = {}
    if baseline is None:
        return out
    # Each check updates BatchNorm's running statistics: start each from the initial ones.
    initial = [copy.deepcopy(m.state_dict()) for m in (baseline.encoder, baseline.projector)]
    for name, owner in owners.items():
        if name == "baseline" or not owner.config.adversarial:
            continue
        baseline.encoder.load_state_dict(initial[0])
        baseline.projector.load_state_dict(initial[1])
        t1, t2, start = library_views(owner, batch)
        library_loss, _ = owner.compute_loss(batch)
        baseline_loss, _ = baseline.loss(t1, t2, start)
        a, b = float(library_loss.detach()), float(baseline_loss.detach())
        out[name] = {
            "library": a,
            "baseline": b,
            "abs_diff": abs(a - b),
            "rel_diff": abs(a - b) / b,
        }
        owner.optimizer.zero_grad(set_to_none=True)
        baseline.optimizer.zero_grad()
    synchronize(device)
    return out


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB: Linux's VmHWM, else ``ru_maxrss``.

    (On Linux, ``ru_maxrss`` survives fork + exec: a child started by a big parent reports
    at least the parent's peak. VmHWM belongs to the process's own address space.)
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def probe_memory(args: argparse.Namespace, name: str) -> float | None:
    """Peak RSS of a fresh process running one step of ``name`` (CPU memory per variant)."""
    command = [sys.executable, __file__, "--memory-probe", name, *forwarded_flags(args)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
        return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as error:
        print(f"memory probe of {name} failed: {error}", file=sys.stderr)
        return None


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    flags = [
        f"--arch={args.arch}",
        f"--width={args.width}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--device={args.device}",
        f"--precision={args.precision}",
        "--channels-last" if args.channels_last else "--no-channels-last",
        *([f"--threads={args.threads}"] if args.threads is not None else []),
    ]
    return [*flags, "--compile"] if args.compile else flags


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=7, help="attack steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="channels_last for the fast library variants (default on; the baseline never)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile (library)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {VARIANTS + ABLATIONS} (default: the first five)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--no-memory-probe",
        action="store_true",
        help="on CPUs, skip the per-variant peak-RSS subprocesses (one step each)",
    )
    parser.add_argument("--no-loss-check", action="store_true", help="skip the loss check")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS + ABLATIONS))
    if unknown or not names:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS + ABLATIONS}")
    args.variants = names
    if args.warmup < 0 or args.repeats < 1:
        parser.error("--warmup must be >= 0 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cpu" and args.channels_last and args.width < 8:
        print("channels_last off: torch 2.14.1's CPU conv backward crashes below width 8")
        args.channels_last = False
    torch.manual_seed(0)  # the baseline's augmentation and random start use the global RNG
    all_configs = configs(args)
    batch = load_batch(args.batch_size).to(device)

    if args.memory_probe is not None:  # child process: one step, then report peak RSS
        step, _ = build(args.memory_probe, all_configs[args.memory_probe])
        step(batch)
        print(json.dumps({"peak_rss_mib": peak_rss_mib()}))
        return 0

    variants: list[Variant] = []
    owners: dict[str, Any] = {}
    for name in args.variants:
        cfg = all_configs[name]
        step, owner = build(name, cfg)
        owners[name] = owner
        units = units_baseline(cfg.attack_steps) if name == "baseline" else units_library(cfg)
        variants.append(Variant(name, cfg, step, units, []))

    checks = {} if args.no_loss_check else check_losses(owners, batch, device)
    for variant in variants:
        variant.loss_check = checks.get(variant.name)
        for _ in range(args.warmup):
            variant.step(batch)
    synchronize(device)
    for _ in range(args.repeats):  # round-robin: drifting load hits every variant alike
        for variant in variants:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            start = time.perf_counter()
            variant.step(batch)
            synchronize(device)
            variant.times.append(time.perf_counter() - start)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) / 2**20
                variant.peak_memory_mib = max(variant.peak_memory_mib or 0.0, peak)
    if device.type != "cuda" and not args.no_memory_probe:
        for variant in variants:
            variant.peak_memory_mib = probe_memory(args, variant.name)
    counted = {v.name: counted_units(v.name, v.config) for v in variants}

    baseline = next((v for v in variants if v.name == "baseline"), None)
    base_rate = args.batch_size / statistics.median(baseline.times) if baseline else None
    rows: list[dict[str, Any]] = []
    for v in variants:
        seconds = statistics.median(v.times)
        rate = args.batch_size / seconds
        rows.append(
            {
                "name": v.name,
                "images_per_s": rate,
                "ratio_to_baseline": rate / base_rate if base_rate else None,
                "seconds_per_step_median": seconds,
                "seconds_per_step": v.times,
                "units_per_image": v.units,
                "units_per_image_counted": counted[v.name],
                "unit_ratio_to_baseline": baseline.units / v.units if baseline else None,
                "peak_memory_mib": v.peak_memory_mib,
                "loss_check": v.loss_check,
                "config": {
                    k: getattr(v.config, k)
                    for k in (
                        "adversarial",
                        "regularizer_forward",
                        "channels_last",
                        "attack_fold_batchnorm",
                        "precision",
                        "compile",
                    )
                }
                if v.name != "baseline"
                else "original algorithm: fp32, contiguous, per-image augmentation",
            }
        )
    memory = "max_memory_allocated" if device.type == "cuda" else "peak RSS of a 1-step process"
    print(
        f"\n{args.arch} width {args.width}, batch {args.batch_size}, {args.steps} attack steps, "
        f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads; median of "
        f"{args.repeats} steps after {args.warmup} warm-up"
    )
    header = (
        f"{'variant':<18} {'images/s':>9} {'x base':>7} {'s/step':>7} {'units':>6} "
        f"{'counted':>7} {'units x':>7} {'mem MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = row["ratio_to_baseline"]
        unit_ratio = row["unit_ratio_to_baseline"]
        mem = row["peak_memory_mib"]
        print(
            f"{row['name']:<18} {row['images_per_s']:>9.2f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>7} "
            f"{row['seconds_per_step_median']:>7.2f} {row['units_per_image']:>6} "
            f"{row['units_per_image_counted']:>7.1f} "
            f"{'-' if unit_ratio is None else f'{unit_ratio:.2f}':>7} "
            f"{'-' if mem is None else f'{mem:.0f}':>8}"
        )
    print(
        "units: encoder work per image (forward 1, input-gradient backward 1, backward with "
        "weight gradients 2); 'units x' = baseline units / variant units, the speed-up the "
        f"work alone allows; memory: {memory}"
    )
    for name, check in checks.items():
        print(
            f"loss check {name}: library {check['library']:.6f} vs baseline "
            f"{check['baseline']:.6f} on the same views and start (relative difference "
            f"{check['rel_diff']:.1e})"
        )
    result = {
        "machine": machine(device),
        "torch": torch.__version__,
        "settings": {
            "arch": args.arch,
            "width": args.width,
            "batch_size": args.batch_size,
            "attack_steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "device": str(device),
            "precision": args.precision,
            "channels_last": args.channels_last,
            "compile": args.compile,
            "memory": memory,
        },
        "variants": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
