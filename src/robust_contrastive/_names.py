"""The fixed sets of names that settings take, in a module that imports nothing heavy.

The command line builds its ``--help`` (allowed values of every choice option, the bundled
samples' overlap) from these without importing torch; the modules that implement them import
them from here.
"""

from __future__ import annotations

NORMS: tuple[str, ...] = ("linf", "l2", "l1")  # threat models of the attacks
ATTACK_LOSSES: tuple[str, ...] = ("contrastive", "mse", "cosine", "l1")  # instance-wise attack
ARCHS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50")  # RoCLEncoder architectures
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")  # TrainConfig.precision
REGULARIZER_FORWARDS: tuple[str, ...] = ("separate", "shared")  # TrainConfig.regularizer_forward
ATTACK_SOURCES: tuple[str, ...] = ("augmented", "original")  # TrainConfig.attack_source
# The threats of evaluate_robustness, in the order of evaluation.suite.THREATS (a test checks it).
THREAT_NAMES: tuple[str, ...] = (
    "linf-8/255",
    "linf-16/255",
    "linf-8/255-legacy",
    "linf-16/255-legacy",
    "l2-0.25",
    "l2-0.5",
    "l1-7.84",
    "l1-12",
    "autoattack-linf-8/255",
)

# Evaluations on fewer images are flagged (evaluation.checks) and kept off model cards'
# model-index (model_card): below this, one image moves an accuracy by more than a point.
MIN_EVAL_IMAGES = 100

SAMPLE_SPLIT_OVERLAP: dict[str, dict[str, int]] = {
    "sample": {
        "images": 5000,
        "encoder_train": 4722,
        "probe_train": 4722,
        "select": 89,
        "held_out": 189,
    },
    "sample-held-out": {
        "images": 2000,
        "encoder_train": 0,
        "probe_train": 0,
        "select": 0,
        "held_out": 2000,
    },
}
"""How many images of each bundled sample the bundled pretrained models saw.

Keys: the sample's spec (``"sample"``, ``"sample-held-out"``), then ``images`` (its size),
``encoder_train`` (images that trained the bundled encoders ``rocl-resnet18-w16-cifar10-cpu``
and ``simclr-resnet18-w16-cifar10-cpu``: ``"encoder_train"`` of
``experiments/results/cifar10_cpu_split.json``), ``probe_train`` (images that trained their
``-probe`` linear probes: the pool, every index in neither ``"val"`` nor ``"select"``),
``select`` (images that chose the probes' epoch) and ``held_out`` (images of the evaluation
split ``"val"``, never trained or selected on). The encoders' training images are a subset of
the probes'. Computed from the split file with
[`sample_indices`][robust_contrastive.data.sample_indices] (tests/test_data.py checks the
figures)."""
