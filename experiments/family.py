"""The label-free family side by side on real CIFAR-10 at CPU scale, at equal compute (issue 18).

One resumable command trains RoCL, SimCLR, ACL, DynACL, AIR, DeACL, DynACL++ and a supervised
PGD-AT baseline on the same 8,000 CIFAR-10 images as the bundled CPU models, each for the same
encoder work per training image, and scores every encoder with the one evaluation protocol
([`evaluate_protocol`][robust_contrastive.evaluation.protocol.evaluate_protocol]: SLF, ALF, AFF)
on the 2,000 held-out images that no model trains or selects on.

Splits: the published run's (``experiments/results/cifar10_cpu_split.json``, recomputed from the
data and checked): ``eval`` 200 per class (tested on only), ``select`` 100 per class (picks every
epoch), ``encoder_train`` the first 800 per class of the pool (train every method and the
protocol's heads).

Equal compute: the budget is ``--budget-units`` encoder-work units per training image (default
384 = the published RoCL run: 16 epochs x 24 units). A method's units per image and epoch are
counted with the forward hook of ``tests/reference/encoder_work.py`` (a forward = 1 unit, an
input-gradient backward = 1, a backward with weight gradients = 2) on one step of its objective
at the run's settings, and its epochs are ``floor(budget / units)``. DeACL's teacher is the
bundled ``simclr-resnet18-w16-cifar10-cpu`` (16 SimCLR epochs on the same 8,000 images = 96
units, counted inside DeACL's budget). DynACL++ trains its own DynACL encoder and then LP-AFT
(k-means pseudo-labels, probe, TRADES fine-tuning; no label) on the training images; LP-AFT gets
``--lpaft-share`` of the budget and DynACL the rest. The measured CPU time (process time) of
every stage is recorded beside the units.

Short-run optimisation: batch 256, cosine over the run, no warm-up, width 16 for every method;
SGD lr 0.5, momentum 0.9 where the config allows it (RoCL, SimCLR, DeACL: the published RoCL
run's); ACL / DynACL / AIR keep their LARS at the official lr 5.0 (ACLConfig has no other
optimizer; without its 10-epoch warm-up and 1000-epoch cosine, LARS trains in 500 steps: on
1,000 sample images at width 8, 480 steps, LARS lr 5.0 reached NT-Xent 4.28 and a 30.1 % clean
probe, SGD lr 0.5 4.40 and 27.5 %). Each method keeps its own loss, attack and augmentation;
DynACL's / AIR's augmentation-annealing period is scaled to the run's epochs (official: 50 of
1000 epochs).

Every stage (a training, one protocol mode of one method) writes its result under ``--out`` and
is skipped when it exists; trainings resume from their per-epoch checkpoints: rerun the same
command to continue (a second command on the same ``--out`` is refused while one runs; a
``--parallel`` lane stops within seconds when its driver is killed). Results:
``experiments/results/family_cpu.json`` and ``family_cpu.md``, rewritten after every stage
(``--quick``: in ``--out``). Run::

    python experiments/family.py --data ../shared/data/cifar10-train --out runs/family --parallel

Smoke test (the bundled sample, 40 training images per class, width 8, 1 epoch per method,
1 protocol epoch on a few images, no AutoAttack; about 4 minutes with --parallel)::

    python experiments/family.py --data sample --out runs/family-quick --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from reproduce_cifar10 import QUICK as QUICK_SPLITS
from reproduce_cifar10 import Budget as ReproBudget
from reproduce_cifar10 import make_splits

from robust_contrastive import (
    ImageDataset,
    RoCLEncoder,
    RoCLTrainer,
    Threat,
    finetune,
    load_dataset,
)
from robust_contrastive import evaluate_robustness as _evaluate_robustness
from robust_contrastive.data import first_per_class
from robust_contrastive.evaluation.protocol import ProtocolConfig, evaluate_protocol, shared_images
from robust_contrastive.models.classifier import RobustClassifier
from robust_contrastive.training.acl import ACLObjective, build_acl_models, train_acl
from robust_contrastive.training.acl_config import ACLConfig
from robust_contrastive.training.deacl import DeACLConfig, DeACLObjective, train_deacl
from robust_contrastive.training.lpaft import train_lpaft
from robust_contrastive.training.lpaft_config import LPAFTConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference.encoder_work import count_encoder_work

logger = logging.getLogger("family")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SPLIT_FILE = RESULTS_DIR / "cifar10_cpu_split.json"
METHODS: tuple[str, ...] = ("rocl", "simclr", "acl", "dynacl", "air", "deacl", "dynacl++", "at")
LABEL_FREE = METHODS[:-1]
MODES: tuple[str, ...] = ("slf", "alf", "aff")
TEACHER = "simclr-resnet18-w16-cifar10-cpu"  # DeACL's stage 1: 16 SimCLR epochs, same images
TEACHER_UNITS = 16 * 6  # its work per image: 16 epochs x 6 units (SimCLR)
ACL_OFFICIAL_EPOCHS = 1000  # DynACL / AIR anneal the augmentation every 50 of 1000 epochs
AA_THREAT = Threat(name="autoattack-linf", norm="linf", eps=8 / 255, attack="autoattack")


@dataclass
class FamilyBudget:
    """Every setting of the run (recorded in OUT/budget.json; a resumed run must match)."""

    budget_units: float = 384.0  # encoder units per training image (RoCL: 16 epochs x 24)
    width: int = 16  # resnet18 width of every trained encoder (DeACL: its teacher's, 16)
    batch_size: int = 256  # the published RoCL run's batch, for every method that allows it
    lr: float = 0.5  # SGD, cosine, no warm-up: the published RoCL run's short-run optimisation
    acl_lr: float = 5.0  # ACL / DynACL / AIR: LARS at the official lr, cosine, no warm-up
    lpaft_share: float = 0.25  # DynACL++: the share of the budget given to LP-AFT
    at_batch_size: int = 128  # supervised PGD-AT: the reproduction's settings
    at_lr: float = 0.1
    protocol_epochs: int = 25  # ProtocolConfig's (the benchmark's) 25 epochs
    protocol_milestones: tuple[int, ...] = (15, 20)
    robust_train_per_class: int = 50  # ALF / AFF train on the first N per class of the
    # training images (a stratified subset: with the selection below and PGD-20 on 2,000
    # images, about 40 CPU-minutes per mode at ~200 units/s); SLF: all 8,000
    robust_val_per_class: int = 25  # ALF / AFF pick their epoch on PGD-10 of N per class of
    # the select split (per-epoch PGD on all 1,000 costs more than the training); SLF: all
    aa_images: int = 500  # AutoAttack on a seeded random subset of the eval split (PGD: all)
    test_per_class: int | None = None  # PGD-20 on the first N per class of the eval split
    # (None: all 2,000)
    sanity_checks: bool = True  # evaluate_robustness's gradient-masking checks on each model
    epochs_override: int | None = None  # every method's epochs (--quick: 1), else from budget
    seed: int = 0


QUICK = FamilyBudget(
    width=8,
    batch_size=64,
    at_batch_size=64,
    protocol_epochs=1,
    protocol_milestones=(1,),
    robust_train_per_class=5,
    robust_val_per_class=2,
    aa_images=20,
    test_per_class=5,
    sanity_checks=False,
    epochs_override=1,
)


# ------------------------------------------------------------------ configs and units
def rocl_config(budget: FamilyBudget, method: str, epochs: int) -> Any:
    repro = replace(ReproBudget(), width=budget.width, batch_size=budget.batch_size, lr=budget.lr)
    config = repro.train_config(adversarial=method == "rocl")
    return replace(config, epochs=epochs, progress=False, seed=budget.seed)


def acl_config(budget: FamilyBudget, method: str, epochs: int) -> ACLConfig:
    official = ACLConfig.for_method(method)
    # the annealing period scaled to the run (official: K = 50 of T = 1000 epochs)
    period = max(1, round(epochs * official.augment_period / ACL_OFFICIAL_EPOCHS))
    return ACLConfig.for_method(
        method,
        width=budget.width,
        epochs=epochs,
        batch_size=budget.batch_size,
        lr=budget.acl_lr,
        warmup_epochs=0,
        augment_period=period,
        checkpoint_every=1,
        progress=False,
        seed=budget.seed,
    )


def deacl_config(budget: FamilyBudget, epochs: int) -> DeACLConfig:
    return DeACLConfig(
        epochs=epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        warmup_epochs=0,
        checkpoint_every=1,
        progress=False,
        seed=budget.seed,
    )


def at_config(budget: FamilyBudget, epochs: int) -> Any:
    repro = replace(ReproBudget(), at_batch_size=budget.at_batch_size, at_lr=budget.at_lr)
    return replace(repro.finetune_config(), epochs=epochs, progress=False, seed=budget.seed)


def lpaft_config(budget: FamilyBudget, epochs: int) -> LPAFTConfig:
    official = LPAFTConfig()
    # the fine-tuning's milestones scaled to its epochs (official: 10, 20 of 25)
    milestones = sorted(
        {m for m in (round(epochs * x / official.epochs) for x in official.milestones) if m > 0}
    )
    return LPAFTConfig(
        epochs=epochs,
        milestones=tuple(milestones) or (epochs,),
        checkpoint_every=1,
        progress=False,
        seed=budget.seed,
    )


def _tiny_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=generator)


@contextmanager
def _counted() -> Iterator[list[float]]:
    with torch.random.fork_rng(devices=[]), count_encoder_work() as total:
        torch.manual_seed(0)
        yield total


def count_units(method: str, budget: FamilyBudget) -> float:
    """Encoder units per image of one training step of ``method`` at the run's settings
    (counted on a width-4 copy with 4 images of 16x16: the count does not depend on them)."""
    batch = _tiny_images()
    with _counted() as total:
        if method in ("rocl", "simclr"):
            config = replace(
                rocl_config(budget, method, 1), width=4, device="cpu", channels_last=False
            )
            RoCLTrainer(config).loss((batch,), torch.Generator().manual_seed(0))
        elif method in ("acl", "dynacl", "air"):
            acl = replace(acl_config(budget, method, 1), width=4, image_size=16, device="cpu")
            encoder, projector = build_acl_models(acl)
            momentum = acl.key_momentum > 0
            objective = ACLObjective(
                encoder,
                projector,
                acl,
                copy.deepcopy(encoder) if momentum else None,
                copy.deepcopy(projector) if momentum else None,
            )
            objective.train()
            objective.loss((batch,), torch.Generator().manual_seed(0))
        elif method == "deacl":
            teacher = RoCLEncoder(width=4).eval()
            objective_d = DeACLObjective(
                RoCLEncoder(width=4), teacher, replace(deacl_config(budget, 1), device="cpu")
            )
            objective_d.train()
            objective_d.loss((batch,), torch.Generator().manual_seed(0))
        else:
            raise ValueError(f"count_units: no one-step count for {method!r}")
    return total[0] / batch.shape[0]


def _tiny_labelled() -> ImageDataset:
    return ImageDataset(_tiny_images(), torch.tensor([0, 1, 0, 1]), ("a", "b"))


def count_at_units(budget: FamilyBudget) -> float:
    """Units per image and epoch of the supervised PGD-AT baseline (a 1-epoch run on 4 images)."""
    config = replace(at_config(budget, 1), batch_size=4, device="cpu", checkpoint_every=1)
    with _counted() as total:
        finetune(None, _tiny_labelled(), config, num_classes=2, arch="resnet18", width=4)
    return total[0] / 4


def count_lpaft_units(budget: FamilyBudget) -> tuple[float, float]:
    """LP-AFT's units per image: (fixed = k-means features + the probe's epochs, per fine-tuning
    epoch), from two tiny runs (1 and 2 fine-tuning epochs)."""
    encoder = RoCLEncoder(width=4)
    counts = []
    for epochs in (1, 2):
        config = replace(lpaft_config(budget, epochs), clusters=2, batch_size=4, device="cpu")
        with _counted() as total, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a random encoder's probe is at chance: expected
            logging.disable(logging.WARNING)  # ... and so is the library's log of it
            try:
                train_lpaft(encoder, _tiny_images(), config)
            finally:
                logging.disable(logging.NOTSET)
        counts.append(total[0] / 4)
    per_epoch = counts[1] - counts[0]
    return counts[0] - per_epoch, per_epoch


def epochs_for(budget_units: float, units_per_epoch: float, spent: float = 0.0) -> int:
    """The epochs that fit ``budget_units`` per image after ``spent`` units (at least 1)."""
    return max(1, math.floor((budget_units - spent) / units_per_epoch))


def plan(budget: FamilyBudget, methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per method: units per image and epoch, epochs, and the units per image spent."""
    b = budget.budget_units
    fixed = budget.epochs_override
    rows: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method == "at":
            units = count_at_units(budget)
        elif method == "dynacl++":
            continue
        else:
            units = count_units(method, budget)
        extra = TEACHER_UNITS if method == "deacl" else 0
        epochs = fixed or epochs_for(b, units, extra)
        rows[method] = {
            "units_per_epoch": units,
            "epochs": epochs,
            "units_per_image": epochs * units + extra,
        }
        if extra:
            rows[method]["teacher"] = TEACHER
            rows[method]["teacher_units"] = extra
    if "dynacl++" in methods:
        dyn = count_units("dynacl", budget)
        lp_fixed, lp_epoch = count_lpaft_units(budget)
        share = budget.lpaft_share * b
        ft_epochs = fixed or epochs_for(share, lp_epoch, lp_fixed)
        lp_units = lp_fixed + ft_epochs * lp_epoch
        pre_epochs = fixed or epochs_for(b, dyn, lp_units)
        rows["dynacl++"] = {
            "units_per_epoch": dyn,
            "epochs": pre_epochs,
            "lpaft_epochs": ft_epochs,
            "lpaft_fixed_units": lp_fixed,
            "lpaft_units_per_epoch": lp_epoch,
            "units_per_image": pre_epochs * dyn + lp_units,
        }
    return rows


