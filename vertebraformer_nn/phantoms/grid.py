"""Image grids: size, spacing, origin and direction of a scan, built from a field of view in world (LPS) mm and
an orientation given as axis codes ('LPS', 'PIR', ...: the direction each index axis points to, nibabel's and
SimpleITK DICOMOrient's convention). Pure geometry plus conversion to a SimpleITK image."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

_LETTER = {"L": (0, 1.0), "R": (0, -1.0), "P": (1, 1.0), "A": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def direction_from_axcodes(codes: str) -> np.ndarray:
    """3x3 direction matrix (columns = index axes in LPS world) for axis codes like 'PIR'."""
    codes = codes.upper()
    if len(codes) != 3 or sorted(_LETTER[c][0] for c in codes) != [0, 1, 2]:
        raise ValueError(f"axis codes {codes!r} must name the three anatomical axes once each")
    d = np.zeros((3, 3))
    for col, letter in enumerate(codes):
        axis, sign = _LETTER[letter]
        d[axis, col] = sign
    return d


@dataclass(frozen=True)
class Grid:
    size: Tuple[int, int, int]  # (i, j, k), SimpleITK order
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]  # 9 values, row-major (SimpleITK order)
    axcodes: str

    @property
    def shape(self) -> Tuple[int, int, int]:
        """numpy array shape (k, j, i), as SimpleITK's GetArrayFromImage returns."""
        return self.size[::-1]

    @property
    def matrix(self) -> np.ndarray:
        """index (i, j, k) -> world offset from the origin: direction @ diag(spacing)."""
        return np.array(self.direction).reshape(3, 3) @ np.diag(self.spacing)

    def index_to_world(self, ijk) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(ijk, dtype=float) @ self.matrix.T

    def world_to_index(self, xyz) -> np.ndarray:
        return (np.asarray(xyz, dtype=float) - np.asarray(self.origin)) @ np.linalg.inv(self.matrix).T

    def contains(self, xyz, margin: float = 0.5) -> bool:
        ijk = self.world_to_index(xyz)
        return bool(np.all(ijk >= -margin) and np.all(ijk <= np.asarray(self.size) - 1 + margin))

    @property
    def head_foot_axis(self) -> int:
        """numpy axis (of the (k, j, i) array) that runs head-foot."""
        d = np.array(self.direction).reshape(3, 3)
        index_axis = int(np.argmax(np.abs(d[2, :])))
        return 2 - index_axis

    @property
    def voxel_mm(self) -> float:
        return float(np.prod(self.spacing) ** (1.0 / 3.0))

    def image(self, array: np.ndarray) -> sitk.Image:
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {array.shape} does not match grid shape {self.shape}")
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img


def make_grid(box_min: Sequence[float], box_max: Sequence[float], spacing_lps: Sequence[float], axcodes: str,
              origin_step: float = 0.125) -> Grid:
    """Grid covering the world box [box_min, box_max] (LPS mm) with ``spacing_lps`` along the L, P, S world axes,
    index axes ordered and signed by ``axcodes``. The origin is rounded to ``origin_step`` mm (exactly
    representable in float32) so NIfTI headers written by different libraries agree to the bit."""
    d = direction_from_axcodes(axcodes)
    lo, hi = np.asarray(box_min, float), np.asarray(box_max, float)
    size, spacing, origin = [], [], np.zeros(3)
    for col in range(3):
        axis = int(np.argmax(np.abs(d[:, col])))
        sp = float(spacing_lps[axis])
        n = max(int(np.ceil((hi[axis] - lo[axis]) / sp)), 1)
        size.append(n)
        spacing.append(sp)
        # Index 0 sits at the box's low end for an axis pointing to +world, at its high end otherwise.
        origin[axis] = lo[axis] if d[axis, col] > 0 else lo[axis] + (n - 1) * sp
    origin = np.round(origin / origin_step) * origin_step
    return Grid(tuple(size), tuple(spacing), tuple(float(v) for v in origin), tuple(float(v) for v in d.ravel()),
                axcodes.upper())


def grid_of_image(image: sitk.Image) -> Grid:
    d = np.array(image.GetDirection()).reshape(3, 3)
    codes = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection())
    return Grid(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(d.ravel()), codes)
