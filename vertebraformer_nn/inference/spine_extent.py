"""Never more vertebrae than the scan can hold, and none where there is no spine (issue 15 part 4; pure numpy).

* :func:`weak_instances`: instances whose mean foreground probability is below ``instance_min_foreground`` are
  diffuse, uncertain false positives, not vertebrae;
* :func:`spine_found`: less vertebra volume than ``spine_min_volume_ml`` in the whole scan is no spine (specks in a
  head, a knee, an empty phantom);
* :func:`count_bound`: a field of view ``E`` mm long along the head-foot axis holds at most
  ``level_anatomy.max_vertebrae_in(E, min_pitch_fraction)`` vertebrae (every pitch at its shortest plausible
  length); beyond that the smallest instances are dropped (a weak model's fragments are the small ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from .level_anatomy import max_vertebrae_in

__all__ = ["CountBound", "weak_instances", "spine_found", "field_of_view_mm", "count_bound"]


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

