"""Reproduce RoCL's central claims on real CIFAR-10 at CPU scale (issue 7).

One command trains, under one budget and on the same images, a SimCLR encoder, a RoCL encoder
and a supervised PGD-AT classifier of the same architecture (a CIFAR resnet18 at width 16), then
evaluates them on held-out images they never trained or selected on:

* the self-supervised encoders with standard linear evaluation (a linear probe on clean
  features, ``LE``) and robust linear evaluation (r-LE, eq. 7);
* clean accuracy, PGD-20 l-inf 8/255 with step 2/255 (the headline), the original's eps/10 step
  (``legacy``), l2 0.5, sparse l1 12, and AutoAttack (standard, l-inf 8/255);
* RoCL's transformation-smoothed classifier (eq. 8): clean accuracy against the number of
  transformation samples (Fig. 3d) and its robustness under EOT-PGD;
* a 2-D (PCA) view of clean images and their instance-wise adversaries (Fig. 3a, 3b).

Splits (stratified, seeded, indices into the sorted ImageFolder listing, saved in
``OUT/split.json``): ``eval`` (200 per class, only ever evaluated on), ``select`` (100 per class,
picks the probe's and the AT model's epoch), and the rest (``pool``), whose first
``--train-per-class`` images per class train the encoders and the AT model; the linear probes
train on the whole pool.

Every stage writes its result under ``--out`` and is skipped when that result exists, and the
training runs resume from their last checkpoint: rerun the same command after an interruption.
The results go to ``--results`` (default ``experiments/results/``; with ``--quick``, the run
folder): ``cifar10_cpu[_TAG].json`` (every report, history and figure's data) and ``.md`` (the
table); the main run also writes its splits there (``cifar10_cpu_split.json``). Nothing else is
written: the figures come from the results file (``experiments/plot_cifar10.py``) and the
bundled models from the run folder (``tools/register_pretrained.py``), see docs/results.md.

Run (on 2 CPU cores, about 4 hours of stages on a machine that trains RoCL at 20 images/s)::

    python experiments/reproduce_cifar10.py --data ../shared/data/cifar10-train --parallel

A smoke test of every stage (``--quick``: 400 training images) on the bundled 5,000-image
sample, about a minute of CPU time without AutoAttack::

    python experiments/reproduce_cifar10.py --data sample --quick --no-autoattack \\
        --out runs/cifar10-quick

``--parallel`` runs the RoCL stages and the SimCLR + AT stages in two one-thread processes (on
2 cores about 1.3x the throughput of one two-thread process) and gathers their results.

Ablations (Tables 5, 6 and 7 of the paper) are options of the same command, written under their own
``--tag``::

    # the image RoCL's training attack perturbs (Table 5): x instead of t(x)
    python experiments/reproduce_cifar10.py --data ... --out runs/cifar10-cpu-source-x \\
        --tag source-x --attack-source original --methods rocl
    # the attack loss of RoCL's training attack (Table 7): contrastive, mse, cosine, l1
    python experiments/reproduce_cifar10.py --data ... --out runs/cifar10-cpu-attack-mse \\
        --tag attack-mse --attack-loss mse --methods rocl
    # PGD steps at test time (Table 6), on the trained models of the main run
    python experiments/reproduce_cifar10.py --data ... --pgd-steps 10 20 40 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robust_contrastive import (
    FinetuneConfig,
    ImageDataset,
    InstanceWiseAttack,
    ProjectionHead,
    RobustClassifier,
    RobustLinearProbe,
    RoCLEncoder,
    RoCLTrainer,
    Threat,
    TrainConfig,
    TransformationSmoothedClassifier,
    evaluate_robustness,
    finetune,
    load_dataset,
    train_val_split,
)
from robust_contrastive.data import first_per_class
from robust_contrastive.evaluation.smoothing import accuracy_vs_samples

from common import HEADLINE, clean_probe, robust_probe

logger = logging.getLogger("reproduce_cifar10")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
METHODS: tuple[str, ...] = ("simclr", "rocl", "at")
# The threats, grouped by the number of evaluation images they run on (HEADLINE: on all).
OTHER_THREATS: tuple[str, ...] = ("linf-8/255-legacy", "l2-0.5", "l1-12")  # on --lp-images
AUTOATTACK = "autoattack-linf-8/255"  # on --aa-images


@dataclass
class Budget:
    """Every setting of the run; defaults = the budget of docs/results.md (the second run)."""

    # data
    eval_per_class: int = 200  # 2,000 held-out evaluation images (never trained or selected on)
    select_per_class: int = 100  # 1,000 model-selection images (probe / AT epoch)
    train_per_class: int = 800  # 8,000 images train the encoders and the AT model
    # encoders (SimCLR and RoCL: the same settings, RoCL adds the instance-wise attack)
    arch: str = "resnet18"  # the paper's architecture
    width: int = 16  # CPU-sized (the paper: 64)
    epochs: int = 16  # one budget for the three methods (12 gave RoCL 38.9 / 17.1 %)
    batch_size: int = 256  # the paper's per-GPU batch
    lr: float = 0.5  # plain SGD + cosine: LARS' 1000-epoch schedule barely moves in 400 steps
    attack_loss: str = "contrastive"  # RoCL's training attack loss (Table 7 ablation)
    attack_source: str = "augmented"  # the image RoCL's attack perturbs, t(x) or x (Table 5)
    regularizer_forward: str = "shared"  # the 1/256 term reuses the 3-view forward: 20 % less
    # encoder work per image than the original's own forward (30 -> 24 units, throughput.py)
    # supervised PGD-AT baseline (standard settings, same images and epochs)
    at_batch_size: int = 128  # the standard AT batch
    at_lr: float = 0.1  # the standard AT learning rate (step schedule at 50 % / 75 %)
    at_attack_steps: int = 7  # PGD-7, step 2/255: Madry et al.'s CIFAR-10 training attack
    # linear evaluation
    probe_epochs: int = 50  # LE on cached clean features of the whole pool
    rle_per_class: int = 400  # r-LE trains on PGD examples of 4,000 images ...
    rle_epochs: int = 4  # ... for 4 epochs (PGD-10 per batch is the cost)
    rle_warm_start: bool = True  # r-LE starts from the LE probe's head ("rlew" models): 4
    # epochs from a fresh head reached 26 % clean and lowered robustness (first run)
    rle_lr: float = 0.01  # from the LE head: lr 0.1 first wrecked it (21 % after epoch 1)
    rle_select: str = "robust"  # r-LE's epoch: best PGD-10 accuracy on the selection split
    # evaluation
    lp_images: int = 1000  # legacy-step l-inf, l2 and l1 PGD-20
    aa_images: int = 500  # AutoAttack (standard)
    pgd_steps: tuple[int, ...] = ()  # extra l-inf PGD step counts on RoCL (Table 6 ablation)
    smooth_images: int = 1000  # smoothed accuracy vs samples
    smooth_samples: tuple[int, ...] = (1, 2, 4, 8, 16)  # transformation samples (Fig. 3d)
    smooth_n: int = 8  # samples of the attacked smoothed classifier
    smooth_attack_images: int = 200  # EOT-PGD-20 on the smoothed classifier
    eot_samples: int = 4  # EOT gradient samples per PGD step
    embed_images: int = 500  # images of the 2-D embedding (Fig. 3a, 3b)
    seed: int = 0  # seeds the splits, the models, every augmentation and attack start
    methods: tuple[str, ...] = METHODS

    def train_config(self, adversarial: bool) -> TrainConfig:
        return TrainConfig(
            arch=self.arch,
            width=self.width,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lars=False,
            lr=self.lr,
            lr_warmup_multiplier=1.0,
            warmup_epochs=0,
            adversarial=adversarial,
            attack_loss=self.attack_loss,
            attack_source=self.attack_source,
            regularizer_forward=self.regularizer_forward,
            channels_last=self.width >= 8,
            checkpoint_every=1,
            seed=self.seed,
        )

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(
            method="at",
            epochs=self.epochs,
            batch_size=self.at_batch_size,
            lr=self.at_lr,
            attack_steps=self.at_attack_steps,
            checkpoint_every=1,
            seed=self.seed,
        )


QUICK = Budget(
    eval_per_class=20,
    select_per_class=10,
    train_per_class=40,
    width=8,
    epochs=1,
    batch_size=64,
    probe_epochs=3,
    rle_per_class=10,
    rle_epochs=1,
    lp_images=40,
    aa_images=20,
    smooth_images=40,
    smooth_samples=(1, 2),
    smooth_n=2,
    smooth_attack_images=10,
    eot_samples=2,
    embed_images=40,
)


@dataclass
class Splits:
    pool: ImageDataset
    train: ImageDataset
    rle: ImageDataset
    select: ImageDataset
    eval: ImageDataset
    record: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ helpers
class Stages:
    """Named stages whose JSON results are kept in ``out/stages``: done once, then read back."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "stages"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)``'s result: computed and recorded, or read back from its record."""
        path = self.folder / f"{name.replace('/', '_')}.json"
        if path.exists():
            record = json.loads(path.read_text())
            self.seconds[name] = record["seconds"]
            logger.info("stage %s: done before (%.0f s), skipped", name, record["seconds"])
            return record["result"]
        logger.info("stage %s: starting", name)
        start = time.perf_counter()
        result = work(*args)
        seconds = time.perf_counter() - start
        self.seconds[name] = seconds
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"seconds": seconds, "result": result}, indent=1))
        tmp.replace(path)
        logger.info("stage %s: %.0f s", name, seconds)
        return result


