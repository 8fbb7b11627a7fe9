"""Which vertebra a lesion belongs to: the level every lesion and lesion candidate carries in ``<case>.json``.

Pure numpy/scipy on one grid: ``vertebrae`` is the VerSe-coded vertebra map (codes 0-28), a lesion is a boolean
mask inside a box (slices) of that grid, ``spacing`` is mm per array axis.

* The level is the vertebra holding most of the lesion's voxels (on a tie the upper one, head to foot in the
  anatomical order, T13 between T12 and L1); a lesion straddling two vertebrae lists both, each with the fraction
  of the lesion's voxels it holds (the rest lies outside every vertebra).
* A lesion outside every vertebra (a paraspinal mass, a rib or sacral lesion, a false positive) has no level; its
  nearest vertebra and the distance to it (mm, voxel centre to voxel centre) are given when one lies within
  :data:`NEAREST_SEARCH_MM`, so a reader can still place it.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .. import labels

#: How far (mm) around a lesion outside every vertebra its nearest vertebra is looked for: about one vertebra's
#: height plus a disc, so a lesion beside the spine is placed and one in the pelvis or a distant rib is not.
NEAREST_SEARCH_MM = 30.0


def lesion_levels(vertebrae: Optional[np.ndarray], box: Tuple[slice, ...], mask: np.ndarray,
                  spacing: Sequence[float]) -> dict:
    """{"level_code": VerSe code or 0, "level_name": name or None, "levels": [{"code", "name", "fraction"}, ...] head
    to foot, "nearest": None or {"code", "name", "distance_mm"}} of the lesion ``mask`` inside ``box``; no level at
    all without a vertebra map (``vertebrae`` None)."""
    if vertebrae is None:
        return {"level_code": 0, "level_name": None, "levels": [], "nearest": None}
    codes = np.asarray(vertebrae[box])[mask]
    counts = np.bincount(codes.astype(np.intp, copy=False), minlength=1)
    counts[0] = 0
    touched = labels.sort_head_to_foot(np.flatnonzero(counts))
    total = max(int(mask.sum()), 1)
    levels = [{"code": c, "name": labels.name(c), "fraction": round(float(counts[c]) / total, 4)} for c in touched]
    if touched:
        best = max(touched, key=lambda c: (counts[c], -touched.index(c)))  # a tie goes to the upper vertebra
        return {"level_code": best, "level_name": labels.name(best), "levels": levels, "nearest": None}
    return {"level_code": 0, "level_name": None, "levels": [],
            "nearest": nearest_vertebra(vertebrae, box, mask, spacing)}


def nearest_vertebra(vertebrae: np.ndarray, box: Tuple[slice, ...], mask: np.ndarray, spacing: Sequence[float],
                     search_mm: float = NEAREST_SEARCH_MM) -> Optional[dict]:
    """{"code", "name", "distance_mm"} of the vertebra nearest to the lesion ``mask`` (inside ``box``), or None when
    none lies within ``search_mm``. Works in the lesion's box widened by ``search_mm``: every vertebra voxel within
    that distance of a lesion voxel lies inside it."""
    spacing = np.asarray(spacing, dtype=float)
    pad = np.ceil(search_mm / spacing).astype(int)
    window = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, vertebrae.shape))
    vert = np.asarray(vertebrae[window])
    if not vert.any():
        return None
    distance, nearest = ndimage.distance_transform_edt(vert == 0, sampling=spacing, return_indices=True)
    inner = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(box, window))
    at = np.argwhere(mask)
    at = at + [s.start for s in inner]
    d = distance[tuple(at.T)]
    k = int(np.argmin(d))
    if d[k] > search_mm:
        return None
    code = int(vert[tuple(nearest[:, at[k][0], at[k][1], at[k][2]])])
    return {"code": code, "name": labels.name(code), "distance_mm": round(float(d[k]), 2)}
