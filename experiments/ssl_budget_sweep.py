"""Which training knobs raise clean linear accuracy at CPU scale? A SimCLR sweep (issue 7).

RoCL's clean accuracy under linear evaluation tracks its SimCLR counterpart's at this scale (the
reproduction run: 36.6 vs 37.2 on the selection split), and SimCLR steps cost a fifth of RoCL's,
so the knobs of the reproduction's budget (batch size, learning rate, epochs) are compared on
SimCLR. Each variant trains on the reproduction's 8,000 encoder images and is scored by a linear
probe (L-BFGS logistic regression on frozen clean features of the 47,000-image pool) on the
1,000-image **selection** split: the held-out evaluation split is never touched.

Run (after ``reproduce_cifar10.py`` wrote ``runs/cifar10-cpu/split.json``)::

    python experiments/ssl_budget_sweep.py --data ../shared/data/cifar10-train \\
        --variants b128-lr0.5 b256-lr1.0 b256-lr0.5-e24

Updates ``experiments/results/ssl_budget_sweep.json`` (``--results``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch

from robust_contrastive import ImageDataset, RoCLEncoder, RoCLTrainer, TrainConfig, load_dataset

from common import clean_probe, logistic_regression

RESULTS = Path(__file__).resolve().parent / "results" / "ssl_budget_sweep.json"
_VARIANT = re.compile(r"^b(\d+)-lr([0-9.]+)(?:-e(\d+))?$")


def linear_accuracy(
    encoder: RoCLEncoder, train: ImageDataset, val: ImageDataset
) -> tuple[float, float]:
    """Train and validation accuracy of logistic regression (l2 1e-4) on clean features."""
    probe = clean_probe(encoder)
    x, xv = probe.encode(train.images, batch_size=1000), probe.encode(val.images, batch_size=1000)
    weight, bias = logistic_regression(x, train.labels, 1e-4)
    with torch.no_grad():
        train_acc = ((x @ weight.T + bias).argmax(1) == train.labels).float().mean().item()
        val_acc = ((xv @ weight.T + bias).argmax(1) == val.labels).float().mean().item()
    return train_acc, val_acc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="runs/cifar10-cpu/split.json")
    parser.add_argument("--out", default="runs/ssl-sweep")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON results (updated)")
    parser.add_argument("--variants", nargs="+", default=["b128-lr0.5"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--reference",
        default="runs/cifar10-cpu/simclr",
        help="the reproduction's SimCLR encoder (b256-lr0.5, 12 epochs): probed, not retrained",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    dataset = load_dataset(args.data)
    split = json.loads(Path(args.split).read_text())
    encoder_train = dataset.subset(split["encoder_train"])
    pool, select = dataset.subset(split["train"]), dataset.subset(split["select"])
    path = args.results
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if args.reference and Path(args.reference).is_dir() and "reference" not in results:
        encoder = RoCLEncoder.from_pretrained(args.reference)
        history = [json.loads(line) for line in (Path(args.reference) / "metrics.jsonl").open()]
        train_acc, val_acc = linear_accuracy(encoder, pool, select)
        results["reference"] = {
            "batch_size": 256,
            "lr": 0.5,
            "epochs": len(history),
            "steps": len(history) * (len(encoder_train) // 256),
            "final_loss": history[-1]["loss"],
            "train_seconds": sum(h["seconds"] for h in history),
            "probe_train_accuracy": train_acc,
            "select_accuracy": val_acc,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
    for variant in args.variants:
        match = _VARIANT.match(variant)
        if match is None:
            raise SystemExit(f"variant {variant!r} is not bBATCH-lrLR[-eEPOCHS], e.g. b128-lr0.5")
        batch, lr, epochs = int(match[1]), float(match[2]), int(match[3] or args.epochs)
        config = TrainConfig(
            width=16,
            epochs=epochs,
            batch_size=batch,
            lars=False,
            lr=lr,
            lr_warmup_multiplier=1.0,
            warmup_epochs=0,
            adversarial=False,
            channels_last=True,
            checkpoint_every=1,
            seed=0,
        )
        start = time.perf_counter()
        result = RoCLTrainer(config, Path(args.out) / variant).fit(encoder_train, resume=True)
        seconds = time.perf_counter() - start
        train_acc, val_acc = linear_accuracy(result.encoder, pool, select)
        results[variant] = {
            "batch_size": batch,
            "lr": lr,
            "epochs": epochs,
            "steps": epochs * (len(encoder_train) // batch),
            "final_loss": result.history[-1]["loss"],
            "train_seconds": seconds,
            "probe_train_accuracy": train_acc,
            "select_accuracy": val_acc,
        }
        path.write_text(json.dumps(results, indent=1) + "\n")
        logging.info("%s: %s", variant, results[variant])
    print("| variant | steps | final loss | probe train acc. (%) | selection acc. (%) | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['steps']} | {r['final_loss']:.3f} | "
            f"{100 * r['probe_train_accuracy']:.1f} | {100 * r['select_accuracy']:.1f} | "
            f"{r['train_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
