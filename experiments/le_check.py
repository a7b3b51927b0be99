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

    python experiments/le_check.py --data ../shared/data/cifar10-train --run runs/cifar10-cpu \\
        --encoder runs/cifar10-cpu/rocl --threads 1 --out experiments/results/le_check.json
"""

from __future__ import annotations

import json
import time

import torch

from robust_contrastive import RobustLinearProbe, RoCLEncoder, evaluate_robustness
from robust_contrastive.data import first_per_class

from common import (
    HEADLINE,
    check_images,
    check_parser,
    clean_probe,
    load_run,
    logistic_regression,
    set_up,
)


def main(argv: list[str] | None = None) -> int:
    parser = check_parser(__doc__, "encoder folder")
    parser.add_argument("--check-per-class", type=int, default=500, help="clean check images")
    parser.add_argument("--attack-per-class", type=int, default=50, help="PGD-20 check images")
    parser.add_argument(
        "--l2", type=float, nargs="+", default=[0.0, 1e-4], help="logistic-regression penalties"
    )
    args = parser.parse_args(argv)
    set_up(args)
    start = time.perf_counter()

    dataset, split = load_run(args.data, args.run)
    pool = torch.tensor(split["train"])
    trained = set(split["encoder_train"])
    check = check_images(dataset, split, args.check_per_class)
    attacked = check[first_per_class(dataset.labels[check], args.attack_per_class)]
    held = set(check.tolist())
    fit_idx = torch.tensor([i for i in pool.tolist() if i not in held])
    encoder = RoCLEncoder.from_pretrained(args.encoder)

    le = clean_probe(encoder)
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
        weight, bias = logistic_regression(features, fit_labels, l2)
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
