"""The ``robust-contrastive`` command line: one module per command (``train``, ``quickstart``,
``probe``, ``evaluate``, ``card`` / ``push`` / ``list-pretrained``, ``convert``, ``protocol``,
``lpaft``).

Only light modules are imported here: ``robust-contrastive --help`` must not wait for torch. Each
command imports what it uses (torch, the models, the data...) when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from . import convert, evaluate, hub, lpaft, probe, protocol, quickstart, train
from ._common import _LOG_FORMAT, _paragraphs

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-contrastive",
        description=_paragraphs(
            "Adversarially robust image encoders without labels (RoCL, NeurIPS 2020): train "
            "them, probe them, attack them, publish them. `robust-contrastive COMMAND --help` "
            "describes each command."
        ),
        epilog="""examples:
  robust-contrastive quickstart          # SimCLR vs RoCL in miniature, on CPU, in minutes
  robust-contrastive train --data sample --out runs/rocl --width 16 --epochs 10
  robust-contrastive list-pretrained""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robust-contrastive {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages and show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, quickstart, probe, evaluate, hub, convert, protocol, lpaft):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robust-contrastive`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=_LOG_FORMAT,
        stream=sys.stderr,
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        # Console log lines are written above the progress bars instead of through them.
        with logging_redirect_tqdm():
            code: int = args.func(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", "OUT")
        parser.exit(
            130,
            f"interrupted; continue the run with the same command plus --resume "
            f"(checkpoints in {out}/checkpoints)\n",
        )
    # FloatingPointError: NonFiniteLossError (a NaN loss), without importing the trainer here.
    except (ValueError, TypeError, OSError, FloatingPointError) as err:
        if args.verbose:
            raise
        parser.exit(2, f"robust-contrastive {args.command}: error: {err}\n")
    return code