def make_splits(dataset: ImageDataset, budget: Budget) -> Splits:
    """The seeded splits; ``record`` holds their indices into ``dataset`` (split.json).

    ``record["train"]`` (the probes' pool) and ``record["val"]`` (the evaluation images) are
    what ``robust-contrastive probe/evaluate --split`` read.
    """
    pool_idx, eval_idx = train_val_split(
        dataset.labels, val_per_class=budget.eval_per_class, seed=budget.seed
    )
    keep, select = train_val_split(
        dataset.labels[pool_idx], val_per_class=budget.select_per_class, seed=budget.seed + 1
    )
    pool_idx, select_idx = pool_idx[keep], pool_idx[select]
    train_idx = pool_idx[first_per_class(dataset.labels[pool_idx], budget.train_per_class)]
    rle_idx = train_idx[first_per_class(dataset.labels[train_idx], budget.rle_per_class)]
    record = {
        "seed": budget.seed,
        "train": pool_idx.tolist(),
        "val": eval_idx.tolist(),
        "select": select_idx.tolist(),
        "encoder_train": train_idx.tolist(),
        "rle_train": rle_idx.tolist(),
    }
    return Splits(
        pool=dataset.subset(pool_idx),
        train=dataset.subset(train_idx),
        rle=dataset.subset(rle_idx),
        select=dataset.subset(select_idx),
        eval=dataset.subset(eval_idx),
        record=record,
    )


