"""VertebraFormer: a Primus-style 3D Transformer with segmentation, identification and lesion heads and a
dynamic modulation unit (DESIGN.md section 5).

Contract with nnU-Net (read this before planning or training with the class)
============================================================================

Construction. ``VertebraFormer(input_channels, num_classes, deep_supervision=False, **arch_kwargs)``:
the signature ``nnunetv2.utilities.get_network_from_plans`` calls, with the plans' ``architecture``
entry ``{"network_class_name": "vertebraformer_nn.network.VertebraFormer", "arch_kwargs": {...},
"_kw_requires_import": []}`` (:func:`architecture_dict` checks and writes it). ``deep_supervision`` is accepted
and ignored (nnU-Net always injects it): the network has no deep supervision, so the trainer must set
``enable_deep_supervision = False``. ``arch_kwargs`` are JSON values, every one of them required (the planner
resolves them from its presets, ``planners/presets.py``; the network has no defaults, so a plans file says
everything about the network it builds, and a missing size is an error naming it):

=========================  ===============================================================================
key                        meaning
=========================  ===============================================================================
patch_size                 the exact input patch (3 ints, nnU-Net's axis order); the model only accepts this
                           shape (absolute pos-embed and RoPE are built for it), each axis a multiple of the
                           token size
token_size                 voxels per token per axis, powers of two (anisotropic allowed)
embed_dim, depth,          encoder width, blocks, attention heads (embed_dim / num_heads a multiple of 6: 3D
num_heads                  RoPE), MLP ratio, stochastic-depth rate, LayerScale init (None: no LayerScale)
mlp_ratio, drop_path_rate,
init_values
decoder_min_channels       channels of the last shared decoder stage
stem_channels              channels of the image stem fused before the heads (heads.py)
code_dim                   size of the domain code (modulation.py)
modulation_blocks          encoder block indices followed by a FiLM
num_levels                 identification channels (labels.ANATOMICAL_ORDER: 26)
num_domains                domain classifier outputs (the plans' domains); 0: no domain classifier output
use_modulation             ablation switches: they choose what is computed and trained,
use_identification         never which parameters exist, so a state_dict saved with any
use_lesion_head            combination loads strictly into any other
lesion_prior               initial lesion probability (bias of the lesion logit)
use_boundary_head          the disc head (below); the one key with a default (False), and the one switch that
                           decides whether parameters exist: plans and checkpoints written before it build and
                           load the network without it, strictly
=========================  ===============================================================================

A switched-off component's parameters are frozen (``requires_grad=False``) and never used, so DDP
(``find_unused_parameters=False``) and AdamW see only what is trained.

Outputs. ``forward(x)`` with ``x`` of shape (B, input_channels, *patch_size) returns, according to the
output mode (``heads=`` argument, else the attribute ``net.output_mode``, default ``"seg"``):

* ``"seg"`` (default; what nnU-Net's predictor, its validation and ``nnUNetTrainer`` see): the
  segmentation logits only, a tensor (B, num_classes, *patch). The identification and lesion heads and
  the domain classifier are not evaluated in this mode.
* ``"all"`` (our training step): a dict with always the same six keys
    - ``"seg"``: (B, num_classes, *patch) logits, softmax over channels; channel c = training label c
      (0 background, 1..26 = ANATOMICAL_ORDER).
    - ``"id"``: (B, num_levels, *patch) logits, softmax over channels; channel k = ANATOMICAL_ORDER[k]
      = training label k + 1. Meant to be trained on vertebra voxels only (target = seg label - 1, the
      background ignored); the predictor reduces it per instance
      (``vertebraformer_nn.inference.level_evidence.instance_level_log_probs``).
      ``None`` when ``use_identification`` is False.
    - ``"lesion"``: (B, 1, *patch) lesion logits (sigmoid; binary lesion vs not). ``None`` when
      ``use_lesion_head`` is False. One channel, not two: lesion types are not labelled consistently
      across the sources, so the task is binary; a 2-channel softmax is the same model with a redundant
      channel, and one channel halves the full-resolution memory and the predictor's buffer. Its bias
      starts at logit(lesion_prior) (rare positives; stable BCE / focal loss from step one). Lesion
      instances are the connected components of ``sigmoid > 0.5``.
    - ``"boundary"``: (B, 1, *patch) logits (sigmoid) of the disc head: voxels between two different
      vertebrae (the disc space and where two vertebrae touch; target built from the labels,
      ``trainers.losses.between_vertebrae``). Numbering cuts an instance there that holds two vertebrae
      (``inference.disc_split``). ``None`` without ``use_boundary_head``.
    - ``"domain_logits"``: (B, num_domains) logits of the auxiliary domain classifier (cross-entropy
      with the case's training domain = the domain-code loss). ``None`` when ``use_modulation`` is False or
      ``num_domains`` is 0 (a dataset without domains: the code is still computed and trained through the tasks).
    - ``"code"``: (B, code_dim) the image-derived domain code z. ``None`` when ``use_modulation`` is False.
* ``"dense"`` (our sliding-window predictor): one tensor, the enabled dense heads concatenated on the
  channel axis in the order seg, id, lesion, boundary; ``net.dense_layout()`` gives each head's channel slice
  (e.g. ``{"seg": (0, 27), "id": (27, 53), "lesion": (53, 54)}``). nnU-Net's sliding window,
  Gaussian weighting, mirroring and fold averaging then apply to every dense head unchanged; a label
  manager reporting ``net.num_dense_channels`` channels makes the predictor allocate the right buffer.

Set the mode with ``with all_heads(net): ...`` / ``with output_mode(net, "dense"): ...`` (these unwrap
DDP's ``.module`` and torch.compile's ``._orig_mod``), or pass ``net(x, heads="all")``. The mode is a
plain attribute: not saved in the state_dict, default ``"seg"`` on every fresh instance.

Weights: a plain ``state_dict`` (no pickled code); keys are independent of the switches, except the disc head's.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import timm
import torch
from dynamic_network_architectures.architectures.abstract_arch import AbstractDynamicNetworkArchitectures
from dynamic_network_architectures.building_blocks.eva import Eva
from dynamic_network_architectures.building_blocks.patch_encode_decode import PatchEmbed
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from .heads import (ImageStem, SharedDecoder, SkipFusion, decoder_strides, is_power_of_two, task_head,
                    trunk_channels)
from .modulation import DynamicModulationUnit

NETWORK_CLASS_NAME = "vertebraformer_nn.network.VertebraFormer"
OUTPUT_MODES = ("seg", "all", "dense")
HEAD_KEYS = ("seg", "id", "lesion", "boundary", "domain_logits", "code")
#: initial probability of the disc head (the bias of its logit): a few percent of a patch lies between vertebrae
BOUNDARY_PRIOR = 0.03
#: the first timm whose RotaryEmbeddingCat no longer builds the 3D rotary embedding of dynamic-network-architectures
#: 0.4.4's Eva (MIC-DKFZ/dynamic-network-architectures#20). That package requires timm<1.0.23, so pip never installs
#: it beside it; an environment that bypassed the resolver (a prebuilt GPU image with its own timm, ``--no-deps``)
#: would otherwise fail with a bare tensor-size error inside timm
FIRST_TIMM_WITHOUT_3D_ROPE = "1.0.23"


class VertebraFormer(AbstractDynamicNetworkArchitectures):
    """See the module docstring for the full contract."""

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: Optional[bool] = False,
        *,
        patch_size: Sequence[int],
        token_size: Sequence[int],
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
        init_values: Optional[float],
        decoder_min_channels: int,
        code_dim: int,
        stem_channels: int,
        modulation_blocks: Sequence[int],
        num_levels: int,
        num_domains: int,
        use_modulation: bool,
        use_identification: bool,
        use_lesion_head: bool,
        lesion_prior: float,
        use_boundary_head: bool = False,
    ):
        super().__init__()
        del deep_supervision  # always injected by get_network_from_plans; this network has none
        patch_size = tuple(int(p) for p in patch_size)
        token_size = tuple(int(t) for t in token_size)
        _validate_geometry(patch_size, token_size)
        e, h, depth = int(embed_dim), int(num_heads), int(depth)
        if e % h != 0 or (e // h) % 6 != 0:
            raise ValueError(
                f"embed_dim / num_heads must be an integer multiple of 6 (3D rotary embedding: head_dim / 1.5 "
                f"divisible by 4); got embed_dim={e}, num_heads={h}"
            )
        if not 0.0 < lesion_prior < 1.0:
            raise ValueError(f"lesion_prior must be in (0, 1); got {lesion_prior}")
        if int(num_domains) < 0:
            raise ValueError(f"num_domains must be 0 or more; got {num_domains}")
        modulation_blocks = sorted({int(b) for b in modulation_blocks})
        if any(b < 0 or b >= depth for b in modulation_blocks):
            raise ValueError(f"modulation_blocks {modulation_blocks} outside 0..{depth - 1}")

        self.input_channels = int(input_channels)
        self.num_classes = int(num_classes)
        self.num_levels = int(num_levels)
        self.num_domains = int(num_domains)
        self.patch_size = patch_size
        self.token_size = token_size
        self.token_grid = tuple(p // t for p, t in zip(patch_size, token_size))
        self.embed_dim = e
        self.use_modulation = bool(use_modulation)
        self.use_identification = bool(use_identification)
        self.use_lesion_head = bool(use_lesion_head)
        self.use_boundary_head = bool(use_boundary_head)
        self.output_mode = "seg"
        # everything needed to rebuild this exact network (the arch_kwargs), JSON-serialisable
        self.arch_config: Dict[str, Any] = dict(
            patch_size=list(patch_size), token_size=list(token_size), embed_dim=e, depth=depth, num_heads=h,
            mlp_ratio=float(mlp_ratio), drop_path_rate=float(drop_path_rate),
            init_values=None if init_values is None else float(init_values),
            decoder_min_channels=int(decoder_min_channels), code_dim=int(code_dim), stem_channels=int(stem_channels),
            modulation_blocks=list(modulation_blocks), num_levels=self.num_levels, num_domains=self.num_domains,
            use_modulation=self.use_modulation, use_identification=self.use_identification,
            use_lesion_head=self.use_lesion_head, lesion_prior=float(lesion_prior),
            use_boundary_head=self.use_boundary_head,
        )

        # names as in dynamic_network_architectures' Primus, so encoder weights transfer (nnssl / Primus)
        self.key_to_encoder = "eva"
        self.key_to_stem = "down_projection"
        self.keys_to_in_proj = ("down_projection.proj",)
        self.key_to_lpe = "eva.pos_embed"

        self.down_projection = PatchEmbed(token_size, input_channels, e)
        check_timm(timm.__version__)
        self.eva = Eva(
            embed_dim=e,
            depth=depth,
            num_heads=h,
            ref_feat_shape=self.token_grid,
            num_reg_tokens=0,
            use_rot_pos_emb=True,
            use_abs_pos_emb=True,
            mlp_ratio=float(mlp_ratio),
            drop_path_rate=float(drop_path_rate),
            init_values=init_values,
            scale_attn_inner=True,
        )

        strides = decoder_strides(token_size)
        channels = trunk_channels(e, len(strides) - 1, int(decoder_min_channels))
        self.decoder = SharedDecoder(e, strides[:-1], channels)
        self.stem = ImageStem(self.input_channels, int(stem_channels), strides[-1])
        self.fusion = SkipFusion(self.decoder.out_channels, self.stem.out_channels)
        c_last = self.fusion.out_channels
        self.seg_head = task_head(c_last, self.num_classes, strides[-1])
        self.id_head = task_head(c_last, self.num_levels, strides[-1])
        self.lesion_head = task_head(c_last, 1, strides[-1])
        self.boundary_head = task_head(c_last, 1, strides[-1]) if self.use_boundary_head else None

        self.modulation = DynamicModulationUnit(
            embed_dim=e,
            code_dim=int(code_dim),
            num_domains=self.num_domains,
            num_encoder_sites=len(modulation_blocks),
            decoder_channels=channels,
        )
        # FiLM of the encoder tokens: forward hooks on Eva's blocks, so that Eva runs its own forward (positional
        # embeddings, RoPE, blocks, norm) unchanged; the hooks read the code of the forward pass in progress.
        self._code: Optional[torch.Tensor] = None
        for site, block in enumerate(modulation_blocks):
            self.eva.blocks[block].register_forward_hook(functools.partial(self._film_tokens, site))

        init = InitWeights_He(1e-2)
        for module in (self.down_projection, self.decoder, self.stem, self.fusion, self.seg_head, self.id_head,
                       self.lesion_head):
            module.apply(init)
        nn.init.constant_(self.lesion_head.bias, -math.log((1.0 - lesion_prior) / lesion_prior))
        if self.boundary_head is not None:
            self.boundary_head.apply(init)
            nn.init.constant_(self.boundary_head.bias, -math.log((1.0 - BOUNDARY_PRIOR) / BOUNDARY_PRIOR))

        for enabled, module in (
            (self.use_modulation, self.modulation),
            (self.use_identification, self.id_head),
            (self.use_lesion_head, self.lesion_head),
        ):
            if not enabled:
                module.requires_grad_(False)

    # ------------------------------------------------------------------ outputs
    def dense_layout(self) -> Dict[str, Tuple[int, int]]:
        """Channel slice [start, stop) of each enabled dense head in the "dense" output."""
        layout, start = {}, 0
        for name, n, on in (
            ("seg", self.num_classes, True),
            ("id", self.num_levels, self.use_identification),
            ("lesion", 1, self.use_lesion_head),
            ("boundary", 1, self.use_boundary_head),
        ):
            if on:
                layout[name] = (start, start + n)
                start += n
        return layout

    @property
    def num_dense_channels(self) -> int:
        return max(stop for _, stop in self.dense_layout().values())

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.input_channels or tuple(x.shape[2:]) != self.patch_size:
            raise ValueError(
                f"VertebraFormer was built for input (B, {self.input_channels}, {', '.join(map(str, self.patch_size))}) "
                f"and accepts only that patch (its positional embeddings are built for it; nnU-Net's sliding "
                f"window always feeds exactly patch_size); got {tuple(x.shape)}"
            )

    def _film_tokens(self, site: int, block: nn.Module, args, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        """Forward hook of a modulated encoder block: FiLM of its output tokens with the current code."""
        if self._code is None:
            return None  # modulation off: the block's output unchanged
        return self.modulation.modulate_tokens(site, tokens, self._code)

    @contextlib.contextmanager
    def _encoder_code(self, code: Optional[torch.Tensor]) -> Iterator[None]:
        if code is not None and self.eva.grad_checkpointing and self.training:
            # Eva's checkpointed blocks would run again in the backward pass, after the code is gone
            raise NotImplementedError("gradient checkpointing of the encoder is not supported with modulation on")
        self._code = code
        try:
            yield
        finally:
            self._code = None

    def forward(self, x: torch.Tensor, heads: Optional[str] = None) -> Union[torch.Tensor, Dict[str, Any]]:
        mode = self.output_mode if heads is None else heads
        if mode not in OUTPUT_MODES:
            raise ValueError(f"output mode must be one of {OUTPUT_MODES}, not {mode!r}")
        self._check_input(x)

        stem = self.stem(x)
        tokens = self.down_projection(x)  # (B, E, gx, gy, gz)
        b, e, gx, gy, gz = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, E), N in (x, y, z) order, as in Primus
        code = self.modulation.compute_code(tokens) if self.use_modulation else None
        with self._encoder_code(code):
            tokens, _ = self.eva(tokens)  # Eva's own forward: positional embeddings, blocks (FiLM hooks), norm

        features = tokens.transpose(1, 2).reshape(b, e, gx, gy, gz)
        for site, stage in enumerate(self.decoder.stages):
            features = stage(features)
            if code is not None:
                features = self.modulation.modulate_features(site, features, code)
        features = self.fusion(features, stem)

        seg = self.seg_head(features)
        if mode == "seg":
            return seg
        ident = self.id_head(features) if self.use_identification else None
        lesion = self.lesion_head(features) if self.use_lesion_head else None
        boundary = self.boundary_head(features) if self.boundary_head is not None else None
        if mode == "dense":
            return torch.cat([t for t in (seg, ident, lesion, boundary) if t is not None], dim=1)
        return {
            "seg": seg,
            "id": ident,
            "lesion": lesion,
            "boundary": boundary,
            "domain_logits": self.modulation.domain_logits(code) if code is not None and self.num_domains else None,
            "code": code,
        }

    # ------------------------------------------------------------------ planning helpers
    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Estimated number of activation elements kept for the backward pass, batch 1 (never raises).

        Same unit as nnU-Net's U-Net estimate (``static_estimate_VRAM_usage``), so the two can be
        compared; the planner's own token budget should still be the primary rule. Assumes fused
        attention (flash / memory-efficient SDPA, what torch uses on CUDA): the N x N attention matrix
        is not counted. ``input_size`` may differ from the built patch (rounded up to whole tokens).
        """
        try:
            size = [int(s) for s in input_size]
            voxels = int(np.prod(size))
            grid = [math.ceil(s / t) for s, t in zip(size, self.token_size)]
            n_tokens = int(np.prod(grid))
            e = self.embed_dim
            hidden = float(self.arch_config["mlp_ratio"])
            per_block = n_tokens * e * (8 + 4 * hidden)  # norms, q/k/v, attention out, proj, SwiGLU, fc2
            total = voxels * self.input_channels + n_tokens * e + len(self.eva.blocks) * per_block
            # decoder trunk: transposed conv output, norm, activation (and FiLM) per stage
            res = np.array(grid, dtype=np.int64)
            for stage in self.decoder.stages:
                conv = stage[0]
                res = res * np.array(conv.stride)
                total += int(np.prod(res)) * conv.out_channels * 4
            # image stem (two conv blocks) and the fusion block: conv, norm, activation each
            total += int(np.prod(res)) * (self.stem.out_channels * 6 + self.fusion.out_channels * 3)
            total += voxels * (self.num_classes + self.num_levels + 1)
            return int(total)
        except Exception:  # the planner must never crash on the estimate
            return int(np.prod([int(s) for s in input_size])) * 64

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_timm(version: str) -> None:
    """Raise a clear error when timm ``version`` cannot build the encoder's 3D rotary embedding."""
    from packaging.version import Version

    if Version(version) >= Version(FIRST_TIMM_WITHOUT_3D_ROPE):
        raise RuntimeError(
            f"timm {version} is installed, but timm {FIRST_TIMM_WITHOUT_3D_ROPE} and later cannot build the 3D rotary "
            f"position embedding of the Transformer encoder (dynamic-network-architectures' Eva, as in nnU-Net's "
            f"Primus): install the version dynamic-network-architectures asks for, "
            f"pip install 'timm<{FIRST_TIMM_WITHOUT_3D_ROPE}'"
        )


