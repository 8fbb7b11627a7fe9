"""Mixed precision per device: the one place that decides which autocast a training or inference step runs in.

* CUDA: float16 autocast (nnU-Net's choice, with its gradient scaler in training).
* CPU with native bfloat16 instructions (AVX512-BF16 or AMX): bfloat16 autocast. Measured on the 2-core
  development machine (AMD EPYC with AVX512-BF16), a VertebraFormer training step at the CPU preset (batch 2,
  88x56x48) took 0.34 s instead of 0.58 s. bfloat16 keeps float32's exponent range, so no gradient scaler
  is needed. Without native instructions bfloat16 is emulated and slower, so such CPUs stay in float32.
* Anything else (MPS, CPUs without bf16): float32.

``VERTEBRAFORMER_CPU_BF16=0`` keeps the CPU in float32 (``=1`` forces bfloat16).
"""
from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from typing import Optional

import torch

ENV_CPU_BF16 = "VERTEBRAFORMER_CPU_BF16"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private torch helpers; /proc/cpuinfo below if they go away
        try:
            if check is not None and check():
                return True
        except Exception:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_bf16_enabled() -> bool:
    """Whether CPU steps run in bfloat16 autocast (the environment variable first, then the hardware)."""
    setting = os.environ.get(ENV_CPU_BF16, "").strip().lower()
    if setting in ("0", "false", "f", "no", "off"):
        return False
    if setting in ("1", "true", "t", "yes", "on"):
        return True
    return cpu_has_native_bf16()


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype used on ``device``, None for float32."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_enabled():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device):
    """Context manager: the autocast of :func:`autocast_dtype` on ``device``, or nothing."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe(device: torch.device) -> str:
    dtype = autocast_dtype(device)
    return "float32" if dtype is None else f"{str(dtype).replace('torch.', '')} autocast"
