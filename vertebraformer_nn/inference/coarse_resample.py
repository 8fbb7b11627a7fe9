"""Coarse-grid probabilities read on a fine grid by separable linear interpolation (the coarse whole-field stage's
levels on the fine model's grid, ``coarse_stage``). Both grids resample the same cropped box of the input, so voxel i
of an axis of n fine voxels sits at coarse coordinate ``(i + 0.5) * m / n - 0.5`` of its m coarse ones (half-pixel
alignment, edges clamped). Pure numpy."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["to_fine_grid", "at_fine_voxels"]


def _coordinates(n: int, size: int, at: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper neighbour, weight of the upper) of fine voxels ``at`` (default all ``size``) of an axis resampled
    from ``n`` coarse voxels (half-pixel alignment, edges clamped)."""
    at = np.arange(size) if at is None else at
    coord = np.clip((at + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(coord).astype(np.intp)
    return lo, np.minimum(lo + 1, n - 1), (coord - lo).astype(np.float32)


def _linear_along(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``array`` resampled linearly to ``size`` along ``axis``."""
    lo, hi, w = _coordinates(array.shape[axis], size)
    w = w.reshape([-1 if a == axis else 1 for a in range(array.ndim)])
    below = np.take(array, lo, axis=axis)
    return below + (np.take(array, hi, axis=axis) - below) * w


def to_fine_grid(coarse: np.ndarray, fine_shape: Sequence[int], chunk: int = 4) -> np.ndarray:
    """(C, *coarse grid) probabilities -> (C, *fine_shape) float16 by separable linear interpolation (module
    docstring), ``chunk`` channels at a time (float32 temporaries of that many channels)."""
    coarse = np.asarray(coarse)
    out = np.empty((coarse.shape[0], *[int(s) for s in fine_shape]), dtype=np.float16)
    for start in range(0, coarse.shape[0], chunk):
        block = coarse[start:start + chunk].astype(np.float32)
        for axis, size in enumerate(fine_shape, start=1):
            block = _linear_along(block, axis, int(size))
        out[start:start + chunk] = block
    return out


def at_fine_voxels(coarse: np.ndarray, fine_shape: Sequence[int], flat_indices: np.ndarray,
                   chunk: int = 1 << 16) -> np.ndarray:
    """(n, C) float32: :func:`to_fine_grid`'s values at the fine voxels ``flat_indices`` (C order of ``fine_shape``)
    only, ``chunk`` voxels at a time (trilinear: the separable interpolation at one point)."""
    coarse = np.asarray(coarse)
    if coarse.ndim != 4:
        raise ValueError(f"coarse level probabilities must be (C, X, Y, Z), got shape {coarse.shape}")
    flat = coarse.reshape(coarse.shape[0], -1)
    out = np.empty((len(flat_indices), coarse.shape[0]), np.float32)
    for start in range(0, len(flat_indices), chunk):
        coords = np.unravel_index(np.asarray(flat_indices[start:start + chunk]), tuple(int(s) for s in fine_shape))
        axes = [_coordinates(n, int(size), c) for n, size, c in zip(coarse.shape[1:], fine_shape, coords)]
        block = np.zeros((len(coords[0]), coarse.shape[0]), np.float32)
        for corner in range(8):
            picks = [(hi if corner >> a & 1 else lo, w if corner >> a & 1 else 1 - w)
                     for a, (lo, hi, w) in enumerate(axes)]
            weight = picks[0][1] * picks[1][1] * picks[2][1]
            at = np.ravel_multi_index(tuple(p[0] for p in picks), coarse.shape[1:])
            block += flat[:, at].T.astype(np.float32) * weight[:, None]
        out[start:start + len(block)] = block
    return out
