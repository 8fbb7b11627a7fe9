"""The VertebraFormer network: Transformer encoder (Primus building blocks), segmentation / identification / lesion
heads, dynamic modulation unit. Pure torch; the nnU-Net contract is in vertebraformer.py, the sizes come from the
plans (the planner's presets: ``vertebraformer_nn.planners.presets``)."""
from .vertebraformer import (ARCH_KWARGS, HEAD_KEYS, NETWORK_CLASS_NAME, OUTPUT_MODES, VertebraFormer, all_heads,
                             architecture_dict, output_mode)

__all__ = ["ARCH_KWARGS", "HEAD_KEYS", "NETWORK_CLASS_NAME", "OUTPUT_MODES", "VertebraFormer", "all_heads",
           "architecture_dict", "output_mode"]
