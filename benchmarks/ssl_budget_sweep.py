"""Which training knobs raise clean linear accuracy at CPU scale? A SimCLR sweep (issue 7).

RoCL's clean accuracy under linear evaluation tracks its SimCLR counterpart's at this scale (the
reproduction run: 36.6 vs 37.2 on the selection split), and SimCLR steps cost a fifth of RoCL's,
so the knobs of the reproduction's budget (batch size, learning rate, epochs) are compared on
SimCLR. Each variant trains on the reproduction's 8,000 encoder images and is scored by a linear
probe (L-BFGS logistic regression on frozen clean features of the 47,000-image pool) on the
1,000-image **selection** split: the held-out evaluation split is never touched.

Run (after ``reproduce_cifar10.py`` wrote ``runs/cifar10-cpu/split.json``)::

    python benchmarks/ssl_budget_sweep.py --data ../shared/data/cifar10-train \\
        --variants b128-lr0.5 b256-lr1.0 b256-lr0.5-e24

Writes ``benchmarks/results/ssl_budget_sweep.json`` and prints a table.
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
import torch.nn.functional as F

from robust_contrastive import RoCLEncoder, RoCLTrainer, TrainConfig, load_dataset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ssl_budget_sweep.json"
_VARIANT = re.compile(r"^b(\d+)-lr([0-9.]+)(?:-e(\d+))?$")


def features(encoder: RoCLEncoder, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 -> (N, F) clean features, in batches of 1,000."""
    with torch.no_grad():
        return torch.cat(
            [encoder(images[i : i + 1000].float() / 255) for i in range(0, len(images), 1000)]
        )


def linear_accuracy(
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    """Multinomial logistic regression (L-BFGS, l2 1e-4) on standardised features."""
    (x, y), (xv, yv) = train, val
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xv = (x - mean) / std, (xv - mean) / std
    weight = torch.zeros(x.shape[1], 10, requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=500, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 1e-4 * weight.square().sum()
        loss.backward()  # L-BFGS needs .grad on its parameters
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_acc = ((x @ weight + bias).argmax(1) == y).float().mean().item()
        val_acc = ((xv @ weight + bias).argmax(1) == yv).float().mean().item()
    return train_acc, val_acc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="runs/cifar10-cpu/split.json")
    parser.add_argument("--out", default="runs/ssl-sweep")
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
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.reference and Path(args.reference).is_dir() and "reference" not in results:
        encoder = RoCLEncoder.from_pretrained(args.reference)
        history = [json.loads(line) for line in (Path(args.reference) / "metrics.jsonl").open()]
        train_acc, val_acc = linear_accuracy(
            (features(encoder, pool.images), pool.labels),
            (features(encoder, select.images), select.labels),
        )
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
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
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
        encoder = result.encoder.eval()
        train_acc, val_acc = linear_accuracy(
            (features(encoder, pool.images), pool.labels),
            (features(encoder, select.images), select.labels),
        )
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
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
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