# ------------------------------------------------------------------ the stages
def train_encoder(out: Path, name: str, config: TrainConfig, data: ImageDataset) -> dict[str, Any]:
    result = RoCLTrainer(config, out / name).fit(data, resume=True)
    return {"history": result.history}


def train_at(out: Path, budget: Budget, splits: Splits) -> dict[str, Any]:
    result = finetune(
        None,
        splits.train,
        budget.finetune_config(),
        val=splits.select,
        out_dir=out / "at",
        arch=budget.arch,
        width=budget.width,
        resume=True,
    )
    return {"history": result.history, "best_epoch": result.best_epoch}


def fit_probe(out: Path, name: str, kind: str, budget: Budget, splits: Splits) -> dict[str, Any]:
    """``kind``: "le" (clean), "rle" (r-LE from a fresh head), "rlew" (r-LE from the LE head)."""
    encoder = RoCLEncoder.from_pretrained(out / name)
    if kind in ("rle", "rlew"):  # r-LE (eq. 7): PGD-10 examples of augmented images
        probe = robust_probe(encoder, budget.rle_epochs, budget.rle_lr if kind == "rlew" else 0.1)
        if kind == "rlew":
            clean = RobustLinearProbe.from_pretrained(out / name / "probe-le")
            probe.head.load_state_dict(clean.head.state_dict())
        data, select = splits.rle, budget.rle_select
    else:  # LE: clean, un-augmented features of the whole pool (cached: seconds per epoch)
        probe = clean_probe(encoder, budget.probe_epochs)
        data, select = splits.pool, "clean"
    fitted = probe.fit(
        data, val=splits.select, seed=budget.seed, warm_start=kind == "rlew", select=select
    )
    probe.save_pretrained(out / name / f"probe-{kind}")
    return {"history": fitted.history, "best_epoch": fitted.best_epoch, "n_images": len(data)}


