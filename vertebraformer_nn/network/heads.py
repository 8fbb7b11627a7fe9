"""Decoders: one shared upsampling trunk (Primus' PatchDecode recipe), an image stem fused before the last stage,
per-task last stages.

Layout (token size ``(tx, ty, tz)``, ``S = log2(max token)`` upsampling steps):

    tokens (B, E, X/tx, Y/ty, Z/tz)
      -> trunk stage 1 .. S-1: ConvTranspose3d(k = s = stride) -> LayerNormNd -> GELU [-> FiLM]   (shared)
      -> skip fusion (shared): concat(trunk, image stem) -> 3x3x3 conv block
      -> task last stage:     ConvTranspose3d(k = s = last stride) -> logits at full resolution (one per task)

Image stem (:class:`ImageStem`): two cheap convolutions on the input image, at the last trunk stage's
resolution (half of full for 8-voxel tokens). Without it the decoder sees the image only through the
tokens (8 voxels = 28 mm at the CPU preset's 3.5 mm) and must rebuild every bone edge from a token
embedding: a 20-minute CPU run then plateaued at a binary spine Dice of about 0.6 with blocky
boundaries. The stem hands the last stage the edges directly (UNETR's skip idea at a fraction of its
cost). It works below full resolution on purpose: a full-resolution skip (conv, norm and 1x1 heads on a
full-resolution map) made the CPU forward pass about 8 times slower, while the strided first
convolution still sees every voxel and the transposed-convolution heads place the edges inside each
2x2x2 block.

The per-axis strides follow PatchDecode exactly (an axis whose token edge is smaller than the largest
one stops being upsampled early), so anisotropic tokens like (4, 8, 8) work. Channels shrink
geometrically from E to ``min_channels`` at the last trunk stage.

Why one shared trunk and only per-task last stages: the three tasks are all dense labellings of the same
bony anatomy (vertebra boundaries, their level, lesions inside them); the context each task needs
(several vertebrae for numbering) comes from the attention encoder, not from the decoder, which in
Primus is a deliberately light upsampler. A shared trunk keeps the decoder cost at one Primus decoder
whatever heads are on, and no full-resolution feature map is ever materialised (the heads produce the
logits directly from half-resolution features), which is what dominates memory at full resolution. Each
head still has its own parameters and its own loss.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import torch
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


def _conv_block(c_in: int, c_out: int, stride: Sequence[int] = (1, 1, 1)) -> nn.Sequential:
    """3x3x3 convolution -> instance norm -> leaky ReLU (nnU-Net's conv block)."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel_size=3, stride=tuple(stride), padding=1),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(inplace=True),
    )


class ImageStem(nn.Module):
    """Shallow features of the input image at the resolution of the last trunk stage (a strided 3x3x3
    convolution, which still sees every full-resolution voxel, then one more 3x3x3 block)."""

    def __init__(self, in_channels: int, channels: int, stride: Sequence[int]):
        super().__init__()
        self.blocks = nn.Sequential(_conv_block(in_channels, channels, stride), _conv_block(channels, channels))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class SkipFusion(nn.Module):
    """Fuses the trunk's last features with the image stem's features (concatenation, then a 3x3x3 block)."""

    def __init__(self, trunk_channels: int, stem_channels: int):
        super().__init__()
        self.block = _conv_block(trunk_channels + stem_channels, trunk_channels)
        self.out_channels = trunk_channels

    def forward(self, features: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([features, stem], dim=1))


def task_head(in_channels: int, out_channels: int, stride: Sequence[int]) -> nn.ConvTranspose3d:
    """A task's last stage: one transposed convolution to full resolution, producing logits."""
    return nn.ConvTranspose3d(in_channels, out_channels, kernel_size=tuple(stride), stride=tuple(stride))
