"""``robust-contrastive quickstart``: SimCLR vs RoCL in miniature on the bundled sample."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import atomic_write_text
from ..layout import SPLIT_NAME
from ..training.config import TrainConfig
from ._common import (
    _LOG_FORMAT,
    _add_config_arguments,
    _add_data_arguments,
    _add_run_arguments,
    _command,
    _run_config,
    _subcommand,
    _write_split,
    logger,
)

# The quickstart: CPU-sized SimCLR and RoCL runs, a linear probe on each, and clean / PGD-20
# accuracy on 500 held-out images: the paper's headline claim in miniature, in minutes on 2 CPU
# cores. The paper's optimiser (LARS with trust 0.001, 10 warm-up epochs) is tuned for 1000
# epochs and barely moves the weights in 60 steps, so this short run uses plain SGD (lr 0.5,
# momentum 0.9, cosine, no warm-up) on a width-8 resnet18; every other setting is the paper's.
QUICKSTART: dict[str, Any] = {  # TrainConfig fields that differ from the paper's defaults
    "width": 8,
    "epochs": 4,
    "batch_size": 128,
    "lars": False,
    "lr": 0.5,
    "lr_warmup_multiplier": 1.0,
    "warmup_epochs": 0,
    "checkpoint_every": 1,
}
QUICKSTART_PER_CLASS = 200  # images per class used for self-supervised training
QUICKSTART_HELD_OUT = 50  # images per class held out for evaluation (never trained or probed on)
QUICKSTART_PROBE_EPOCHS = 50  # linear probe epochs (on cached features: seconds)
QUICKSTART_LOG = "quickstart.log"  # in OUT: every INFO message of the run (per-epoch metrics...)
# The encoders trained, each into OUT/<name in lower case>: (name, adversarial).
QUICKSTART_METHODS: tuple[tuple[str, bool], ...] = (("SimCLR", False), ("RoCL", True))


class _ConsoleAboveBars(logging.Handler):
    """Writes log records to stderr above the progress bars (tqdm.write), not through them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's convention: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def _details_to_file(path: Path, *, verbose: bool, append: bool) -> Iterator[None]:
    """Within the block, the library's messages go to the log file ``path``; the console
    (stderr) gets only its warnings and errors (everything with ``--verbose``)."""
    library = logging.getLogger("robust_contrastive")
    to_file = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    to_file.setFormatter(logging.Formatter(_LOG_FORMAT))
    console = _ConsoleAboveBars()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level, saved_propagate = library.level, library.propagate
    library.setLevel(logging.DEBUG if verbose else logging.INFO)
    library.propagate = False  # not also through the root logger's console handler
    library.addHandler(to_file)
    library.addHandler(console)
    try:
        yield
    finally:
        library.removeHandler(console)
        library.removeHandler(to_file)
        to_file.close()
        library.setLevel(saved_level)
        library.propagate = saved_propagate


@_command(
    "train small SimCLR and RoCL encoders on the bundled sample, probe them and compare "
    "their clean and PGD accuracy (CPU, minutes)",
    f"""The paper's headline comparison in miniature, with no download and no GPU: holds out
{QUICKSTART_HELD_OUT} images per class of the bundled 5,000-image CIFAR-10 sample, trains both
encoders without labels on {QUICKSTART_PER_CLASS} images per class of the rest (a resnet18 of
width {QUICKSTART["width"]}, {QUICKSTART["epochs"]} epochs, plain SGD), fits a linear probe on
each ({QUICKSTART_PROBE_EPOCHS} epochs) and prints their clean and l-inf PGD-20 (8/255)
accuracy on the held-out images.

The console shows progress bars, warnings and the table; the details (per-epoch losses,
probe epochs) go to OUT/{QUICKSTART_LOG}. Every training option below (but --adversarial)
applies to both encoders.""",
    """  robust-contrastive quickstart
  robust-contrastive quickstart --epochs 1 --max-per-class 100   # a shorter run
  robust-contrastive quickstart --resume      # continue an interrupted run""",
)
def _cmd_quickstart(args: argparse.Namespace) -> int:
    out = Path(args.out)
    config = _run_config(args, *(out / name.lower() for name, _ in QUICKSTART_METHODS))
    out.mkdir(parents=True, exist_ok=True)
    log = out / QUICKSTART_LOG
    print(f"robust-contrastive quickstart: details (losses, probe epochs) go to {log}")
    with _details_to_file(log, verbose=args.verbose, append=args.resume):
        logger.info("quickstart %s, config %s", __version__, json.dumps(config.to_dict()))
        _run_quickstart(args, config, out, log)
    return 0


