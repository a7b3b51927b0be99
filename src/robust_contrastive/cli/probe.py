"""``robust-contrastive probe``: a linear probe (or r-LE) on a frozen encoder."""

from __future__ import annotations

import argparse
import json

from ._common import _add_data_arguments, _command, _load_data, _number, _subcommand


@_command(
    "train a linear probe (or r-LE) on a frozen encoder",
    """Linear evaluation: a linear classifier on the frozen encoder's features, with the
labels (the original's 150 epochs, SGD, batch 1024). --adversarial trains it on PGD
examples instead (robust linear evaluation, r-LE, eq. 7). OUT receives the probe
(encoder + linear layer): RobustLinearProbe.from_pretrained(OUT), or
`robust-contrastive evaluate --model OUT`.""",
    """  robust-contrastive probe --encoder runs/rocl --data sample \\
      --split runs/rocl/split.json --out runs/rocl/probe --no-augment --epochs 50
  robust-contrastive probe --encoder runs/rocl --data sample \\
      --split runs/rocl/split.json --out runs/rocl/r-le --adversarial""",
)
def _cmd_probe(args: argparse.Namespace) -> int:
    from ..data import train_val_split
    from ..evaluation.probe import RobustLinearProbe
    from ..models import RoCLEncoder

    encoder = RoCLEncoder.from_pretrained(args.encoder)
    train_set = _load_data(args, "train")
    probe = RobustLinearProbe(
        encoder,
        len(train_set.classes),
        adversarial=args.adversarial,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=not args.no_augment,
    )
    val = None
    if args.val_per_class:
        fit_idx, val_idx = train_val_split(
            train_set.labels, val_per_class=args.val_per_class, seed=args.seed
        )
        train_set, val = train_set.subset(fit_idx), train_set.subset(val_idx)
    result = probe.fit(
        train_set, val=val, seed=args.seed, progress=not args.no_progress, select=args.select
    )
    probe.save_pretrained(args.out)
    kind = "robust linear evaluation (r-LE)" if args.adversarial else "linear evaluation"
    print(f"{kind} on {len(train_set)} images; last epoch: {json.dumps(result.history[-1])}")
    print(f"probe: {args.out}  (RobustLinearProbe.from_pretrained('{args.out}'))")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    probe = _subcommand(sub, _cmd_probe)
    probe.add_argument("--encoder", required=True, help="encoder folder (save_pretrained)")
    _add_data_arguments(probe, required=True)
    probe.add_argument(
        "--split",
        help="split.json of the training run: probe on its 'train' "
        "indices, never on its held-out 'val' images",
    )
    probe.add_argument("--out", required=True, help="output folder of the probe")
    probe.add_argument(
        "--adversarial",
        action="store_true",
        help="robust linear evaluation (r-LE, eq. 7): train on PGD examples",
    )
    probe.add_argument("--epochs", type=int, default=150, help="epochs (default: 150)")
    probe.add_argument("--batch-size", type=int, default=1024, help="batch size (default: 1024)")
    probe.add_argument("--lr", type=_number, default=0.1, help="learning rate (default: 0.1)")
    probe.add_argument(
        "--no-augment",
        action="store_true",
        help="no augmentation (clean probes then train on cached features)",
    )
    probe.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    probe.add_argument("--no-progress", action="store_true", help="no progress bar")
    probe.add_argument(
        "--val-per-class",
        type=int,
        default=0,
        help="hold out this many training images per class to select the best "
        "epoch on (default: 0, keep the last epoch)",
    )
    probe.add_argument(
        "--select",
        choices=("clean", "robust"),
        default="clean",
        help="with --val-per-class: pick the epoch on clean accuracy (default) or on PGD "
        "accuracy under the r-LE attack (robust; for --adversarial)",
    )
