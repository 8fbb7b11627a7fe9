"""Token edges per axis for a spacing: a pure rule shared by the planner (planner.py) and the coarse whole-field
configuration (whole_field.py), kept apart so that neither imports the other's module for it."""
from __future__ import annotations

import math
from typing import List, Sequence

#: Largest token edge (voxels); finer axes of anisotropic data get proportionally smaller tokens.
MAX_TOKEN_EDGE = 8
MIN_TOKEN_EDGE = 2


def token_size_for_spacing(spacing: Sequence[float], max_edge: int = MAX_TOKEN_EDGE,
                           min_edge: int = MIN_TOKEN_EDGE) -> List[int]:
    """Token edge per axis: ``max_edge`` on the finest axis, halved for every doubling of the spacing (powers of
    two), so that a token is roughly as long in mm in every axis."""
    finest = float(min(spacing))
    out = []
    for s in spacing:
        k = int(round(math.log2(max(float(s) / finest, 1.0))))
        out.append(int(max(min_edge, max_edge >> k)))
    return out