def _run_quickstart(args: argparse.Namespace, config: TrainConfig, out: Path, log: Path) -> None:
    """Train, probe and evaluate SimCLR and RoCL; write OUT's records; print the table."""
    from ..data import first_per_class, load_dataset, train_val_split
    from ..evaluation.checks import class_counts, majority_rate
    from ..evaluation.probe import RobustLinearProbe
    from ..evaluation.suite import evaluate_robustness
    from ..training import RoCLTrainer

    start = time.perf_counter()
    dataset = load_dataset(args.data, root=args.data_root, download=args.download)
    train_idx, held_idx = train_val_split(
        dataset.labels, val_per_class=args.held_out_per_class, seed=config.seed
    )
    train_set, held_out = dataset.subset(train_idx), dataset.subset(held_idx)
    pretrain_set = train_set.subset(
        first_per_class(train_set.labels, args.max_per_class or len(train_set))
    )
    chance = majority_rate(class_counts(held_out.labels, len(dataset.classes)))
    rows = []
    for name, adversarial in QUICKSTART_METHODS:
        run_dir = out / name.lower()
        logger.info(
            "quickstart: training %s on %d images into %s", name, len(pretrain_set), run_dir
        )
        result = RoCLTrainer(replace(config, adversarial=adversarial), run_dir).fit(
            pretrain_set, resume=args.resume
        )
        probe = RobustLinearProbe(
            result.encoder,
            len(dataset.classes),
            augment=False,
            epochs=args.probe_epochs,
            batch_size=256,
        )
        probe.fit(train_set, seed=config.seed, progress=config.progress)
        probe.save_pretrained(run_dir / "probe")
        report = evaluate_robustness(
            probe,
            held_out,
            ["linf-8/255"],
            seed=config.seed,
            sanity_checks=False,
            progress=config.progress,
        )
        report.to_json(run_dir / "report.json")
        rows.append(
            {
                "method": name,
                "clean": report.clean_accuracy,
                "pgd20": report.accuracy("linf-8/255"),
                "n_images": report.n_images,
                "train_images_per_s": result.history[-1]["images_per_s"],
            }
        )
        logger.info("quickstart: %s", json.dumps(rows[-1]))
    seconds = time.perf_counter() - start
    # Written once the models it describes exist (a refused or interrupted run leaves an earlier
    # run's records untouched).
    _write_split(out, args.data, config.seed, train_idx, held_idx)
    record = {"rows": rows, "chance": chance, "seconds": seconds}
    atomic_write_text(out / "quickstart.json", json.dumps(record, indent=2))
    data = "bundled CIFAR-10" if args.data == "sample" else args.data
    table = "\n".join(
        f"| {row['method']} | {100 * row['clean']:.1f} | {100 * row['pgd20']:.1f} | "
        f"{row['train_images_per_s']:.1f} |"
        for row in rows
    )
    # Lines ending in a backslash go on, unbroken, on the next one.
    print(f"""
Quickstart: resnet18 (width {config.width}) trained without labels on \
{len(pretrain_set)} {data} images for {config.epochs} epochs; linear probe on \
{len(train_set)} images; evaluated on {len(held_out)} held-out images.

| method | clean acc. (%) | PGD-20 l-inf 8/255 acc. (%) | train images/s |
| --- | --- | --- | --- |
{table}

Chance: {100 * chance:.1f} % ({len(dataset.classes)} classes; always answering the \
most frequent held-out class). PGD-20: 20 steps of 2/255.
train images/s: training images per second in the last epoch, each image counted once (RoCL's \
time includes its 7-step attack on every batch).

Done in {seconds:.0f} s. Models in {out}/simclr and {out}/rocl (encoder, projector/, \
probe/), reports in */report.json, per-epoch metrics in */metrics.jsonl, the log in {log}.
Next:
  robust-contrastive evaluate --model {out}/rocl/probe --data {args.data} --split \
{out}/{SPLIT_NAME} --out report.json
  from robust_contrastive import RoCLEncoder
  encoder = RoCLEncoder.from_pretrained('{out}/rocl')""")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quick = _subcommand(sub, _cmd_quickstart)
    _add_data_arguments(quick, required=False, max_per_class=QUICKSTART_PER_CLASS)
    quick.add_argument("--out", default="quickstart-run", help="output folder")
    _add_run_arguments(quick, "resume from OUT/*/checkpoints")
    quick.add_argument(
        "--held-out-per-class",
        type=int,
        default=QUICKSTART_HELD_OUT,
        help=f"images per class held out for evaluation (default: {QUICKSTART_HELD_OUT})",
    )
    quick.add_argument(
        "--probe-epochs",
        type=int,
        default=QUICKSTART_PROBE_EPOCHS,
        help=f"linear probe epochs (default: {QUICKSTART_PROBE_EPOCHS})",
    )
    _add_config_arguments(quick, QUICKSTART)