# ------------------------------------------------------------------ stages
def _write_json(path: Path, value: Any) -> None:
    """Write ``path`` atomically: a run killed while writing leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


class Stages:
    """Named stages whose JSON results are kept in ``out/stages``: done once, then read back.
    Each record holds the stage's wall seconds and process CPU seconds (this process's time:
    with --parallel a lane is one process of one thread)."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "stages"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / f"{name.replace('/', '_')}.json"

    def read(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, name: str, work: Callable[..., Any], *args: Any) -> dict[str, Any]:
        record = self.read(name)
        if record is not None:
            logger.info("stage %s: done before (%.0f CPU s), skipped", name, record["cpu_seconds"])
            return record
        logger.info("stage %s: starting", name)
        wall, cpu = time.perf_counter(), time.process_time()
        result = work(*args)
        record = {
            "seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu,
            "result": result,
        }
        _write_json(self.path(name), record)
        logger.info("stage %s: %.0f s (%.0f CPU s)", name, record["seconds"], record["cpu_seconds"])
        return record


@dataclass
class Data:
    train: ImageDataset  # trains every method and SLF
    select: ImageDataset  # SLF's epoch
    robust_train: ImageDataset  # ALF / AFF training subset
    robust_select: ImageDataset  # ALF / AFF epoch selection subset
    eval: ImageDataset  # PGD-20 on all
    record: dict[str, Any]


