"""The CT in HU on the model grid, for the anatomical anchors (``anchors.py``), from what each caller has:

* :func:`from_input`: the input image (``predict``, ``ensemble``: the CT on its own grid, and the ``grid_map.GridMap``
  between the two grids): the input voxel nearest to each model voxel. Memory: one int16/float array of the model
  grid; the input is only indexed.
* :func:`from_preprocessed`: nnU-Net's preprocessed image (``determine-postprocessing`` predicts validation cases
  from it): nnU-Net's CT normalisation undone with the plans' window (``plans_facts.CTWindow``), exact inside the
  window, which holds soft tissue and bone (planners/ct_window.py).

Both are point samples of the CT at the model voxels (nnU-Net resamples images with a spline, no averaging), so a
bone threshold means the same on either.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..plans_facts import CTWindow

__all__ = ["from_input", "from_preprocessed"]


def from_input(ct_array: np.ndarray, grid) -> np.ndarray:
    """``ct_array``: the input image in SimpleITK order (z, y, x) (a view is enough); ``grid``: its
    ``grid_map.GridMap``. Returns the model-grid array (model axis order) of the nearest input voxels' values."""
    ct_array = np.asarray(ct_array)
    if tuple(ct_array.shape) != tuple(grid.input_shape):
        raise ValueError(f"CT array {ct_array.shape} is not the grid's input {grid.input_shape}")
    index = []
    for a in range(3):
        coords = np.asarray(grid.coords[a], dtype=np.float64)
        valid = np.flatnonzero(np.isfinite(coords))
        wanted = np.arange(grid.model_shape[grid.model_axis[a]], dtype=np.float64)
        nearest = np.abs(coords[valid][None, :] - wanted[:, None]).argmin(axis=1)
        index.append(valid[nearest])
    picked = ct_array[np.ix_(*index)]  # input axis order
    return np.transpose(picked, np.argsort(grid.model_axis))


def from_preprocessed(data: np.ndarray, plans: Mapping, configuration: str) -> Optional[np.ndarray]:
    """HU (float32, clipped to the window) of channel 0 of a preprocessed image; None when the configuration does
    not normalise with nnU-Net's ``CTNormalization`` (nothing to undo)."""
    conf = plans["configurations"][configuration]
    schemes = conf.get("normalization_schemes") or []
    if not schemes or schemes[0] != "CTNormalization":
        return None
    data = np.asarray(data)
    image = data[0] if data.ndim == 4 else data
    return np.asarray(CTWindow.from_plans(plans).to_hu(image.astype(np.float32)), dtype=np.float32)
