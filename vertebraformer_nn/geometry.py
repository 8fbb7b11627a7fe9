"""Pure geometry of SimpleITK images: which array axis runs head-foot.

SimpleITK's world is LPS (+z points to the head). ``sitk.GetArrayFromImage`` returns arrays in (k, j, i) order:
numpy axis ``a`` is image axis ``2 - a``, whose direction is column ``2 - a`` of the direction matrix.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def superior_axis(direction: Sequence[float]) -> Tuple[int, int]:
    """(numpy array axis, sign) of an image with this direction (9 values, row-major as SimpleITK gives them):
    the axis whose direction is closest to head-foot, and +1 when its index grows towards the head, -1 when
    towards the feet."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    superior = d[2, ::-1]  # superior component of numpy axes 0, 1, 2 (image axes 2, 1, 0)
    axis = int(np.argmax(np.abs(superior)))
    return axis, (1 if superior[axis] > 0 else -1)


def superior_axis_after_transpose(direction: Sequence[float], transpose_forward: Sequence[int]) -> Tuple[int, int]:
    """:func:`superior_axis` for an array transposed as nnU-Net does (new axis m = old axis
    ``transpose_forward[m]``)."""
    axis, sign = superior_axis(direction)
    return [int(t) for t in transpose_forward].index(axis), sign