def _first(data: ImageDataset, per_class: int) -> ImageDataset:
    return data.subset(first_per_class(data.labels, per_class))


def _without(data: ImageDataset, other: ImageDataset) -> tuple[ImageDataset, int]:
    """``data`` without its images that are byte-identical to one of ``other``."""
    shared = shared_images(data, other)
    if not len(shared):
        return data, 0
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[shared] = False
    return data.subset(torch.nonzero(keep).flatten()), len(shared)


def load_data(path: str, budget: FamilyBudget, quick: bool) -> Data:
    dataset = load_dataset(path)
    if len(dataset.classes) != 10:
        raise SystemExit(f"{path} has {len(dataset.classes)} classes; expected CIFAR-10's 10")
    splits = make_splits(dataset, QUICK_SPLITS if quick else ReproBudget())
    if not quick:  # the published models' images, checked against the data
        published = json.loads(SPLIT_FILE.read_text())
        for key in ("seed", "val", "select", "encoder_train"):
            if published[key] != splits.record[key]:
                raise SystemExit(
                    f"{SPLIT_FILE} records another {key!r} split than {path} gives: pass the "
                    "data folder of the published run (cifar10-train)."
                )
    # the protocol refuses byte-identical images across train / select / eval: drop repeats
    select, dropped_select = _without(splits.select, splits.eval)
    train, dropped_train = _without(splits.train, splits.eval)
    train, dropped_train_select = _without(train, select)
    record = {
        "source": "recomputed from the data; equal to " + SPLIT_FILE.name
        if not quick
        else "the bundled sample, reproduce_cifar10's --quick split",
        "n_train": len(train),
        "n_select": len(select),
        "n_eval_split": len(splits.eval),
        "dropped_repeats": {
            "select_in_eval": dropped_select,
            "train_in_eval": dropped_train,
            "train_in_select": dropped_train_select,
        },
    }
    per_class = budget.test_per_class
    data = Data(
        train=train,
        select=select,
        robust_train=_first(train, budget.robust_train_per_class),
        robust_select=_first(select, budget.robust_val_per_class),
        eval=splits.eval if per_class is None else _first(splits.eval, per_class),
        record=record,
    )
    record["n_eval"] = len(data.eval)
    record |= {"n_robust_train": len(data.robust_train), "n_robust_select": len(data.robust_select)}
    record["n_autoattack"] = min(budget.aa_images, len(data.eval))
    return data


