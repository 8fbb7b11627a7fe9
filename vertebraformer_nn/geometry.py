"""Pure geometry of SimpleITK images: which array axis runs head-foot (and front-back, left-right).

SimpleITK's world is LPS (+x points to the patient's left, +y to the back, +z to the head).
``sitk.GetArrayFromImage`` returns arrays in (k, j, i) order: numpy axis ``a`` is image axis ``2 - a``, whose
direction is column ``2 - a`` of the direction matrix.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

#: Row of each anatomical direction in the (LPS) direction matrix: left-right x, front-back y, head-foot z.
WORLD_ROW = {"lr": 0, "ap": 1, "si": 2}


def _axis_along(direction: Sequence[float], world_row: int) -> Tuple[int, int]:
    """(numpy axis, sign) of the array axis whose direction is closest to world axis ``world_row``; sign +1 when its
    index grows along +world (left, back, head), -1 otherwise."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    component = d[world_row, ::-1]  # world component of numpy axes 0, 1, 2 (image axes 2, 1, 0)
    axis = int(np.argmax(np.abs(component)))
    return axis, (1 if component[axis] > 0 else -1)


def superior_axis(direction: Sequence[float]) -> Tuple[int, int]:
    """(numpy array axis, sign) of an image with this direction (9 values, row-major as SimpleITK gives them):
    the axis whose direction is closest to head-foot, and +1 when its index grows towards the head, -1 when
    towards the feet."""
    return _axis_along(direction, WORLD_ROW["si"])


def anatomical_axes(direction: Sequence[float]) -> Dict[str, int]:
    """``{"si", "ap", "lr"}`` -> numpy axis of an image with this direction: each the axis closest to head-foot,
    front-back, left-right (:func:`superior_axis`'s rule for each). ValueError when two of them are closest to one
    array axis (an image oblique by about 45 degrees has no such axes)."""
    axes = {name: _axis_along(direction, row)[0] for name, row in WORLD_ROW.items()}
    if sorted(axes.values()) != [0, 1, 2]:
        raise ValueError(f"direction {tuple(round(float(v), 3) for v in direction)} is too oblique to tell which "
                         f"array axis runs head-foot, front-back and left-right (closest axes: {axes})")
    return {name: axes[name] for name in ("si", "ap", "lr")}


def lateral_axis_after_transpose(direction: Sequence[float], transpose_forward: Sequence[int]) -> Optional[int]:
    """The array axis closest to left-right after nnU-Net's transpose (new axis m = old axis ``transpose_forward[m]``),
    or None when that is also the axis closest to head-foot (an image oblique by about 45 degrees)."""
    lateral, superior = _axis_along(direction, WORLD_ROW["lr"])[0], _axis_along(direction, WORLD_ROW["si"])[0]
    return None if lateral == superior else [int(t) for t in transpose_forward].index(lateral)


def superior_axis_after_transpose(direction: Sequence[float], transpose_forward: Sequence[int]) -> Tuple[int, int]:
    """:func:`superior_axis` for an array transposed as nnU-Net does (new axis m = old axis
    ``transpose_forward[m]``)."""
    axis, sign = superior_axis(direction)
    return [int(t) for t in transpose_forward].index(axis), sign


def front_axis_after_transpose(direction: Sequence[float], transpose_forward: Sequence[int]) -> Tuple[int, int]:
    """(array axis, sign) closest to front-back after nnU-Net's transpose; sign +1 when its index grows towards the
    back."""
    axis, sign = _axis_along(direction, WORLD_ROW["ap"])
    return [int(t) for t in transpose_forward].index(axis), sign
