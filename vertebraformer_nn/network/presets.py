"""Size presets of the VertebraFormer network.

A preset fills every size hyper-parameter that the caller does not give explicitly in ``arch_kwargs``;
an explicit value always wins (``VertebraFormer(..., preset="cpu", depth=2)`` is the cpu preset with two
blocks). The resolved values are stored on the network as ``net.arch_config``.

* ``cpu``: a tiny encoder that trains on two CPU cores in tests and in the CPU demo run (about 2 M
  parameters; a 64^3 patch, batch 2, forward in well under 0.3 s).
* ``base``: Primus-S-sized encoder (dim 396, 12 blocks, 6 heads; about 25 M parameters) for one GPU.
* ``large``: Primus-B-sized encoder (dim 792, 12 blocks, 12 heads; about 95 M parameters).

``stem_channels``: channels of the image stem fused into the decoder's last stage (heads.py).

Constraint inherited from dynamic-network-architectures' ``Eva`` with 3D axial RoPE: the head
dimension ``embed_dim / num_heads`` must be a multiple of 6 (RoPE dimension = head_dim / 1.5, itself a
multiple of 4).
"""
from __future__ import annotations

from typing import Any, Dict

PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {
        "embed_dim": 192,
        "depth": 4,
        "num_heads": 4,
        "mlp_ratio": 8 / 3,
        "drop_path_rate": 0.0,
        "init_values": 0.1,
        "decoder_min_channels": 32,
        "code_dim": 32,
        "stem_channels": 32,
    },
    "base": {
        "embed_dim": 396,
        "depth": 12,
        "num_heads": 6,
        "mlp_ratio": 8 / 3,
        "drop_path_rate": 0.2,
        "init_values": 0.1,
        "decoder_min_channels": 96,
        "code_dim": 64,
        "stem_channels": 64,
    },
    "large": {
        "embed_dim": 792,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 8 / 3,
        "drop_path_rate": 0.2,
        "init_values": 0.1,
        "decoder_min_channels": 128,
        "code_dim": 64,
        "stem_channels": 64,
    },
}

SIZE_KEYS = tuple(PRESETS["cpu"].keys())


def resolve_sizes(preset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """The preset's sizes with every non-None entry of ``overrides`` (keys from SIZE_KEYS) applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown VertebraFormer preset {preset!r}; choose one of {sorted(PRESETS)}")
    sizes = dict(PRESETS[preset])
    for key, value in overrides.items():
        if key not in sizes:
            raise KeyError(f"{key!r} is not a size parameter ({SIZE_KEYS})")
        if value is not None:
            sizes[key] = value
    return sizes
