"""Domain randomisation in generation: scans drawn far beyond what real scanners show.

A network trained only on phantoms transfers to real CT when it has learned to ignore everything but anatomy
(SynthSeg: Billot et al., Medical Image Analysis 2023, trained on images synthesised with contrast, resolution,
noise and artefacts randomised beyond the real range). Each source keeps its own scanner style (styles.py) as
the centre of its draws; on top of it, for every group of parameters below, a scan draws the whole group from a
wide range instead with probability ``strength`` (0: the style alone; 1: every group wide). Groups:

=========== ==========================================================================================
hu          calibration: water offset (air stays at -1000) and the scale of positive HU (bone, contrast;
            as a different tube voltage changes them), and beam-hardening cupping
noise       noise level and texture: in-plane grain and correlation along the slices
kernel      reconstruction kernel: blur of the point-spread function and edge enhancement
slices      slice spacing, slice thickness (thin or thick against the spacing) and pixel size
contrast    intravenous contrast phase and strength, oral contrast in the bowel
metal       pedicle screws and rods, and the strength of their streaks
fov         field of view: which part of the spine (including the pelvis), axial size and off-centring
tilt        how crooked the patient lies (rotation about each axis)
pv          partial volume: how wide edges blur into their neighbours
=========== ==========================================================================================

Every group draws from its own generator, keyed by the case and the group (plan.rng_for), so a seed gives the
same scans byte for byte and changing one group never changes another's draws. Patient size and habitus are
drawn with the subject (anatomy.sample_subject) over a wide range too.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .styles import ScanParams
from .viscera import sample_contrast

GROUPS = ("hu", "noise", "kernel", "slices", "contrast", "metal", "fov", "tilt", "pv")
DEFAULT_STRENGTH = 0.5
#: Field-of-view kinds a wide draw chooses from (fov.FOV_KINDS).
WIDE_FOV = ("cervical", "cervicothoracic", "thoracic", "thoracolumbar", "lumbar", "whole", "abdomen", "pelvis")


def _wide_group(group: str, p: ScanParams, rng: np.random.Generator, allowed_fov: Sequence[str]) -> ScanParams:
    u = rng.uniform
    if group == "hu":
        return replace(p, hu_offset=float(u(-60.0, 80.0)), hu_slope=float(u(0.7, 1.4)), cupping_hu=float(u(0.0, 80.0)))
    if group == "noise":
        return replace(p, noise_sd=float(u(0.0, 1.0) ** 1.5 * 150.0), noise_grain=float(u(0.4, 3.0)),
                       noise_grain_z=float(u(0.0, 2.0)))
    if group == "kernel":
        return replace(p, blur_mm=float(u(0.2, 2.5)), sharpen=float(u(0.0, 1.5)) * (rng.random() < 0.6))
    if group == "slices":
        slice_mm = float(np.round(u(0.6, 6.0), 1))
        return replace(p, slice_mm=slice_mm, thickness_mm=round(slice_mm * float(u(0.7, 2.0)), 2),
                       pixel_mm=round(float(u(0.45, 2.4)), 3))
    if group == "contrast":
        return replace(p, contrast=sample_contrast(rng, 0.7, wide=True))
    if group == "metal":
        return replace(p, metal=bool(rng.random() < 0.35), streak_hu=float(u(50.0, 800.0)))
    if group == "fov":
        kinds = [k for k in WIDE_FOV if k in allowed_fov] or [p.fov]
        # From a tight crop around the spine (VerSe has some) to the whole body.
        lr = float(u(70.0, 480.0))
        return replace(p, fov=str(kinds[int(rng.integers(len(kinds)))]), axial_mm=(lr, max(lr, float(u(150.0, 400.0)))),
                       fov_offset_mm=float(u(0.0, 60.0)))
    if group == "tilt":
        return replace(p, tilt_deg=float(u(3.0, 15.0)))
    if group == "pv":
        return replace(p, pv_factor=float(u(0.6, 1.9)))
    raise ValueError(f"unknown randomisation group {group!r}")


def randomise(p: ScanParams, strength: float, rng_of: Callable[[str], np.random.Generator],
              allowed_fov: Sequence[str] = WIDE_FOV) -> ScanParams:
    """``p`` with each group, with probability ``strength``, drawn wide. ``rng_of(group)``: that group's generator.
    ``allowed_fov``: the kinds this case may take (a forced or avoided field of view is kept)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"randomisation strength must be in [0, 1], not {strength}")
    wide = []
    for group in GROUPS:
        rng = rng_of(group)
        if rng.random() < strength:
            p = _wide_group(group, p, rng, allowed_fov)
            wide.append(group)
    return replace(p, wide=tuple(wide))
