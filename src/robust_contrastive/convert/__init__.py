"""Convert checkpoints of the original implementations into this library's folders.

One module per layout, each mapping the family's key names onto
[`RoCLEncoder`][robust_contrastive.RoCLEncoder]'s, recording its quirks (normalisation, stem
padding) in the encoder's config and loading strictly:

- ``rocl`` (RoCL): [`convert_encoder`][robust_contrastive.convert.convert_encoder] and
  [`convert_projector`][robust_contrastive.convert.convert_projector];
- ``acl`` (ACL, DynACL, AIR): [`convert_acl`][robust_contrastive.convert.convert_acl];
- ``deacl`` (DeACL, a solo-learn Lightning checkpoint):
  [`convert_deacl`][robust_contrastive.convert.convert_deacl];
- ``advcl`` (AdvCL): [`convert_advcl`][robust_contrastive.convert.convert_advcl].

[`convert_checkpoint`][robust_contrastive.convert.convert_checkpoint] detects the layout;
[`save_converted`][robust_contrastive.convert.save_converted] writes the folder and its card.
Every file is read without running code
([`read_checkpoint`][robust_contrastive.convert.read_checkpoint]).
"""

from ._common import LAYOUTS, Conversion, detect_layout, read_checkpoint
from .acl import convert_acl
from .advcl import convert_advcl
from .auto import convert_checkpoint, convert_checkpoint_record, save_converted
from .deacl import convert_deacl
from .rocl import convert_encoder, convert_projector, load_original_state_dict

__all__ = [
    "LAYOUTS",
    "Conversion",
    "convert_acl",
    "convert_advcl",
    "convert_checkpoint",
    "convert_checkpoint_record",
    "convert_deacl",
    "convert_encoder",
    "convert_projector",
    "detect_layout",
    "load_original_state_dict",
    "read_checkpoint",
    "save_converted",
]