def _validate_geometry(patch_size: Tuple[int, ...], token_size: Tuple[int, ...]) -> None:
    if len(patch_size) != 3 or len(token_size) != 3:
        raise ValueError(f"patch_size and token_size must have 3 entries; got {patch_size}, {token_size}")
    if not all(is_power_of_two(t) for t in token_size) or max(token_size) < 2:
        raise ValueError(f"token_size entries must be powers of two, the largest at least 2; got {token_size}")
    bad = [i for i, (p, t) in enumerate(zip(patch_size, token_size)) if p <= 0 or p % t != 0]
    if bad:
        raise ValueError(
            f"patch_size {list(patch_size)} is not divisible by token_size {list(token_size)} along axis "
            f"{', '.join(map(str, bad))}: every patch axis must be a positive multiple of the token size "
            f"(the planner rounds the patch to such multiples)"
        )


def _unwrap(net: nn.Module) -> nn.Module:
    """The VertebraFormer inside DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    seen = 0
    while not isinstance(net, VertebraFormer) and seen < 8:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif hasattr(net, "module"):
            net = net.module
        else:
            break
        seen += 1
    if not isinstance(net, VertebraFormer):
        raise TypeError(f"not a VertebraFormer (or a DDP / compiled wrapper of one): {type(net).__name__}")
    return net


@contextlib.contextmanager
def output_mode(net: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Temporarily set the output mode ("seg", "all" or "dense") of a (possibly wrapped) VertebraFormer."""
    if mode not in OUTPUT_MODES:
        raise ValueError(f"output mode must be one of {OUTPUT_MODES}, not {mode!r}")
    inner = _unwrap(net)
    previous = inner.output_mode
    inner.output_mode = mode
    try:
        yield net
    finally:
        inner.output_mode = previous


