"""The VertebraFormer network: Transformer encoder (Primus building blocks), segmentation /
identification / lesion heads, dynamic modulation unit. The nnU-Net contract is in vertebraformer.py.

Names that need torch load on first use, so numpy-only users (``instance_level_log_probs``, the numbering
decoder) do not pay for importing torch."""
import importlib

from .identification import instance_level_log_probs

_LAZY = {
    "PRESETS": "presets",
    **{name: "vertebraformer" for name in ("HEAD_KEYS", "NETWORK_CLASS_NAME", "NUM_LEVELS", "OUTPUT_MODES",
                                          "VertebraFormer", "all_heads", "architecture_dict", "output_mode")},
}

__all__ = sorted([*_LAZY, "instance_level_log_probs"])


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