def train_method(
    out: Path, method: str, budget: FamilyBudget, rows: dict[str, Any], data: Data
) -> dict[str, Any]:
    """Train ``method`` into ``out/method`` (resuming); its history and what it ran, with
    ``epoch_seconds``: the epochs' seconds summed over every session (a resumed stage's own
    CPU time counts only its last session)."""
    result = _train_method(out, method, budget, rows, data)
    histories = [result["history"], result.get("lpaft_history", [])]
    result["epoch_seconds"] = sum(r.get("seconds", 0.0) for h in histories for r in h)
    return result


def _train_method(
    out: Path, method: str, budget: FamilyBudget, rows: dict[str, Any], data: Data
) -> dict[str, Any]:
    folder = out / method
    epochs = rows[method]["epochs"]
    if method in ("rocl", "simclr"):
        config = rocl_config(budget, method, epochs)
        result = RoCLTrainer(config, folder).fit(data.train, resume=True)
        return {"history": result.history, "config": config.to_dict()}
    if method in ("acl", "dynacl", "air"):
        acl = acl_config(budget, method, epochs)
        return {"history": train_acl(data.train, acl, folder, resume=True).history,
                "config": acl.to_dict()}  # fmt: skip
    if method == "deacl":
        deacl = deacl_config(budget, epochs)
        fit = train_deacl(TEACHER, data.train, deacl, folder, resume=True)
        return {"history": fit.history, "config": deacl.to_dict(), "teacher": TEACHER}
    if method == "dynacl++":
        pre = acl_config(budget, "dynacl", epochs)
        pretrained = train_acl(data.train, pre, folder / "dynacl", resume=True)
        lp = lpaft_config(budget, rows[method]["lpaft_epochs"])
        post = train_lpaft(pretrained.encoder, data.train, lp, folder / "lpaft", resume=True)
        return {
            "history": pretrained.history,
            "lpaft_history": post.history,
            "probe_history": post.probe_history,
            "cluster_sizes": post.cluster_sizes,
            "config": pre.to_dict(),
            "lpaft_config": lp.to_dict(),
        }
    config_at = at_config(budget, epochs)
    fit_at = finetune(
        None,
        data.train,
        config_at,
        val=data.select,
        out_dir=folder,
        arch="resnet18",
        width=budget.width,
        resume=True,
    )
    return {"history": fit_at.history, "best_epoch": fit_at.best_epoch, "config": asdict(config_at)}


