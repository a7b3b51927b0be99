"""``robust-contrastive convert``: checkpoints of the original codes into this library's format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..layout import PROJECTOR_DIR
from ._common import _command, _subcommand


@_command(
    "convert a checkpoint of an original implementation to this library's format",
    """Reads a checkpoint of the original RoCL, ACL / DynACL / AIR, DeACL (a solo-learn
Lightning checkpoint) or AdvCL code without running code from it, checks it, and writes a
save_pretrained folder (model.safetensors, config.json and a model card stating the source file,
its layout, the branch kept and the quirks): RoCLEncoder.from_pretrained(OUT). The layout is
detected from the keys unless --layout names it; --branch picks the BatchNorm branch (ACL: adv,
clean; AdvCL: pgd, normal, pgd_ce) or the network (DeACL: student, teacher), by default the one
the authors evaluate.""",
    """  robust-contrastive convert rocl_encoder.pt --projector rocl_projector.pt \\
      --out converted/rocl
  robust-contrastive convert ACL_DS.pt --out converted/acl-ds
  robust-contrastive convert deacl-ep=99.ckpt --layout deacl --out converted/deacl
  robust-contrastive convert advcl_epoch_1000.ckpt --branch pgd --out converted/advcl""",
)
def _cmd_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_checkpoint_record, convert_projector, save_converted

    conversion = convert_checkpoint_record(args.checkpoint, args.layout, args.branch)
    encoder = conversion.encoder
    out = Path(args.out)
    if args.projector and conversion.layout != "rocl":
        raise ValueError(
            f"--projector reads an original RoCL projector; {args.checkpoint} is a "
            f"{conversion.layout} checkpoint, whose heads are not converted."
        )
    # Both checkpoints are converted and checked before anything is written into OUT.
    projector = convert_projector(args.projector) if args.projector else None
    if projector is not None and projector.config.in_dim != encoder.feature_dim:
        raise ValueError(
            f"the projector takes {projector.config.in_dim} features but the encoder gives "
            f"{encoder.feature_dim}: the two checkpoints belong to different models."
        )
    save_converted(conversion, out, projector=projector)
    branch = f", branch {conversion.branch}" if conversion.branch else ""
    print(
        f"encoder ({encoder.config.arch}, width {encoder.config.width}; layout "
        f"{conversion.layout}{branch}): {out}"
    )
    if projector is not None:
        print(f"projector: {out / PROJECTOR_DIR}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    convert = _subcommand(sub, _cmd_convert)
    convert.add_argument("checkpoint", help="the original checkpoint (torch.save'd)")
    convert.add_argument(
        "--layout",
        choices=("auto", "rocl", "acl", "deacl", "advcl"),
        default="auto",
        help="the checkpoint's layout (default: detected from its keys)",
    )
    convert.add_argument(
        "--branch",
        help="BatchNorm branch or network to keep (acl: adv, clean; advcl: pgd, normal, pgd_ce; "
        "deacl: student, teacher); default: the one the authors evaluate",
    )
    convert.add_argument("--projector", help="the original RoCL projector checkpoint")
    convert.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
