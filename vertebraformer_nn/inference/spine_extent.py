"""Never more vertebrae than the scan can hold, and none where there is no spine (issue 15 part 4; pure numpy).

* :func:`weak_instances`: instances whose mean foreground probability is below ``instance_min_foreground`` are
  diffuse, uncertain false positives, not vertebrae;
* :func:`spine_found`: less vertebra volume than ``spine_min_volume_ml`` in the whole scan is no spine (specks in a
  head, a knee, an empty phantom);
* :func:`count_bound`: a field of view ``E`` mm long along the head-foot axis holds at most
  ``level_anatomy.max_vertebrae_in(E, min_pitch_fraction)`` vertebrae (every pitch at its shortest plausible
  length); beyond that the smallest instances are dropped (a weak model's fragments are the small ones);
* :func:`off_axis`: instances far from the spine's axis in the axial plane (iliac wings, shoulder blades, ribs a
  model took for vertebrae) are not vertebrae. The axis is the longest chain of instances, head to foot, whose
  consecutive members lie within ``max_off_axis_mm`` of each other in the axial plane (the spine is one
  continuous column; wings and shoulders come in pairs beside it and make shorter chains). A chain's length counts
  vertebrae, and a fragment smaller than any vertebra counts as a fraction of one: a few of them beside a spine that
  thick slices fused into one piece never make the axis and drop the spine itself. Where the CT tells where the
  body's left-right midline is (:func:`midline_offsets`), a member counts less the further it lies to the side of
  it (:func:`midline_weight`): the spine runs within a few centimetres of the midline, the iliac wings, femoral
  heads and shoulder blades 8-15 cm beside it. Measured on example_ct with its bone made denser (x 1.4 above
  100 HU): the network marked many pieces of both hips, and a chain of 8 pieces of the right hip outnumbered the
  5 lumbar instances and became the axis;
* :func:`fragments`: among the spine's own instances (after the off-axis ones went), those below
  ``min_relative_volume`` x their median volume are pieces, not vertebrae. The instance stage applies the same
  fraction to every piece, but there the pieces of the iliac wings and shoulders pull the median down: measured on
  example_ct blurred by 2 mm, two pieces of 0.7 and 1.2 ml below L5 (its vertebrae 20-63 ml) survived it, were
  numbered L5 and L6, and moved every level one up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from .level_anatomy import MIN_VOLUME_ML, max_vertebrae_in

__all__ = ["CountBound", "weak_instances", "spine_found", "field_of_view_mm", "count_bound", "vertebra_share",
           "spine_chain", "off_axis", "fragments", "midline_offsets", "midline_weight"]

#: where a chain member's weight halves, mm to the side of the body's midline (module docstring)
MIDLINE_HALF_WEIGHT_MM = 60.0
#: body: what is denser than this (HU), outside air
BODY_HU = -500.0


def weak_instances(instance_map: np.ndarray, background_prob: np.ndarray, min_foreground: float) -> List[int]:
    """Ids of the instances whose mean foreground probability (1 - ``background_prob``) is below ``min_foreground``."""
    instance_map = np.asarray(instance_map)
    n = int(instance_map.max(initial=0))
    if n == 0 or min_foreground <= 0:
        return []
    counts = np.bincount(instance_map.ravel(), minlength=n + 1)
    background = np.bincount(instance_map.ravel(), weights=np.asarray(background_prob, np.float64).ravel(),
                             minlength=n + 1)
    present = np.flatnonzero(counts[1:]) + 1
    foreground = 1.0 - background[present] / counts[present]
    return [int(i) for i, f in zip(present, foreground) if f < min_foreground]


def spine_found(volumes_mm3: Sequence[float], min_volume_ml: float) -> bool:
    return float(np.sum(volumes_mm3)) >= 1000.0 * min_volume_ml and len(volumes_mm3) > 0


def field_of_view_mm(shape: Sequence[int], spacing: Sequence[float], si_axis: int) -> float:
    """Length of the grid along the head-foot axis (mm)."""
    return float(shape[si_axis]) * float(spacing[si_axis])


@dataclass
class CountBound:
    """What :func:`count_bound` decided."""

    extent_mm: float
    max_count: int
    found: int
    keep: np.ndarray  # bool per instance, in the order given

    @property
    def exceeded(self) -> bool:
        return self.found > self.max_count

    def report(self) -> Dict[str, float]:
        return {"field_of_view_mm": round(self.extent_mm, 1), "max_vertebrae": self.max_count,
                "instances_found": self.found}


def count_bound(volumes_mm3: Sequence[float], extent_mm: float, fraction: float, levels: int = 26) -> CountBound:
    """Which instances to keep: all when they fit in the field of view (module docstring), else the
    ``max_count`` largest (at most ``levels`` in any case)."""
    volumes = np.asarray(volumes_mm3, dtype=np.float64)
    limit = min(max_vertebrae_in(extent_mm, fraction), levels)
    keep = np.ones(len(volumes), dtype=bool)
    if len(volumes) > limit:
        keep[:] = False
        keep[np.argsort(-volumes, kind="stable")[:limit]] = True
    return CountBound(float(extent_mm), int(limit), int(len(volumes)), keep)


def vertebra_share(volumes_mm3) -> np.ndarray:
    """How far each instance can be a whole vertebra by its volume: 1 from ``level_anatomy.MIN_VOLUME_ML`` up,
    less below (a fragment of a posterior element counts as a fraction of one)."""
    return np.minimum(1.0, np.asarray(volumes_mm3, dtype=np.float64).reshape(-1) / (1000.0 * MIN_VOLUME_ML))


def spine_chain(centres_mm, volumes_mm3, superior_axis: int, max_step_mm: float, midline_mm=None) -> np.ndarray:
    """Indices (by increasing coordinate along ``superior_axis``) of the longest chain of instances whose consecutive
    members are at most ``max_step_mm`` apart in the axial plane; among chains as long, the one with the most
    volume. Length counts vertebrae, not volume, so that one large iliac wing does not outweigh the vertebrae; a
    member smaller than any vertebra counts as the share of one its volume is (:func:`vertebra_share`), so that a
    few fragments never outweigh a spine that thick slices fused into one piece. ``midline_mm``: each member's
    distance to the side of the body's midline (:func:`midline_offsets`), or None; its share is then weighted by
    :func:`midline_weight`."""
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    volumes = np.asarray(volumes_mm3, dtype=np.float64).reshape(-1)
    n = len(centres)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(centres[:, superior_axis], kind="stable")
    plane = np.delete(centres[order], superior_axis, axis=1)
    # volume only breaks ties: its share of the whole is at most 1e-3 over a chain
    weight = vertebra_share(volumes[order]) + 1e-3 * volumes[order] / max(float(volumes.sum()), 1e-9)
    if midline_mm is not None:
        weight = weight * midline_weight(np.asarray(midline_mm, dtype=np.float64).reshape(-1)[order])
    best, previous = weight.copy(), np.full(n, -1)
    for i in range(1, n):  # longest path in a DAG; n <= a few dozen instances
        near = np.flatnonzero(np.linalg.norm(plane[:i] - plane[i], axis=1) <= max_step_mm)
        if len(near):
            j = near[np.argmax(best[near])]
            best[i], previous[i] = best[j] + weight[i], j
    chain, i = [], int(np.argmax(best))
    while i >= 0:
        chain.append(i)
        i = int(previous[i])
    return order[np.asarray(chain[::-1], dtype=np.int64)]


def off_axis(centres_mm, volumes_mm3, superior_axis: int, max_offset_mm: float, midline_mm=None) -> np.ndarray:
    """Per instance, whether its centre lies more than ``max_offset_mm`` in the axial plane from the spine's axis
    (:func:`spine_chain` with that step and ``midline_mm``, interpolated along the head-foot axis, held constant
    beyond its ends). The chain's members never are; nothing is with fewer than 3 instances or ``max_offset_mm``
    = 0."""
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    far = np.zeros(len(centres), dtype=bool)
    if len(centres) < 3 or max_offset_mm <= 0:
        return far
    chain = spine_chain(centres, volumes_mm3, superior_axis, max_offset_mm, midline_mm)
    along = centres[chain, superior_axis]
    plane = np.delete(centres, superior_axis, axis=1)
    axis_at = np.stack([np.interp(centres[:, superior_axis], along, plane[chain, k]) for k in range(2)], axis=1)
    far = np.linalg.norm(plane - axis_at, axis=1) > max_offset_mm
    far[chain] = False
    return far


def fragments(volumes_mm3, on_border, min_relative_volume: float) -> np.ndarray:
    """Per instance, whether it is below ``min_relative_volume`` x the median volume of all (module docstring) and
    not on the head-foot border (a vertebra cut by the field of view is small and still a level of its own). None is
    with fewer than 3 instances or a fraction of 0."""
    volumes = np.asarray(volumes_mm3, dtype=np.float64).reshape(-1)
    small = np.zeros(len(volumes), dtype=bool)
    if len(volumes) < 3 or min_relative_volume <= 0:
        return small
    return (volumes < min_relative_volume * float(np.median(volumes))) & ~np.asarray(on_border, dtype=bool)


def midline_weight(offset_mm) -> np.ndarray:
    """1 on the body's midline, 1/2 at :data:`MIDLINE_HALF_WEIGHT_MM` to its side, falling steeply beyond:
    1 / (1 + (offset / half)^4): 0.94 at 30 mm (a scoliotic apex), 0.16 at 90 mm (an iliac wing)."""
    return 1.0 / (1.0 + (np.abs(np.asarray(offset_mm, dtype=np.float64)) / MIDLINE_HALF_WEIGHT_MM) ** 4)


def midline_offsets(hu: np.ndarray, centres_mm, spacing, lateral_axis: int):
    """Each centre's distance (mm) along ``lateral_axis`` from the body's left-right midline: the median lateral
    coordinate of the voxels denser than :data:`BODY_HU` (the body, or the whole field of a crop inside it), on the
    grid of ``hu`` with ``spacing``. None when no voxel is."""
    counts = np.count_nonzero(np.asarray(hu) > BODY_HU, axis=tuple(a for a in range(3) if a != lateral_axis))
    total = int(counts.sum())
    if total == 0:
        return None
    median_index = int(np.searchsorted(np.cumsum(counts), (total + 1) / 2.0))
    midline = median_index * float(spacing[lateral_axis])
    return np.abs(np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)[:, lateral_axis] - midline)