def encoder_folder(out: Path, method: str) -> Path:
    return out / "dynacl++" / "lpaft" if method == "dynacl++" else out / method


def _autoattack(model: torch.nn.Module, data: Data, budget: FamilyBudget) -> dict[str, Any]:
    """AutoAttack on the seeded subset that evaluate_protocol's ``n_autoattack_images`` draws."""
    report = _evaluate_robustness(
        model,
        data.eval,
        [AA_THREAT],
        n_images=budget.aa_images,
        seed=budget.seed,
        sanity_checks=False,
        progress=False,
    )
    return {
        "autoattack_accuracy": report.accuracy(AA_THREAT.name),
        "clean_accuracy_aa_images": report.clean_accuracy,
        "n_autoattack": report.n_images,
    }


def evaluate_mode(
    out: Path, method: str, mode: str, budget: FamilyBudget, data: Data, autoattack: bool
) -> dict[str, Any]:
    """One protocol mode on ``method``'s encoder: PGD-20 on every eval image, AutoAttack on a
    seeded subset of ``budget.aa_images`` of them."""
    encoder = RoCLEncoder.from_pretrained(encoder_folder(out, method))
    config = ProtocolConfig(
        epochs=budget.protocol_epochs,
        milestones=budget.protocol_milestones,
        autoattack=autoattack,
        n_autoattack_images=budget.aa_images,
        sanity_checks=budget.sanity_checks,
        seed=budget.seed,
    )
    robust = mode != "slf"
    result = evaluate_protocol(
        encoder,
        data.robust_train if robust else data.train,
        data.robust_select if robust else data.select,
        data.eval,
        modes=(mode,),
        config=config,
        progress=False,
    )
    return asdict(result.rows[0])


