"""The VertebraFormer network: Transformer encoder (Primus building blocks), segmentation /
identification / lesion heads, dynamic modulation unit. The nnU-Net contract is in vertebraformer.py.

Names load on first use, so that importing the package does not import torch."""
import importlib

_LAZY = {
    "PRESETS": "presets",
    **{name: "vertebraformer" for name in ("HEAD_KEYS", "NETWORK_CLASS_NAME", "NUM_LEVELS", "OUTPUT_MODES",
                                          "VertebraFormer", "all_heads", "architecture_dict", "output_mode")},
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
