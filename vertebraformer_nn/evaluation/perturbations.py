"""Image perturbations for the benchmark's robustness sweep (issue 5; DESIGN.md section 8): Gaussian noise,
blur, HU offset and coarser slice spacing, each at three strengths.

Every perturbation takes a CT ``sitk.Image`` in HU (any pixel type, any orientation) and returns a new
**float32** image on exactly the same grid (size, spacing, origin, direction), so the reference label maps
still fit. float32 rather than int16 so that noise and averaging are not rounded and nothing is clipped;
nnU-Net casts to float32 on reading anyway. The input image is never modified.

Perturbed cases are named ``variant_name(case, kind, level)`` = ``{case}__{kind}{level}`` (level 1..3,
weakest first); ``parse_variant`` inverts it and reads a clean case name as level 0.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..geometry import superior_axis

# kind -> the three strengths, weakest first.
PERTURBATIONS: Dict[str, Tuple[float, float, float]] = {
    "noise": (25.0, 50.0, 100.0),  # Gaussian noise SD, HU
    "blur": (0.75, 1.5, 3.0),  # Gaussian blur SD, mm (physical, isotropic)
    "hu_offset": (50.0, 100.0, 200.0),  # HU added to every voxel
    "slice_spacing": (3.0, 5.0, 7.0),  # simulated slice thickness along head-foot, mm
}
UNITS: Dict[str, str] = {"noise": "HU", "blur": "mm", "hu_offset": "HU", "slice_spacing": "mm"}

_SEPARATOR = "__"
_VARIANT = re.compile(rf"^(?P<case>.+){_SEPARATOR}(?P<kind>{'|'.join(PERTURBATIONS)})(?P<level>\d+)$")


def perturb(image: sitk.Image, kind: str, strength: float, seed: int = 0) -> sitk.Image:
    """``image`` perturbed by ``kind`` at ``strength`` (units in ``UNITS``) -> float32 image, same grid.

    * ``noise``: adds zero-mean Gaussian noise of SD ``strength`` HU, from ``numpy.random.default_rng(seed)``
      (the same seed gives the same noise).
    * ``blur``: Gaussian smoothing of SD ``strength`` mm in every physical direction (recursive Gaussian,
      per-axis sigma in voxels from the spacing).
    * ``hu_offset``: adds ``strength`` HU to every voxel.
    * ``slice_spacing``: a thicker-slice reconstruction on the same grid: each voxel becomes the mean of a
      slab ``strength`` mm thick along the image axis closest to head-foot (the direction column with the
      largest |z| in LPS), i.e. overlapping thick slices at the native increment. Fractional slab widths
      weight the edge voxels by their overlap. If the native spacing along that axis is already >=
      ``strength``, the slices are at least that thick: an unchanged (float32) copy is returned.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; expected one of {sorted(PERTURBATIONS)}")
    if not (isinstance(strength, numbers.Real) and math.isfinite(strength) and strength > 0):
        raise ValueError(f"{kind} strength must be a finite positive number ({UNITS[kind]}), got {strength!r}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"perturb needs a 3D scalar image, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components per voxel")
    floats = sitk.Cast(image, sitk.sitkFloat32)  # a new image: the input stays untouched
    if kind == "blur":
        return sitk.SmoothingRecursiveGaussian(floats, float(strength))  # sigma in mm (uses the spacing)
    arr = sitk.GetArrayFromImage(floats)  # (k, j, i) copy
    if kind == "noise":
        noise = np.random.default_rng(seed).standard_normal(arr.shape, dtype=np.float32)
        arr += noise * np.float32(strength)
    elif kind == "hu_offset":
        arr += np.float32(strength)
    else:
        axis = superior_axis(image.GetDirection())[0]
        width = strength / image.GetSpacing()[2 - axis]  # slab thickness in voxels
        if width <= 1.0:
            return floats
        arr = ndimage.convolve1d(arr, _box_weights(width), axis=axis, mode="nearest")
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def _box_weights(width: float) -> np.ndarray:
    """Centred box of ``width`` voxels, integrated over each voxel cell [n - 0.5, n + 0.5]; sums to 1."""
    half = width / 2.0
    reach = int(math.ceil(half - 0.5))
    n = np.arange(-reach, reach + 1, dtype=float)
    overlap = np.clip(np.minimum(n + 0.5, half) - np.maximum(n - 0.5, -half), 0.0, None)
    return overlap / overlap.sum()


def variant_name(case: str, kind: str, level: int) -> str:
    """Case identifier of ``case`` perturbed by ``kind`` at ``level`` (1..3), e.g. ``case__noise2``."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; expected one of {sorted(PERTURBATIONS)}")
    if not isinstance(level, int) or not 1 <= level <= len(PERTURBATIONS[kind]):
        raise ValueError(f"{kind} level must be 1..{len(PERTURBATIONS[kind])}, got {level!r}")
    if not case or any(c in case for c in "/\\") or case != case.strip():
        raise ValueError(f"case name {case!r} is not a plain, non-empty file name")
    return f"{case}{_SEPARATOR}{kind}{level}"


def parse_variant(name: str) -> Tuple[str, Optional[str], int]:
    """Inverse of ``variant_name``: ``(case, kind, level)``; a clean case name gives ``(name, None, 0)``."""
    match = _VARIANT.match(name)
    if match is None:
        return name, None, 0
    kind, level = match["kind"], int(match["level"])
    if not 1 <= level <= len(PERTURBATIONS[kind]):
        raise ValueError(f"{name!r}: {kind} level must be 1..{len(PERTURBATIONS[kind])}, got {level}")
    return match["case"], kind, level
