"""One entry point for every layout: detect it from the keys, convert, and write a folder whose
model card states the source file, its layout, the branch kept and the quirks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..layout import PROJECTOR_DIR, PROVENANCE_NAME
from ..models import ProjectionHead, RoCLEncoder
from ._common import LAYOUTS, Conversion, detect_layout, read_checkpoint, state_dict_of
from .acl import convert_acl_record
from .advcl import convert_advcl_record
from .deacl import convert_deacl_record
from .rocl import convert_rocl

FAMILIES: dict[str, str] = {
    "rocl": "RoCL (Kim et al. 2020), the original implementation",
    "acl": "ACL (Jiang et al. 2020) and the codes that keep its network: DynACL (Luo et al. "
    "2023), AIR (Xu et al. 2023)",
    "deacl": "DeACL (Zhang et al. 2022), a solo-learn PyTorch Lightning checkpoint",
    "advcl": "AdvCL (Fan et al. 2021)",
}
_SIDE_FILES_VERSION = 1


def convert_checkpoint_record(
    path: str | os.PathLike[str], layout: str = "auto", branch: str | None = None
) -> Conversion:
    """[`convert_checkpoint`][robust_contrastive.convert.convert_checkpoint] with the
    conversion's record ([`Conversion`][robust_contrastive.convert.Conversion])."""
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"unknown layout {layout!r}; choose auto or one of {list(LAYOUTS)}.")
    if layout == "auto":
        found = detect_layout(state_dict_of(read_checkpoint(path), str(path)))
        if found is None:
            raise ValueError(
                f"{path}: its keys match none of the layouts this library converts "
                f"({', '.join(LAYOUTS)}); name one with layout=... if you know it."
            )
        layout = found
    if layout == "rocl":
        if branch is not None:
            raise ValueError(
                "an original RoCL checkpoint holds a single network: a branch does not apply."
            )
        return convert_rocl(path)
    if layout == "acl":
        return convert_acl_record(path, branch or "adv")
    if layout == "advcl":
        return convert_advcl_record(path, branch or "pgd")
    return convert_deacl_record(path, branch or "student")


def convert_checkpoint(
    path: str | os.PathLike[str], layout: str = "auto", branch: str | None = None
) -> RoCLEncoder:
    """Any supported checkpoint as a [`RoCLEncoder`][robust_contrastive.RoCLEncoder] (eval mode,
    loaded strictly), its layout detected from the keys unless named.

    Detection: ``backbone.*`` keys are a DeACL (Lightning) checkpoint, ``bn_list`` BatchNorms
    with a ``normalize`` buffer an ACL / DynACL / AIR one (DynACL's two-network ``model.pt``,
    ``encoder_q.*`` / ``encoder_k.*``, too: ``encoder_k`` is kept), ``bn_list`` BatchNorms
    without it an AdvCL one, the library's own key names an original RoCL one.

    Args:
        path: the checkpoint file.
        layout: ``"auto"``, ``"rocl"``, ``"acl"``, ``"deacl"`` or ``"advcl"``.
        branch: the BatchNorm branch (ACL: ``"adv"`` / ``"clean"``; AdvCL: ``"pgd"`` /
            ``"normal"`` / ``"pgd_ce"``) or network (DeACL: ``"student"`` / ``"teacher"``) to
            keep; None keeps the one the authors evaluate.

    Raises:
        ValueError: an unknown or undetectable layout, a pickle that runs code, or a branch that
            the layout does not have.
    """
    return convert_checkpoint_record(path, layout, branch).encoder


def save_converted(
    conversion: Conversion,
    directory: str | os.PathLike[str],
    *,
    projector: ProjectionHead | None = None,
) -> Path:
    """Write a converted encoder as a ``save_pretrained`` folder (safetensors + config.json) with
    a model card that states the source file, its layout, the branch kept, the quirks and what
    was left out (recorded in ``provenance.json``); an original RoCL projector goes to
    ``projector/``. Returns the folder."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if projector is not None:
        projector.save_pretrained(out / PROJECTOR_DIR)
    notes = [
        f"Converted by robust-contrastive from `{conversion.source}`: layout "
        f"`{conversion.layout}`, {FAMILIES[conversion.layout]}.",
    ]
    if conversion.branch is not None:
        notes.append(f"Branch kept: {conversion.branch}.")
    notes += [f"Quirk: {quirk}" for quirk in conversion.quirks]
    if conversion.skipped:
        notes.append(f"Left out (not part of the encoder kept): {'; '.join(conversion.skipped)}.")
    provenance: dict[str, Any] = {
        "format_version": _SIDE_FILES_VERSION,
        "dataset": (
            "Not recorded in the checkpoint: these weights were trained by the original code "
            "(see its paper for the data); this library converted them and did not train them."
        ),
        "notes": notes,
        "limitations": [
            "Converted weights: figures published for the original checkpoint were measured by "
            "the original code and protocol; evaluate this folder before relying on them.",
        ],
    }
    atomic_write_text(out / PROVENANCE_NAME, json.dumps(provenance, indent=2) + "\n")
    conversion.encoder.save_pretrained(out)
    return out