def load_classifier(out: Path, model: str) -> RobustLinearProbe | RobustClassifier:
    if model == "at":
        return RobustClassifier.from_pretrained(out / "at")
    method, kind = model.split("-")
    return RobustLinearProbe.from_pretrained(out / method / f"probe-{kind}")


def evaluate(
    out: Path,
    model: str,
    data: ImageDataset,
    threats: list[str | Threat],
    n_images: int | None,
    budget: Budget,
) -> dict[str, Any]:
    classifier = load_classifier(out, model)
    report = evaluate_robustness(
        classifier,
        data,
        threats,
        n_images=n_images,
        seed=budget.seed,
        sanity_checks=HEADLINE in threats,
    )
    logger.info("%s:\n%s", model, report.to_markdown())
    return report.to_dict()


def smoothing(out: Path, budget: Budget, splits: Splits) -> dict[str, Any]:
    probe = RobustLinearProbe.from_pretrained(out / "rocl" / "probe-le")
    subset = splits.eval.subset(
        torch.randperm(len(splits.eval), generator=torch.Generator().manual_seed(budget.seed))[
            : budget.smooth_images
        ]
    )
    curve = accuracy_vs_samples(
        probe.encoder, probe.head, subset, sample_counts=budget.smooth_samples, seed=budget.seed
    )
    smoothed = TransformationSmoothedClassifier.from_probe(
        probe,
        n_samples=budget.smooth_n,
        generator=torch.Generator().manual_seed(budget.seed),
    )
    report = evaluate_robustness(
        smoothed,
        splits.eval,
        [HEADLINE],
        n_images=budget.smooth_attack_images,
        seed=budget.seed,
        eot_samples=budget.eot_samples,
        sanity_checks=False,
    )
    # The base (unsmoothed) LE classifier on the same images, for a like-for-like comparison.
    base = evaluate_robustness(
        probe,
        splits.eval,
        [HEADLINE],
        n_images=budget.smooth_attack_images,
        seed=budget.seed,
        sanity_checks=False,
    )
    return {
        "accuracy_vs_samples": {str(k): v for k, v in curve.items()},
        "n_images_curve": len(subset),
        "smoothed": report.to_dict(),
        "base_same_images": base.to_dict(),
    }


def embedding(out: Path, method: str, budget: Budget, splits: Splits) -> dict[str, Any]:
    """PCA of clean features and of their instance-wise adversaries' (Fig. 3a / 3b)."""
    encoder = RoCLEncoder.from_pretrained(out / method)
    projector = ProjectionHead.from_pretrained(out / method / "projector")
    # A seeded random subset (the split is sorted by class).
    order = torch.randperm(len(splits.eval), generator=torch.Generator().manual_seed(budget.seed))
    subset = splits.eval.subset(order[: budget.embed_images])
    images = subset.images.float() / 255  # (N, 3, 32, 32)
    labels = subset.labels
    # The training attack's settings; the target is the clean image itself.
    attack = InstanceWiseAttack(encoder, projector, eps=8 / 255, alpha=0.007, steps=7)
    generator = torch.Generator().manual_seed(budget.seed)
    adversaries = torch.cat(
        [
            attack(images[i : i + 250], images[i : i + 250], generator)
            for i in range(0, len(images), 250)
        ]
    )
    with torch.no_grad():
        clean = encoder(images)  # (N, F)
        adv = encoder(adversaries)  # (N, F)
    cosine = F.cosine_similarity(clean, adv, dim=1)  # (N,)
    mean = clean.mean(0, keepdim=True)  # (1, F)
    _, _, v = torch.pca_lowrank(clean - mean, q=2, center=False)  # v: (F, 2)
    clean_2d = (clean - mean) @ v  # (N, 2)
    adv_2d = (adv - mean) @ v  # (N, 2)
    scale = (clean - mean).norm(dim=1).mean()
    return {
        "clean": clean_2d.tolist(),
        "adversarial": adv_2d.tolist(),
        "labels": labels.tolist(),
        "mean_cosine_clean_adv": float(cosine.mean()),
        "mean_relative_shift": float(((adv - clean).norm(dim=1) / scale).mean()),
    }


