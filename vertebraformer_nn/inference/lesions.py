"""Lesion instances from the lesion head's probability map: connected components, their vertebra level and score.

Pure numpy/cc3d: arrays in any axis order, ``spacing`` in mm per array axis. Instances are ordered by
descending score (the order average precision ranks them in), ties by larger volume then position, and
numbered 1..n in that order. The score is the **maximum** lesion probability inside the instance: a lesion
with a confident core ranks high however much uncertain rim it carries (a mean would punish large lesions
for their rim).

Memory: one boolean mask and one 32-bit component map of the full grid (cc3d); everything per instance works
inside its bounding box, and the component map is renumbered in place, slab by slab, into the returned map.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cc3d
import numpy as np

from .. import labels
from .postprocessing import DEFAULTS

#: What ``score`` means, written into reports.
SCORE_DEFINITION = "maximum lesion probability inside the instance"

_SLAB = 32  # array-axis-0 planes renumbered at a time (bounds the lookup temporaries)


def lesion_instances(
    lesion_prob: np.ndarray,
    vertebrae: np.ndarray,
    spacing: Sequence[float],
    threshold: float = DEFAULTS.lesion_threshold,
    min_volume_mm3: float = DEFAULTS.lesion_min_volume_mm3,
) -> Tuple[np.ndarray, List[dict]]:
    """Split ``lesion_prob > threshold`` into 26-connected instances of at least ``min_volume_mm3`` (both
    post-processing parameters: ``postprocessing.Postprocessing`` documents their defaults).

    ``vertebrae``: VerSe-coded vertebra map on the same grid (codes 0-28), or None. Returns
    ``(instance_map int32 with ids 0..n, instances)``; each instance is a dict with id (1..n, by descending score),
    level_code (VerSe code of the vertebra holding most of its voxels, 0 when it touches none), level_name (None
    when 0), score (max probability), volume_mm3, voxels, centre_index (centre of mass, array axes) and bbox_index
    ([first, last] voxel index per array axis, inclusive).
    """
    lesion_prob = np.asarray(lesion_prob)
    if lesion_prob.ndim != 3:
        raise ValueError(f"lesion probabilities must be a 3D array, got shape {lesion_prob.shape}")
    if vertebrae is not None and np.shape(vertebrae) != lesion_prob.shape:
        raise ValueError(f"vertebra map {np.shape(vertebrae)} and lesion probabilities {lesion_prob.shape} "
                         "differ in shape")
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing must be three positive numbers (mm per array axis), got {spacing.tolist()}")
    voxel_mm3 = float(np.prod(spacing))

    components = cc3d.connected_components(lesion_prob > threshold, connectivity=26, binary_image=True,
                                           out_dtype=np.uint32)
    stats = cc3d.statistics(components)
    counts = stats["voxel_counts"]
    candidates = [c for c in range(1, len(counts)) if counts[c] * voxel_mm3 >= min_volume_mm3]

    found = []
    for c in candidates:
        box = stats["bounding_boxes"][c]
        inside = components[box] == c
        score = float(lesion_prob[box][inside].max())
        level = _majority_level(vertebrae[box][inside]) if vertebrae is not None else 0
        found.append((c, score, level, box))
    found.sort(key=lambda f: (-f[1], -int(counts[f[0]]), tuple(stats["centroids"][f[0]])))

    lut = np.zeros(len(counts), dtype=np.uint32)
    instances = []
    for new_id, (c, score, level, box) in enumerate(found, start=1):
        lut[c] = new_id
        instances.append({
            "id": new_id,
            "level_code": level,
            "level_name": labels.name(level) if level else None,
            "score": round(score, 4),
            "volume_mm3": round(float(counts[c]) * voxel_mm3, 3),
            "voxels": int(counts[c]),
            "centre_index": [round(float(v), 3) for v in stats["centroids"][c]],
            "bbox_index": [[s.start, s.stop - 1] for s in box],
        })
    # Renumber in place: a lookup of the whole grid at once would add another full-size array.
    for start in range(0, components.shape[0], _SLAB):
        slab = components[start:start + _SLAB]
        slab[...] = lut[slab]
    return components.view(np.int32), instances


def _majority_level(codes: np.ndarray) -> int:
    """The non-zero VerSe code most voxels carry (the lower code on a tie), 0 when all are background."""
    counts = np.bincount(codes.ravel().astype(np.intp, copy=False), minlength=1)
    counts[0] = 0
    return int(np.argmax(counts)) if counts.any() else 0