def all_heads(net: nn.Module):
    """``with all_heads(net): out = net(x)`` -> the dict of every head (see the module docstring)."""
    return output_mode(net, "all")


#: The network's arguments that the plans' ``arch_kwargs`` hold: every keyword-only argument of the constructor.
ARCH_KWARGS: Tuple[str, ...] = tuple(
    name for name, p in inspect.signature(VertebraFormer.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY
)


def architecture_dict(arch_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The plans' ``configurations[c]["architecture"]`` entry for this network (JSON values).

    ``arch_kwargs`` must hold every one of :data:`ARCH_KWARGS` and nothing else (the plans describe the network
    completely); a ValueError names what is missing or unknown."""
    missing = [k for k in ARCH_KWARGS if k not in arch_kwargs]
    unknown = sorted(k for k in arch_kwargs if k not in ARCH_KWARGS)
    if missing or unknown:
        raise ValueError("VertebraFormer arch_kwargs " + "; ".join(
            part for part in (f"miss {', '.join(missing)}" if missing else "",
                              f"hold unknown {', '.join(unknown)}" if unknown else "") if part))
    _validate_geometry(tuple(int(p) for p in arch_kwargs["patch_size"]),
                       tuple(int(t) for t in arch_kwargs["token_size"]))
    kwargs = {k: list(arch_kwargs[k]) if isinstance(arch_kwargs[k], tuple) else arch_kwargs[k] for k in ARCH_KWARGS}
    return {"network_class_name": NETWORK_CLASS_NAME, "arch_kwargs": kwargs, "_kw_requires_import": []}
