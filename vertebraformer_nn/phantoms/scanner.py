"""The scanner: ideal HU -> stored CT values, given one scan's parameters (styles.ScanParams).

Order as in a real reconstruction: point-spread blur (in-plane kernel, slice profile along the slice axis),
an edge-enhancing bone kernel where the style has one, metal streaks, textured noise (white noise low-pass
filtered in-plane: CT noise is correlated within a slice), calibration (slope and offset), then quantisation
to int16 clipped to the scanner range [-1024, 3071].
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid
from .styles import ScanParams

HU_MIN, HU_MAX = -1024, 3071


def _axes_sigma(grid: Grid, in_plane_mm: float, slice_mm: float):
    """Per numpy axis sigma in voxels: ``slice_mm`` along the slice axis (the third index axis), else in-plane."""
    sig = []
    for axis in range(3):  # numpy axis 0 = index axis k (the slice axis of the stored array)
        sp = grid.spacing[2 - axis]
        sig.append((slice_mm if axis == 0 else in_plane_mm) / sp)
    return sig


def acquire(hu: np.ndarray, grid: Grid, p: ScanParams, rng: np.random.Generator, metal: np.ndarray | None = None) -> np.ndarray:
    """Stored CT values (int16) of an ideal HU volume (float32, (k, j, i)), for scan parameters ``p``."""
    # Slice profile: a rectangle of the slice thickness has sigma ~ thickness / sqrt(12); our occupancy ramp already
    # blurs by about one voxel, so only the excess of the thickness over the spacing is added.
    slice_sigma = np.sqrt(max(p.thickness_mm ** 2 - grid.spacing[2] ** 2, 0.0) / 12.0 + 0.09 * grid.spacing[2] ** 2)
    sigma = _axes_sigma(grid, p.blur_mm, slice_sigma)
    img = ndimage.gaussian_filter(hu, sigma, mode="nearest", truncate=3.0)
    if p.sharpen > 0:
        img = img + np.float32(p.sharpen) * (img - ndimage.gaussian_filter(img, [0.0, 1.0, 1.0], mode="nearest"))
    if metal is not None and metal.any():
        img = img + _streaks(metal, grid, rng)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, [0.3, p.noise_grain, p.noise_grain], mode="wrap")
    noise *= np.float32(p.noise_sd / max(float(noise.std()), 1e-6))
    img = (img + noise) * np.float32(p.hu_slope) + np.float32(p.hu_offset)
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)


def _streaks(metal: np.ndarray, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Dark and bright rays radiating from the metal in each slice that holds some (beam hardening and photon
    starvation), fading with distance."""
    out = np.zeros(metal.shape, np.float32)
    phase = float(rng.uniform(0, np.pi))
    amp = float(rng.uniform(150.0, 300.0))
    nj, ni = metal.shape[1:]
    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float32)
    for k in np.flatnonzero(metal.any(axis=(1, 2))):
        cj, ci = ndimage.center_of_mass(metal[k])
        dy = (jj - cj) * grid.spacing[1]
        dx = (ii - ci) * grid.spacing[0]
        theta = np.arctan2(dy, dx)
        r = np.sqrt(dx * dx + dy * dy)
        rays = np.cos(6.0 * theta + phase) ** 15 - np.cos(6.0 * theta + phase + np.pi / 2) ** 15
        out[k] = amp * rays * np.exp(-r / 70.0) * (r > 4.0)
    return out
