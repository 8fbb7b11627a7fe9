"""The planner's presets: plans names and every size of the network each preset plans (DESIGN.md sections 4, 5).

The planner resolves a preset into the plans' ``arch_kwargs`` once, at planning (:func:`network_arch_kwargs`);
the network takes those values as explicit arguments and has no defaults of its own. So the plans (and the model
folder that copies them) say what a model is: editing a preset here changes models planned afterwards, never a
model that exists.

Network presets:

* ``cpu``: a tiny encoder that trains on two CPU cores in tests and in the CPU demo run (about 2 M parameters;
  a 64^3 patch, batch 2, forward in well under 0.3 s).
* ``base``: Primus-S-sized encoder (dim 396, 12 blocks, 6 heads; about 25 M parameters) for one GPU.
* ``large``: Primus-B-sized encoder (dim 792, 12 blocks, 12 heads; about 95 M parameters).

``stem_channels``: channels of the image stem fused into the decoder's last stage (network/heads.py).
``decoder_min_channels``: channels of the last shared decoder stage.

Constraint inherited from dynamic-network-architectures' ``Eva`` with 3D axial RoPE: the head dimension
``embed_dim / num_heads`` must be a multiple of 6 (RoPE dimension = head_dim / 1.5, itself a multiple of 4).

Plans written by version 0.1.0 named a preset in ``arch_kwargs`` and let the network fill the sizes when it was
built. :func:`complete_legacy_arch_kwargs` turns such an entry into the explicit one with the sizes that version
built (:data:`SIZES_BUILT_BY_0_1`, frozen), so those model folders keep loading with their weights.

Pure Python (no torch, no nnU-Net): the CLI's ``--help`` and the trainer read it cheaply.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..labels import ANATOMICAL_ORDER

#: Plans names (and, with ``_3d_fullres``, data identifiers) of the GPU and the CPU planner.
PLANS_NAME = "VertebraFormerPlans"
CPU_PLANS_NAME = "VertebraFormerCPUPlans"
CONFIGURATION = "3d_fullres"
#: The coarse whole-field configuration (planners/whole_field.py), named as nnU-Net names its low-resolution stage.
COARSE_CONFIGURATION = "3d_lowres"

#: Size presets of the network (the keys are the network's size arguments).
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
SIZE_KEYS = tuple(PRESETS["cpu"])

#: Heads and switches every preset plans: one identification channel per level of the anatomical order, every
#: component on (the ablation trainers switch them off), an initial lesion probability of 1 % (the bias of the
#: lesion logit: rare positives, a stable BCE from the first step), the disc head that numbering cuts fused
#: vertebrae with. The planner writes the disc head into the fine configuration's plans only when asked
#: (``VertebraFormerPlanner.disc_head``, ``plan-and-preprocess --disc-head``) and never into ``3d_lowres``.
HEADS: Dict[str, Any] = {
    "num_levels": len(ANATOMICAL_ORDER),
    "use_modulation": True,
    "use_identification": True,
    "use_lesion_head": True,
    "lesion_prior": 0.01,
    "use_boundary_head": True,
}
#: How many encoder blocks are followed by a FiLM of the modulation unit.
MODULATION_SITES = 4


def default_modulation_blocks(depth: int, num_sites: int = MODULATION_SITES) -> List[int]:
    """Encoder blocks followed by a FiLM: every k-th block, k = max(1, depth // num_sites), ending at the last one.

    depth 4 -> [0, 1, 2, 3]; depth 12 -> [2, 5, 8, 11]; depth 24 -> [5, 11, 17, 23].
    """
    k = max(1, depth // num_sites)
    return [i for i in range(depth) if (i + 1) % k == 0][-num_sites:] if depth >= num_sites else list(range(depth))


def network_arch_kwargs(preset: str, patch_size: Sequence[int], token_size: Sequence[int], num_domains: int,
                        **overrides) -> Dict[str, Any]:
    """Every argument of the network for ``preset`` (the plans' ``arch_kwargs``), JSON values only.

    ``overrides`` replace any of them (a test's tiny net: ``depth=1``); the modulation sites follow the final depth
    unless given."""
    if preset not in PRESETS:
        raise ValueError(f"unknown VertebraFormer preset {preset!r}; choose one of {sorted(PRESETS)}")
    kwargs: Dict[str, Any] = {"patch_size": [int(p) for p in patch_size], "token_size": [int(t) for t in token_size],
                              **PRESETS[preset], **HEADS, "num_domains": int(num_domains)}
    kwargs.update(overrides)
    if "modulation_blocks" not in overrides:
        kwargs["modulation_blocks"] = default_modulation_blocks(int(kwargs["depth"]))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


# ------------------------------------------------------------------------------------------------ plans of 0.1.0
#: What version 0.1.0 built for each preset it wrote into the plans, frozen: these sizes define the models trained
#: then, whatever :data:`PRESETS` says now. Order of :data:`SIZE_KEYS`.
SIZES_BUILT_BY_0_1 = {
    "cpu": (192, 4, 4, 8 / 3, 0.0, 0.1, 32, 32, 32),
    "base": (396, 12, 6, 8 / 3, 0.2, 0.1, 96, 64, 64),
    "large": (792, 12, 12, 8 / 3, 0.2, 0.1, 128, 64, 64),
}
#: 0.1.0's network defaults for what its plans did not write (four domains: MultiSpine's sources; 26 levels; FiLM
#: after 4 encoder blocks).
DEFAULTS_OF_0_1 = {"token_size": [8, 8, 8], "num_domains": 4, "num_levels": 26, "use_modulation": True,
                   "use_identification": True, "use_lesion_head": True, "lesion_prior": 0.01,
                   "use_boundary_head": False}
MODULATION_SITES_OF_0_1 = 4


def complete_legacy_arch_kwargs(arch_kwargs: Mapping[str, Any], plans_name: Optional[str] = None) -> Dict[str, Any]:
    """The explicit ``arch_kwargs`` of an entry written by version 0.1.0 (it names a ``preset``); any other entry
    is returned unchanged. Warns once per call that the plans are old, with the command that re-plans them."""
    if "preset" not in arch_kwargs:
        return dict(arch_kwargs)
    which = f"plans {plans_name!r}" if plans_name else "these plans"
    old = dict(arch_kwargs)
    preset = old.pop("preset")
    if preset not in SIZES_BUILT_BY_0_1:
        raise ValueError(f"{which} name network preset {preset!r}, which no version built (known: "
                         f"{sorted(SIZES_BUILT_BY_0_1)}); re-plan: vertebraformer plan-and-preprocess -d <dataset id>")
    given = {k: v for k, v in old.items() if v is not None}
    sizes = dict(zip(SIZE_KEYS, SIZES_BUILT_BY_0_1[preset]))
    out = {**DEFAULTS_OF_0_1, **sizes, **given}
    if "modulation_blocks" not in given:
        out["modulation_blocks"] = default_modulation_blocks(int(out["depth"]), MODULATION_SITES_OF_0_1)
    warnings.warn(f"{which} were written by VertebraFormer-nn 0.1 (network preset {preset!r}, sizes "
                  "filled when the network is built); building the network 0.1 built. Re-planning writes every size "
                  "into the plans: vertebraformer plan-and-preprocess -d <dataset id> (then retrain)", stacklevel=2)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
