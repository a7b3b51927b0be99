"""Is the clean linear probe the bottleneck? A check on one encoder, off the evaluation split.

The reproduction's LE (SGD, momentum 0.9, weight decay 5e-4, lr 0.1 with the original step
schedule, 50 epochs on cached clean features, epoch on the selection split) ends with training
accuracy close to validation accuracy: the head underfits, or the features cannot do better. This
check fits, on the clean features of the pool *minus* the check images,

* ``LE``: the reproduction's probe (``RobustLinearProbe(augment=False, epochs=50,
  batch_size=256)``), and
* ``logistic regression, l2 = C``: multinomial logistic regression on standardised features
  fitted to convergence with L-BFGS (CLIP's and SimCLR's transfer protocol), the
  standardisation folded into the same ``nn.Linear`` head,

and scores each head, clean and under PGD-20 l-inf 8/255 with step 2/255, on *check* images:
pool images that neither the encoder nor any probe trained on (``--check-per-class`` per class,
drawn after the encoder's training images; PGD on the first ``--attack-per-class`` of them).
It also reports the LE head's accuracy on the encoder's own training images against unseen
ones (does the encoder overfit its 8,000 images?). The run's evaluation split is never touched.

Run after the reproduction (its run folder holds ``split.json``; its RoCL encoder is also bundled
as ``src/robust_contrastive/pretrained/rocl-resnet18-w16-cifar10-cpu``); about 7 minutes::

    python benchmarks/le_check.py --data ../shared/data/cifar10-train --run runs/cifar10-cpu \\
        --encoder runs/cifar10-cpu/rocl --threads 1 --out benchmarks/results/le_check.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robust_contrastive import RobustLinearProbe, RoCLEncoder, evaluate_robustness, load_dataset
from robust_contrastive.data import first_per_class

logger = logging.getLogger("le_check")
HEADLINE = "linf-8/255"  # PGD-20, step 2/255


def logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, l2: float, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS on standardised features.

    Args:
        features: (N, D) float features.
        labels: (N,) int64 classes.
        l2: weight of ``sum(W ** 2)`` (in standardised units) added to the mean cross-entropy.
        num_classes: number of classes.

    Returns:
        ``(weight (C, D), bias (C,))`` acting on the *raw* features: the standardisation
        ``(x - mean) / std`` is folded in.
    """
    mean, std = features.mean(dim=0), features.std(dim=0) + 1e-6
    x = (features - mean) / std  # (N, D) standardised
    weight = torch.zeros(num_classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=500,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, labels) + l2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    w = weight.detach() / std  # (C, D): W (x - mean) / std = (W / std) x - (W / std) mean
    return w, bias.detach() - w @ mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (cifar10-train)")
    parser.add_argument("--run", required=True, type=Path, help="the run folder (split.json)")
    parser.add_argument("--encoder", required=True, type=Path, help="encoder folder")
    parser.add_argument("--check-per-class", type=int, default=500, help="clean check images")
    parser.add_argument("--attack-per-class", type=int, default=50, help="PGD-20 check images")
    parser.add_argument(
        "--l2", type=float, nargs="+", default=[0.0, 1e-4], help="logistic-regression penalties"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    split = json.loads((args.run / "split.json").read_text())
    dataset = load_dataset(args.data)
    pool = torch.tensor(split["train"])
    trained = set(split["encoder_train"])
    unseen = torch.tensor([i for i in split["train"] if i not in trained])
    check = unseen[first_per_class(dataset.labels[unseen], args.check_per_class)]
    attacked = check[first_per_class(dataset.labels[check], args.attack_per_class)]
    held = set(check.tolist())
    fit_idx = torch.tensor([i for i in pool.tolist() if i not in held])
    encoder = RoCLEncoder.from_pretrained(args.encoder)

    le = RobustLinearProbe(encoder, 10, augment=False, epochs=50, batch_size=256)
    le.fit(dataset.subset(fit_idx), val=dataset.subset(torch.tensor(split["select"])), seed=0)
    features = le.encode(dataset.images[fit_idx], progress=True)  # (N, feature_dim)
    check_features = le.encode(dataset.images[check])
    fit_labels, check_labels = dataset.labels[fit_idx], dataset.labels[check]

    def accuracy(probe: RobustLinearProbe, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((probe.head(x).argmax(dim=1) == y).float().mean())

    on_train = torch.tensor([i in trained for i in fit_idx.tolist()])
    own = accuracy(le, features[on_train], fit_labels[on_train])
    other = accuracy(le, features[~on_train], fit_labels[~on_train])
    table: dict[str, dict[str, float]] = {}
    results: dict[str, object] = {
        "encoder": str(args.encoder),
        "n_fit": len(fit_idx),
        "n_check": len(check),
        "n_attacked": len(attacked),
        "le_accuracy_encoder_train_images": own,
        "le_accuracy_other_fit_images": other,
        "probes": table,
    }
    probes: list[tuple[str, RobustLinearProbe]] = [("LE (the reproduction's)", le)]
    for l2 in args.l2:
        probe = RobustLinearProbe(encoder, 10, augment=False)
        weight, bias = logistic_regression(features, fit_labels, l2, 10)
        with torch.no_grad():
            probe.head.weight.copy_(weight)
            probe.head.bias.copy_(bias)
        probes.append((f"logistic regression (L-BFGS), l2 {l2:g}", probe.eval()))
    for name, probe in probes:
        report = evaluate_robustness(
            probe, dataset.subset(attacked), [HEADLINE], seed=0, sanity_checks=False
        )
        row = {
            "fit_accuracy": accuracy(probe, features, fit_labels),
            "check_accuracy": accuracy(probe, check_features, check_labels),
            "attacked_clean_accuracy": report.clean_accuracy,
            "attacked_pgd20_accuracy": report.results[0].accuracy,
            "weight_norm": float(probe.head.weight.detach().norm()),
        }
        table[name] = row
    results["seconds"] = time.perf_counter() - start

    print(
        f"encoder {args.encoder}: LE accuracy on its own training images "
        f"{100 * own:.1f} %, on other pool images {100 * other:.1f} %"
    )
    print(
        f"| probe | fit images (%) | {len(check)} check (%) | {len(attacked)} attacked: clean (%)"
        " | PGD-20 (%) | weight norm |\n| --- | --- | --- | --- | --- | --- |"
    )
    for name, row in table.items():
        print(
            f"| {name} | {100 * row['fit_accuracy']:.1f} | {100 * row['check_accuracy']:.1f} | "
            f"{100 * row['attacked_clean_accuracy']:.1f} | "
            f"{100 * row['attacked_pgd20_accuracy']:.1f} | {row['weight_norm']:.1f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
