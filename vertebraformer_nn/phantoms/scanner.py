"""The scanner: ideal HU -> stored CT values, given one scan's parameters (styles.ScanParams).

Order as in a real reconstruction: point-spread blur (in-plane kernel, slice profile along the slice axis),
an edge-enhancing bone kernel where the style has one, metal streaks, beam-hardening cupping (HU lost towards
the centre of the field of view), textured noise (white noise low-pass filtered, mostly in-plane: CT noise is
correlated within a slice), calibration, then quantisation to int16 clipped to the scanner range [-1024, 3071].
Calibration keeps air at -1000 HU: the offset acts fully from water up (``calibrate``), and the slope scales
positive HU only (bone and contrast agent change with the tube voltage; fat and air barely do).
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
        img = img + _streaks(metal, grid, rng, p.streak_hu)
    if p.cupping_hu:
        img = img - np.float32(p.cupping_hu) * _cupping(grid, img > -500.0)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, [p.noise_grain_z, p.noise_grain, p.noise_grain], mode="wrap")
    noise *= np.float32(p.noise_sd / max(float(noise.std()), 1e-6))
    img = calibrate(img + noise, p.hu_slope, p.hu_offset)
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)


def calibrate(img: np.ndarray, slope: float, offset: float) -> np.ndarray:
    """Scanner calibration: ``offset`` at water and above, fading to none at air; ``slope`` on positive HU."""
    img = img + np.float32(offset) * np.clip((img + 1000.0) / 1000.0, 0.0, 1.0)
    return img + np.float32(slope - 1.0) * np.maximum(img, 0.0)


def _axial(grid: Grid, arr: np.ndarray):
    """(arr with the head-foot axis first, (row, column) spacing of its axial slices, that axis)."""
    ax = grid.head_foot_axis
    rest = [a for a in range(3) if a != ax]
    return np.moveaxis(arr, ax, 0), (grid.spacing[2 - rest[0]], grid.spacing[2 - rest[1]]), ax


def _cupping(grid: Grid, body: np.ndarray) -> np.ndarray:
    """1 at the centre of the body in each axial slice, falling to 0 at its edge (a parabola in the radius)."""
    b, (sr, sc), ax = _axial(grid, body)
    out = np.zeros(b.shape, np.float32)
    rr, cc = np.mgrid[0:b.shape[1], 0:b.shape[2]].astype(np.float32)
    for k in range(b.shape[0]):
        if not b[k].any():
            continue
        rows, cols = np.nonzero(b[k])
        r2 = ((rr - rows.mean()) * sr) ** 2 + ((cc - cols.mean()) * sc) ** 2
        out[k] = np.clip(1.0 - r2 / (float(r2[b[k]].max()) or 1.0), 0.0, 1.0) * b[k]
    return np.moveaxis(out, 0, ax)


def _streaks(metal: np.ndarray, grid: Grid, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Dark and bright rays radiating from the metal in each axial slice that holds some (beam hardening and photon
    starvation), fading with distance."""
    m, (sr, sc), ax = _axial(grid, metal)
    out = np.zeros(m.shape, np.float32)
    phase = float(rng.uniform(0, np.pi))
    rr, cc = np.mgrid[0:m.shape[1], 0:m.shape[2]].astype(np.float32)
    for k in np.flatnonzero(m.any(axis=(1, 2))):
        cr, ccol = ndimage.center_of_mass(m[k])
        dy, dx = (rr - cr) * sr, (cc - ccol) * sc
        theta = np.arctan2(dy, dx)
        r = np.sqrt(dx * dx + dy * dy)
        rays = np.cos(6.0 * theta + phase) ** 15 - np.cos(6.0 * theta + phase + np.pi / 2) ** 15
        out[k] = amplitude * rays * np.exp(-r / 70.0) * (r > 4.0)
    return np.moveaxis(out, 0, ax)
