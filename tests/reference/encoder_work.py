"""Encoder work per image of one training step, from the settings and counted by a hook.

A forward of n images is n units, an input-gradient backward n more, a backward with weight
gradients 2n. ``benchmarks/throughput.py`` reports these counts beside its timings;
``tests/test_throughput_equivalence.py`` checks that the formulas match what a forward hook
counts on a real step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig

from .original_rocl import OriginalRoCL, library_step


def units_baseline(steps: int) -> int:
    """Encoder units per image of one original step: fwd = 1, input-grad bwd = 1, bwd = 2."""
    attack = steps * (2 + 2)  # cat(x, t'(x)): 2 images forward + 2 backward (input grad)
    main = 3 + 3 * 2  # cat(t, t', adv) forward + backward with weight gradients
    regularizer = 2 + 2 * 2  # cat(adv, t') forward + backward with weight gradients
    return attack + main + regularizer


def units_library(cfg: TrainConfig) -> int:
    """Encoder units per image of one RoCLTrainer step (same counting as units_baseline)."""
    if not cfg.adversarial:
        return 2 + 2 * 2  # cat(t, t') forward + backward
    attack = 0
    if cfg.eps > 0 and (cfg.attack_steps > 0 or cfg.attack_random_start):
        attack = 1 + cfg.attack_steps * (1 + 1)  # positives once; x_adv forward + input grad
    main = 3 + 3 * 2
    regularizer = 2 + 2 * 2 if cfg.regularizer_forward == "separate" else 0
    return attack + main + regularizer


@contextmanager
def count_encoder_work() -> Iterator[list[float]]:
    """Count encoder units over the block with a global forward hook on every RoCLEncoder
    (the attack's BatchNorm-folded copy included): a forward of n images is n units, plus n
    when it runs with gradients in eval mode (the attack's input-gradient backward) or 2n in
    train mode (a backward with weight gradients). Yields a one-element list: the total."""
    total = [0.0]

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, RoCLEncoder):
            n = output.shape[0]
            grad = torch.is_grad_enabled()
            total[0] += n + (0 if not grad else (2 * n if module.training else n))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield total
    finally:
        handle.remove()


def counted_units(name: str, cfg: TrainConfig) -> float:
    """Units per image of one step of variant ``name``, counted on a small CPU copy."""
    small = replace(
        cfg, width=8, batch_size=4, image_size=16, device="cpu", compile=False, progress=False
    )
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    trainer = RoCLTrainer(small)
    with count_encoder_work() as total:
        if name == "baseline":
            OriginalRoCL.from_trainer(trainer).step(batch)
        else:
            library_step(trainer, batch)
    return total[0] / 4