# ------------------------------------------------------------------ the summary
MODEL_NAMES = {
    "simclr-le": "SimCLR, LE",
    "simclr-rle": "SimCLR, r-LE",
    "rocl-le": "RoCL, LE",
    "rocl-rle": "RoCL, r-LE",
    "simclr-rlew": "SimCLR, r-LE from the LE head",
    "rocl-rlew": "RoCL, r-LE from the LE head",
    "at": "supervised PGD-AT",
}


def _accuracy(report: dict[str, Any] | None, threat: str) -> tuple[float, int] | None:
    if report is None:
        return None
    if threat == "clean":
        return report["clean_accuracy"], report["n_images"]
    for r in report["results"]:
        if r["name"] == threat:
            return r["accuracy"], r["n_images"]
    return None


def markdown_table(evaluations: dict[str, dict[str, dict[str, Any]]]) -> str:
    columns = [
        ("clean", "clean"),
        (HEADLINE, "PGD-20 l-inf 8/255"),
        (AUTOATTACK, "AutoAttack l-inf 8/255"),
        ("linf-8/255-legacy", "PGD-20 l-inf, eps/10 step"),
        ("l2-0.5", "PGD-20 l2 0.5"),
        ("l1-12", "PGD-20 l1 12"),
    ]
    head = "| model | " + " | ".join(f"{title} (%)" for _, title in columns) + " |"
    lines = [head, "| --- |" + " --- |" * len(columns)]
    for model, groups in evaluations.items():
        cells = []
        for threat, _ in columns:
            found = None
            for report in groups.values():
                found = found or _accuracy(report, threat)
            cells.append("-" if found is None else f"{100 * found[0]:.1f} (n={found[1]})")
        lines.append(f"| {MODEL_NAMES.get(model, model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (cifar10-train)")
    parser.add_argument("--out", default="runs/cifar10-cpu", help="run folder (resumable)")
    parser.add_argument("--tag", default="main", help="name of this run's results files")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke-test budget")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--attack-loss", default=None, help="RoCL training attack loss (Table 7)")
    parser.add_argument(
        "--attack-source",
        choices=("augmented", "original"),
        default=None,
        help="the image RoCL's training attack perturbs: t(x) (paper) or x (Table 5)",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument(
        "--pgd-steps", type=int, nargs="+", default=None, help="extra l-inf PGD steps (Table 6)"
    )
    parser.add_argument("--no-autoattack", action="store_true", help="skip AutoAttack")
    parser.add_argument(
        "--rle-warm-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="r-LE starts from the LE probe's head (models *-rlew; the default) or, with "
        "--no-rle-warm-start, from a fresh head (models *-rle, lr 0.1)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder of the results files (default: experiments/results; --quick: --out)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the RoCL stages and the SimCLR + AT stages in two processes of one thread "
        "each (on 2 cores about 1.3x the throughput of one 2-thread process), then gather",
    )
    parser.add_argument("--lane", action="store_true", help=argparse.SUPPRESS)  # a --parallel child
    return parser.parse_args(argv)


LANES: tuple[tuple[str, ...], ...] = (("rocl",), ("simclr", "at"))


def run_lanes(argv: list[str], out: Path, methods: tuple[str, ...]) -> dict[str, float]:
    """Run each lane's stages in a child process of one thread; their logs go to out/logs.

    The children share the run folder: each stage has its own record file, and only this
    (parent) process writes budget.json, split.json and the results.
    """
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    # The children get this command without --parallel / --methods / --threads.
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip and not arg.startswith("--"):
            continue
        skip = arg in ("--methods", "--threads")
        if not skip and arg != "--parallel":
            kept.append(arg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    children = []
    for lane in LANES:
        lane_methods = [m for m in lane if m in methods]
        if not lane_methods:
            continue
        name = "-".join(lane_methods)
        command = [sys.executable, str(Path(__file__).resolve()), *kept, "--lane", "--threads", "1"]
        command += ["--methods", *lane_methods]
        log = (logs / f"lane-{name}.log").open("a")
        logger.info("lane %s: %s (log: %s)", name, " ".join(command), log.name)
        children.append((name, subprocess.Popen(command, stdout=log, stderr=log, env=env), log))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    failed = []
    try:
        for name, child, log in children:
            if child.wait() != 0:
                failed.append(f"{name} (exit {child.returncode}, see {log.name})")
            seconds[name] = time.perf_counter() - start
            log.close()
    finally:
        for _, child, _ in children:  # an interrupted parent takes its lanes with it
            if child.poll() is None:
                child.terminate()
    if failed:
        raise SystemExit(f"lanes failed: {', '.join(failed)}; rerun the same command to resume")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = ("methods", "attack_loss", "attack_source", "epochs", "train_per_class", "pgd_steps")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k)}
    if args.rle_warm_start is not None:
        overrides["rle_warm_start"] = args.rle_warm_start
    for k in ("methods", "pgd_steps"):
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    budget = replace(QUICK if args.quick else Budget(), **overrides)
    if not args.no_autoattack:
        try:
            import torchattacks  # noqa: F401
        except ImportError:
            raise SystemExit(
                "AutoAttack needs torchattacks: pip install 'robust-contrastive[eval]' "
                "(or pass --no-autoattack)"
            ) from None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget_file = out / "budget.json"
    recorded = json.loads(json.dumps(asdict(budget)))  # tuples as lists, as read back
    if budget_file.exists():
        previous = json.loads(budget_file.read_text())
        training_keys = [
            k
            for k in recorded
            if k not in ("pgd_steps", "methods", "lp_images", "aa_images", "rle_warm_start")
            and k in previous
            and previous[k] != recorded[k]
        ]
        if training_keys:
            raise SystemExit(
                f"{out} holds a run with other settings ({', '.join(training_keys)}): pass "
                "another --out (and --tag) for an ablation, or the same options to resume."
            )
    if not args.lane:
        budget_file.write_text(json.dumps(recorded, indent=1))

    start = time.perf_counter()
    stages = Stages(out)
    dataset = load_dataset(args.data)
    if len(dataset.classes) != 10:
        raise SystemExit(f"{args.data} has {len(dataset.classes)} classes; expected CIFAR-10's 10")
    splits = make_splits(dataset, budget)
    split_file = out / "split.json"
    if split_file.exists() and json.loads(split_file.read_text()) != splits.record:
        raise SystemExit(f"{split_file} records another split: the data folder changed")
    if not args.lane:
        split_file.write_text(json.dumps(splits.record))
    # A smoke test (--quick) keeps its results in its run folder.
    results_dir = args.results or (out if args.quick else RESULTS_DIR)
    if args.tag == "main" and not args.quick and not args.lane:  # for re-evaluations
        results_dir.mkdir(parents=True, exist_ok=True)
        kept = {k: splits.record[k] for k in ("seed", "val", "select", "encoder_train")}
        (results_dir / "cifar10_cpu_split.json").write_text(json.dumps(kept) + "\n")
    logger.info(
        "splits: %d train, %d pool (probes), %d select, %d eval",
        len(splits.train),
        len(splits.pool),
        len(splits.select),
        len(splits.eval),
    )

    results: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "budget": recorded,
        "splits": {
            f"n_{k}": len(getattr(splits, k)) for k in ("train", "pool", "select", "eval", "rle")
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "training": {},
        "probes": {},
        "evaluations": {},
    }
    if args.parallel:
        results["lane_seconds"] = run_lanes(
            argv if argv is not None else sys.argv[1:], out, budget.methods
        )
    # Each method's stages in order (train, probes, evaluations, smoothing, embedding), the most
    # important method first; with --parallel the lanes ran them and they are read back here.
    groups: list[tuple[str, list[str | Threat], int | None]] = [
        ("pgd20", [HEADLINE], None),
        ("other", list(OTHER_THREATS), budget.lp_images),
    ]
    if not args.no_autoattack:
        groups.append(("autoattack", [AUTOATTACK], budget.aa_images))
    results["embedding"] = {}
    for method in (m for m in ("rocl", "simclr", "at") if m in budget.methods):
        # 1. training
        if method == "at":
            results["training"]["at"] = stages.run("train-at", train_at, out, budget, splits)
            models = ["at"]
        else:
            config = budget.train_config(adversarial=method == "rocl")
            results["training"][method] = stages.run(
                f"train-{method}", train_encoder, out, method, config, splits.train
            )
            # 2. probes
            kinds = ("le", "rlew" if budget.rle_warm_start else "rle")
            models = [f"{method}-{kind}" for kind in kinds]
            for kind in kinds:
                results["probes"][f"{method}-{kind}"] = stages.run(
                    f"probe-{method}-{kind}", fit_probe, out, method, kind, budget, splits
                )
        # 3. evaluations: the headline on each model first, then the costlier ones
        for group, threats, n in groups:
            for model in models:
                if group == "autoattack" and model.startswith("simclr-rle"):
                    continue  # budget: AutoAttack on the LE probes, RoCL's r-LE and AT
                results["evaluations"].setdefault(model, {})[group] = stages.run(
                    f"eval-{model}-{group}", evaluate, out, model, splits.eval, threats, n, budget
                )
        le = f"{method}-le"
        for steps in budget.pgd_steps if le in models else ():  # Table 6, on the LE probes
            threat = Threat(f"linf-8/255-pgd{steps}", "linf", 8 / 255, 2 / 255, steps=steps)
            work = (out, le, splits.eval, [threat], budget.lp_images, budget)
            # "steps{N}", not "pgd{N}": the headline group is already called "pgd20"
            results["evaluations"][le][f"steps{steps}"] = stages.run(
                f"eval-{le}-steps{steps}", evaluate, *work
            )
        # 4. smoothing and embeddings
        if method == "rocl":
            results["smoothing"] = stages.run("smoothing", smoothing, out, budget, splits)
        if method != "at":
            results["embedding"][method] = stages.run(
                f"embedding-{method}", embedding, out, method, budget, splits
            )
    if args.lane:  # the parent gathers the results
        return 0
    results["stage_seconds"] = stages.seconds
    results["total_stage_seconds"] = sum(stages.seconds.values())
    results["wall_seconds_this_invocation"] = time.perf_counter() - start
    # 5. the results file and its summary
    table = markdown_table(results["evaluations"])
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "cifar10_cpu" if args.tag == "main" else f"cifar10_cpu_{args.tag}"
    if args.quick:
        stem += "_quick"
    (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    summary = [
        f"# CIFAR-10 at CPU scale ({args.tag})",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{results['splits']['n_train']} training images, {budget.epochs} epochs; "
        f"{results['splits']['n_eval']} held-out evaluation images; total stage time "
        f"{results['total_stage_seconds'] / 60:.0f} min.",
        "",
        table,
    ]
    if "smoothing" in results:
        s = results["smoothing"]
        curve = ", ".join(f"{k}: {100 * v:.1f}" for k, v in s["accuracy_vs_samples"].items())
        sm, base = s["smoothed"], s["base_same_images"]
        summary += [
            "",
            f"Transformation smoothing (RoCL, LE), clean accuracy by samples on "
            f"{s['n_images_curve']} images: {curve}.",
            f"On {sm['n_images']} images: smoothed ({budget.smooth_n} samples) clean "
            f"{100 * sm['clean_accuracy']:.1f}, EOT-PGD-20 ({budget.eot_samples} EOT samples) "
            f"{100 * sm['results'][0]['accuracy']:.1f}; the base classifier clean "
            f"{100 * base['clean_accuracy']:.1f}, "
            f"PGD-20 {100 * base['results'][0]['accuracy']:.1f}.",
        ]
    for model, reports in results["evaluations"].items():  # Table 6: PGD steps at test time
        found = [
            (steps, acc)
            for steps in sorted(budget.pgd_steps)
            if (acc := _accuracy(reports.get(f"steps{steps}"), f"linf-8/255-pgd{steps}"))
        ]
        if found:
            n_images = found[0][1][1]
            cells = ", ".join(f"{steps}: {100 * acc:.1f}" for steps, (acc, _) in found)
            summary += [
                "",
                f"PGD steps at test time (Table 6), {MODEL_NAMES.get(model, model)}, l-inf "
                f"8/255 with step 2/255, accuracy by steps on {n_images} images: {cells}.",
            ]
    (results_dir / f"{stem}.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
