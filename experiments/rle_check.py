"""Does r-LE from the LE head raise robustness? A check on one encoder, off the evaluation split.

On an encoder of a ``reproduce_cifar10.py`` run (its final folder, or a training checkpoint
part-way through), this fits

* ``LE``: the clean probe of the reproduction (cached clean features of the pool, 50 epochs,
  epoch on clean accuracy of the selection split), and
* ``r-LE``: that head trained further on class-wise PGD-10 examples (eps 8/255, step 0.007)
  of augmented images, at a small learning rate, epoch on PGD-10 accuracy of the selection
  split (``fit(select="robust")``),

and scores both, clean and under PGD-20 l-inf 8/255 with step 2/255, on *check* images: pool
images that neither the encoder, nor r-LE, nor any selection saw (the first ``--check-per-class``
of each class after the encoder's training images). The run's evaluation split is never
touched, so this check can steer the reproduction's r-LE settings without selecting on it.

Run (about 15 minutes on one core)::

    python experiments/rle_check.py --data ../shared/data/cifar10-train --run runs/cifar10-cpu \\
        --encoder runs/cifar10-cpu/rocl/checkpoints/last.pt
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from robust_contrastive import RobustLinearProbe, RoCLEncoder, evaluate_robustness
from robust_contrastive.data import first_per_class
from robust_contrastive.training.checkpoint import load_checkpoint

from common import (
    HEADLINE,
    check_images,
    check_parser,
    clean_probe,
    load_run,
    robust_probe,
    set_up,
)

logger = logging.getLogger("rle_check")


def load_encoder(path: Path) -> tuple[RoCLEncoder, str]:
    """An encoder folder (save_pretrained) or a trainer checkpoint (``checkpoints/last.pt``)."""
    if path.is_dir():
        return RoCLEncoder.from_pretrained(path), f"{path} (final weights)"
    state = load_checkpoint(path)
    config = state["config"]
    encoder = RoCLEncoder(arch=config["arch"], width=config["width"])
    encoder.load_state_dict(state["encoder"], strict=True)
    return encoder.eval(), f"{path} (after epoch {state['epoch']} of {config['epochs']})"


def main(argv: list[str] | None = None) -> int:
    parser = check_parser(__doc__, "encoder folder or last.pt")
    parser.add_argument("--rle-per-class", type=int, default=200, help="r-LE training images")
    parser.add_argument("--epochs", type=int, default=3, help="r-LE epochs")
    parser.add_argument(
        "--lr", type=float, nargs="+", default=[0.01], help="r-LE learning rates (one run each)"
    )
    parser.add_argument("--check-per-class", type=int, default=100, help="check images")
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="r-LE on PGD examples of un-augmented images (default: SimCLR-augmented, eq. 7)",
    )
    parser.add_argument(
        "--pool-per-class", type=int, default=None, help="LE images per class (default: all)"
    )
    args = parser.parse_args(argv)
    set_up(args)

    dataset, split = load_run(args.data, args.run)
    pool = torch.tensor(split["train"])
    if args.pool_per_class:
        pool = pool[first_per_class(dataset.labels[pool], args.pool_per_class)]
    check = check_images(dataset, split, args.check_per_class)
    rle_train = torch.tensor(split["rle_train"])
    rle_train = rle_train[first_per_class(dataset.labels[rle_train], args.rle_per_class)]
    select = dataset.subset(torch.tensor(split["select"]))
    check_set = dataset.subset(check)
    encoder, source = load_encoder(args.encoder)
    logger.info("encoder %s; %d check images", source, len(check_set))

    results: dict[str, object] = {"encoder": source, "n_check": len(check_set)}
    start = time.perf_counter()
    le = clean_probe(encoder)
    le.fit(dataset.subset(pool), val=select, seed=0)
    probes: list[tuple[str, RobustLinearProbe]] = [("LE", le)]
    for lr in args.lr:
        rle = robust_probe(encoder, args.epochs, lr, augment=not args.no_augment)
        rle.head.load_state_dict(le.head.state_dict())
        fitted = rle.fit(
            dataset.subset(rle_train), val=select, seed=0, warm_start=True, select="robust"
        )
        name = f"r-LE from the LE head, lr {lr}"
        results[f"{name}: history"] = fitted.history
        results[f"{name}: best_epoch"] = fitted.best_epoch
        probes.append((f"{name} (kept epoch {fitted.best_epoch})", rle))
    rows = []
    for name, probe in probes:
        report = evaluate_robustness(probe, check_set, [HEADLINE], seed=0, sanity_checks=False)
        rows.append((name, report.clean_accuracy, report.results[0].accuracy))
        results[name] = report.to_dict()
    results["seconds"] = time.perf_counter() - start

    print(f"encoder: {source}; {len(check_set)} check images (never trained or selected on)")
    print(
        f"r-LE: {len(rle_train)} {'un-augmented' if args.no_augment else 'augmented'} images, "
        f"{args.epochs} epochs, epoch on robust selection"
    )
    print("| probe | clean (%) | PGD-20 l-inf 8/255 (%) |\n| --- | --- | --- |")
    for name, clean, robust in rows:
        print(f"| {name} | {100 * clean:.1f} | {100 * robust:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
