"""Decoders: one shared upsampling trunk (Primus' PatchDecode recipe) and per-task last stages.

Layout (token size ``(tx, ty, tz)``, ``S = log2(max token)`` upsampling steps):

    tokens (B, E, X/tx, Y/ty, Z/tz)
      -> trunk stage 1 .. S-1: ConvTranspose3d(k = s = stride) -> LayerNormNd -> GELU [-> FiLM]   (shared)
      -> task last stage:     ConvTranspose3d(k = s = last stride) -> logits at full resolution (one per task)

The per-axis strides follow PatchDecode exactly (an axis whose token edge is smaller than the largest
one stops being upsampled early), so anisotropic tokens like (4, 8, 8) work. Channels shrink
geometrically from E to ``min_channels`` at the last trunk stage.

Why one shared trunk and only per-task last stages: the three tasks are all dense labellings of the same
bony anatomy (vertebra boundaries, their level, lesions inside them); the context each task needs
(several vertebrae for numbering) comes from the attention encoder, not from the decoder, which in
Primus is a deliberately light upsampler. A shared trunk keeps the decoder cost at one Primus decoder
whatever heads are on, and no task-specific full-resolution feature map is ever materialised (the heads
produce the logits directly from half-resolution features), which is what dominates memory at
full resolution. Each head still has its own parameters and its own loss.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from dynamic_network_architectures.building_blocks.patch_encode_decode import LayerNormNd
from torch import nn


def _round_to_8(value: float) -> int:
    return int(max(8, np.round((value + 1e-6) / 8) * 8))


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def decoder_strides(token_size: Sequence[int]) -> List[Tuple[int, ...]]:
    """Per-stage upsampling strides, lowest resolution first (PatchDecode's rule)."""
    num_stages = int(round(np.log2(max(token_size))))
    return [
        tuple(2 if (p / 2**n) % 2 == 0 else 1 for p in token_size) for n in range(num_stages)
    ][::-1]


def trunk_channels(embed_dim: int, num_trunk_stages: int, min_channels: int) -> List[int]:
    """Output channels of each trunk stage: geometric from embed_dim to min_channels (rounded to 8)."""
    if num_trunk_stages == 0:
        return []
    ratio = (embed_dim / min_channels) ** (1.0 / num_trunk_stages)
    channels = [_round_to_8(embed_dim / ratio ** (i + 1)) for i in range(num_trunk_stages)]
    channels[-1] = min_channels
    return channels


class SharedDecoder(nn.Module):
    """The shared upsampling trunk (all stages but the last of a PatchDecode).

    ``deep_supervision`` is a plain attribute and does nothing: nnU-Net's stock
    ``set_deep_supervision_enabled`` writes ``network.decoder.deep_supervision``, and this keeps that
    call harmless. The network never produces deep-supervision outputs.
    """

    def __init__(self, embed_dim: int, strides: Sequence[Sequence[int]], channels: Sequence[int]):
        super().__init__()
        self.deep_supervision = False
        self.out_channels = channels[-1] if channels else embed_dim
        stages = []
        c_in = embed_dim
        for stride, c_out in zip(strides, channels):
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose3d(c_in, c_out, kernel_size=tuple(stride), stride=tuple(stride)),
                    LayerNormNd(c_out),
                    nn.GELU(),
                )
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)


def task_head(in_channels: int, out_channels: int, stride: Sequence[int]) -> nn.ConvTranspose3d:
    """A task's last stage: one transposed convolution to full resolution, producing logits."""
    return nn.ConvTranspose3d(in_channels, out_channels, kernel_size=tuple(stride), stride=tuple(stride))
