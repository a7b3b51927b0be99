"""``robust-contrastive convert``: checkpoints of the original RoCL code into this format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..layout import PROJECTOR_DIR
from ._common import _command, _subcommand


@_command(
    "convert a checkpoint of the original RoCL code to this library's format",
    """Reads the original code's torch.save'd encoder (and projector) checkpoints, checks
them, and writes a save_pretrained folder: RoCLEncoder.from_pretrained(OUT).""",
    """  robust-contrastive convert rocl_encoder.pt --projector rocl_projector.pt \\
      --out converted/rocl""",
)
def _cmd_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_encoder, convert_projector

    encoder = convert_encoder(args.checkpoint)
    out = Path(args.out)
    # Both checkpoints are converted and checked before anything is written into OUT.
    projector = convert_projector(args.projector) if args.projector else None
    if projector is not None and projector.config.in_dim != encoder.feature_dim:
        raise ValueError(
            f"the projector takes {projector.config.in_dim} features but the encoder gives "
            f"{encoder.feature_dim}: the two checkpoints belong to different models."
        )
    encoder.save_pretrained(out)
    print(f"encoder ({encoder.config.arch}, width {encoder.config.width}): {out}")
    if projector is not None:
        projector.save_pretrained(out / PROJECTOR_DIR)
        print(f"projector: {out / 'projector'}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    convert = _subcommand(sub, _cmd_convert)
    convert.add_argument("checkpoint", help="the original encoder checkpoint (torch.save'd)")
    convert.add_argument("--projector", help="the original projector checkpoint")
    convert.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
