"""References the tests check the library against (imported as ``tests.reference``).

``original_rocl``: the original RoCL training step; ``encoder_work``: the encoder work per image
of a step. ``benchmarks/throughput.py`` uses both (its baseline and its work counts).
"""

from .encoder_work import count_encoder_work, counted_units, units_baseline, units_library
from .original_rocl import OriginalRoCL, library_step, library_views, original_nt_xent

__all__ = [
    "OriginalRoCL",
    "count_encoder_work",
    "counted_units",
    "library_step",
    "library_views",
    "original_nt_xent",
    "units_baseline",
    "units_library",
]
