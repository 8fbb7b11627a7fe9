"""The VertebraFormer network: Transformer encoder (Primus building blocks), segmentation /
identification / lesion heads, dynamic modulation unit. The nnU-Net contract is in vertebraformer.py."""
from .identification import instance_level_log_probs
from .presets import PRESETS
from .vertebraformer import (
    HEAD_KEYS,
    NETWORK_CLASS_NAME,
    NUM_LEVELS,
    OUTPUT_MODES,
    VertebraFormer,
    all_heads,
    architecture_dict,
    output_mode,
)

__all__ = [
    "HEAD_KEYS",
    "NETWORK_CLASS_NAME",
    "NUM_LEVELS",
    "OUTPUT_MODES",
    "PRESETS",
    "VertebraFormer",
    "all_heads",
    "architecture_dict",
    "instance_level_log_probs",
    "output_mode",
]