def evaluate_at(out: Path, budget: FamilyBudget, data: Data, autoattack: bool) -> dict[str, Any]:
    """The PGD-AT classifier itself (its epoch picked on the select split while training)."""
    classifier = RobustClassifier.from_pretrained(out / "at")
    pgd = Threat(name="linf-pgd20", norm="linf", eps=8 / 255, alpha=2 / 255, steps=20)
    report = _evaluate_robustness(
        classifier,
        data.eval,
        [pgd],
        seed=budget.seed,
        sanity_checks=budget.sanity_checks,
        progress=False,
    )
    row: dict[str, Any] = {
        "mode": "own",
        "clean_accuracy": report.clean_accuracy,
        "pgd_accuracy": report.accuracy(pgd.name),
        "autoattack_accuracy": None,
        "n_test": report.n_images,
        "warnings": list(report.warnings),
    }
    if autoattack:
        row |= _autoattack(classifier, data, budget)
    return row


# ------------------------------------------------------------------ results
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _training_seconds(record: dict[str, Any]) -> float:
    """A training stage's CPU seconds; its epochs' seconds over all sessions if more (resumed)."""
    return float(max(record["cpu_seconds"], record["result"].get("epoch_seconds", 0.0)))


def markdown_table(results: dict[str, Any], methods: tuple[str, ...]) -> str:
    """One row per method: budget, training CPU-minutes, then clean / PGD-20 / AA per mode."""
    head = ["method", "units / image", "epochs", "training CPU-min"]
    for mode in MODES:
        head += [f"{mode.upper()} clean", f"{mode.upper()} PGD-20", f"{mode.upper()} AA"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method in methods:
        plan_row = results["plan"].get(method, {})
        epochs = str(plan_row.get("epochs", "-"))
        if "lpaft_epochs" in plan_row:
            epochs += f" + {plan_row['lpaft_epochs']} LP-AFT"
        units = plan_row.get("units_per_image")
        training = results["training"].get(method)
        cells = [
            method,
            "-" if units is None else f"{units:.0f}",
            epochs,
            "not run" if training is None else f"{_training_seconds(training) / 60:.2f}",
        ]
        evaluations = results["evaluations"].get(method, {})
        for mode in MODES:
            row = evaluations.get("own" if method == "at" and mode == "aff" else mode)
            if method == "at" and mode != "aff":
                cells += ["n/a"] * 3
            elif row is None:
                cells += ["not run"] * 3
            else:
                r = row["result"]
                cells += [_pct(r["clean_accuracy"]), _pct(r["pgd_accuracy"])]
                cells.append(_pct(r.get("autoattack_accuracy")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(
    results: dict[str, Any], methods: tuple[str, ...], folder: Path, stem: str
) -> str:
    data = results["data"]
    lines = [
        "# The label-free family on CIFAR-10 at CPU scale (issue 18)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{data['n_train']} training images; SLF trains on all of them and selects on "
        f"{data['n_select']}; ALF / AFF train on {data['n_robust_train']} and select on "
        f"{data['n_robust_select']}; PGD-20 (l-inf 8/255, step 2/255) on {data['n_eval']} "
        + (
            f"held-out images, AutoAttack (standard) on {data['n_autoattack']} of them. Budget "
            if results["autoattack"]
            else "held-out images, no AutoAttack. Budget "
        )
        + f"{results['budget']['budget_units']:g} encoder units per training image; accuracies "
        "in %; `at` = the supervised PGD-AT classifier itself (in the AFF columns).",
        "",
        markdown_table(results, methods),
    ]
    text = "\n".join(lines)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in ((f"{stem}.json", json.dumps(results, indent=1)), (f"{stem}.md", text)):
        tmp = folder / f".{name}.{os.getpid()}.tmp"  # atomic: two lanes may write at once
        tmp.write_text(content + "\n")
        tmp.replace(folder / name)
    return text


# ------------------------------------------------------------------ lanes and main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (cifar10-train)")
    parser.add_argument("--out", default="runs/family", help="run folder (resumable)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None, help="(all)")
    parser.add_argument("--quick", action="store_true", help="smoke test on the bundled sample")
    parser.add_argument("--budget-units", type=float, default=None, help="units / image (384)")
    parser.add_argument("--lpaft-share", type=float, default=None, help="DynACL++'s LP-AFT share")
    parser.add_argument(
        "--robust-train-per-class", type=int, default=None, help="ALF / AFF training images"
    )
    parser.add_argument(
        "--robust-val-per-class", type=int, default=None, help="ALF / AFF selection images"
    )
    parser.add_argument("--no-autoattack", action="store_true", help="skip AutoAttack")
    parser.add_argument("--results", type=Path, default=None, help="results folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--parallel", action="store_true", help="two one-thread worker processes over the methods"
    )
    parser.add_argument("--lane", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def lanes(methods: tuple[str, ...]) -> list[list[str]]:
    """Two lanes, alternating over the methods (every training has the same budget)."""
    return [list(methods[0::2]), list(methods[1::2])]


COMMAND_ENV = "FAMILY_COMMAND"  # the driver's arguments, for the lanes' results files


def _end_with_driver() -> None:
    """In a lane: exit as soon as the driver that started it is gone (a session's end kills
    the driver; an orphaned lane would train on beside the next session's lanes). Checkpoints
    and stage records are written atomically, so an exit at any point is safe."""
    driver = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(5)
            if os.getppid() != driver:
                logger.warning("the driver (pid %d) is gone: this lane stops", driver)
                os._exit(1)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def _lock_run(out: Path) -> Any:
    """Hold ``out/.lock`` for this process's life: a second driver on the same run folder is
    refused (two would train the same checkpoints). No-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = (out / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"another family.py runs on {out} (it holds {out / '.lock'})") from None
    return handle


def run_lanes(argv: list[str], out: Path, methods: tuple[str, ...]) -> None:
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip and not arg.startswith("--"):
            continue
        skip = arg in ("--methods", "--threads")
        if not skip and arg != "--parallel":
            kept.append(arg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env[COMMAND_ENV] = json.dumps(argv)
    children = []
    for lane in lanes(methods):
        if not lane:
            continue
        name = "-".join(lane)
        command = [sys.executable, str(Path(__file__).resolve()), *kept, "--lane", "--threads", "1"]
        command += ["--methods", *lane]
        log = (logs / f"lane-{name}.log").open("a")
        logger.info("lane %s: log %s", name, log.name)
        children.append((name, subprocess.Popen(command, stdout=log, stderr=log, env=env), log))
    failed = []
    try:
        for name, child, log in children:
            if child.wait() != 0:
                failed.append(f"{name} (exit {child.returncode}, see {log.name})")
            log.close()
    finally:
        for _, child, _ in children:
            if child.poll() is None:
                child.terminate()
    if failed:
        raise SystemExit(f"lanes failed: {', '.join(failed)}; rerun the same command to resume")


def shown_methods(out: Path, methods: tuple[str, ...], *, record: bool) -> tuple[str, ...]:
    """Every method this run folder has run (``out/methods.json``) and ``methods``, in METHODS'
    order: the results show them all, the other lane's included, and a later run of a few
    methods does not drop the others. ``record``: write them back (the driver, not a lane)."""
    methods_file = out / "methods.json"
    before = json.loads(methods_file.read_text()) if methods_file.exists() else []
    shown = tuple(m for m in METHODS if m in before or m in methods)
    if record:
        _write_json(methods_file, list(shown))
    return shown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.lane:
        _end_with_driver()
    else:
        lock = _lock_run(out)  # noqa: F841 (held until the process ends)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if not args.lane:
        handlers.append(logging.FileHandler(out / "family.log"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", handlers=handlers
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else FamilyBudget()
    for option, name in (
        ("budget_units", "budget_units"),
        ("lpaft_share", "lpaft_share"),
        ("robust_train_per_class", "robust_train_per_class"),
        ("robust_val_per_class", "robust_val_per_class"),
    ):
        if getattr(args, option) is not None:
            budget = replace(budget, **{name: getattr(args, option)})
    methods = tuple(args.methods) if args.methods else METHODS
    modes = tuple(args.modes) if args.modes else MODES
    autoattack = not args.no_autoattack and not args.quick
    if autoattack:
        try:
            import torchattacks  # noqa: F401
        except ImportError:
            raise SystemExit(
                "AutoAttack needs torchattacks: pip install 'robust-contrastive[eval]' "
                "(or pass --no-autoattack)"
            ) from None
    argv_list = argv if argv is not None else sys.argv[1:]
    if args.lane and COMMAND_ENV in os.environ:  # the results name the driver's command
        argv_list = json.loads(os.environ[COMMAND_ENV])

    # AutoAttack runs on the model a protocol stage trains: decided once per run folder
    recorded = json.loads(json.dumps(asdict(budget))) | {"autoattack": autoattack}
    budget_file = out / "budget.json"
    if budget_file.exists() and json.loads(budget_file.read_text()) != recorded:
        raise SystemExit(
            f"{out} holds a run with other settings ({out / 'budget.json'}; AutoAttack or not "
            "included): pass the same options to resume, or another --out"
        )
    if not args.lane:
        _write_json(budget_file, recorded)
    shown = shown_methods(out, methods, record=not args.lane)

    plan_file = out / "plan.json"  # the unit counts, once (the lanes read them)
    if plan_file.exists():
        rows = json.loads(plan_file.read_text())
    else:
        rows = plan(budget, METHODS)
        _write_json(plan_file, rows)
    data = load_data(args.data, budget, args.quick)
    results_dir = args.results or (out if args.quick else RESULTS_DIR)
    stem = "family_cpu_quick" if args.quick else "family_cpu"
    stages = Stages(out)
    results: dict[str, Any] = {
        "command": " ".join(["experiments/family.py", *argv_list]),
        "budget": recorded,
        "plan": rows,
        "data": data.record,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": 1 if args.parallel or args.lane else torch.get_num_threads(),
            "parallel": args.parallel or args.lane,
        },
        "autoattack": autoattack,
        "training": {},
        "evaluations": {},
    }

    def gather() -> str:  # every finished stage, read back (the other lane's included)
        for method in shown:
            training = stages.read(f"train-{method}")
            if training is not None:
                results["training"][method] = training
            for mode in ("own",) if method == "at" else MODES:
                record = stages.read(f"eval-{method}-{mode}")
                if record is not None:
                    results["evaluations"].setdefault(method, {})[mode] = record
        return write_results(results, shown, results_dir, stem)

    if args.parallel and not args.lane:
        run_lanes(argv_list, out, methods)
    else:
        for method in methods:
            stages.run(f"train-{method}", train_method, out, method, budget, rows, data)
            gather()
            for mode in ("own",) if method == "at" else modes:
                if method == "at":
                    stages.run("eval-at-own", evaluate_at, out, budget, data, autoattack)
                else:
                    stages.run(
                        f"eval-{method}-{mode}",
                        evaluate_mode,
                        out,
                        method,
                        mode,
                        budget,
                        data,
                        autoattack,
                    )
                gather()
    if args.lane:
        return 0
    print(gather())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
