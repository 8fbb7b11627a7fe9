"""Slices that do not stack into a regular grid: what is wrong, and the two cases made regular with a note.

Parallel slices (one orientation) sorted along their normal form a regular grid when consecutive positions step by
the same distance along the normal and not at all in-plane. Two departures are common and harmless enough to be
repaired, as dcm2niix repairs them, each with a note that the readers pass on (:func:`read_notes`):

* **Gantry tilt.** The slices stay parallel to the detector, but each is shifted in-plane by the same amount per
  millimetre along the normal (a shear; the tilt angle is its arctangent). Each slice is shifted back in-plane
  (bilinear interpolation); the regular grid shares slice 0, the row and column directions and the pixel spacing.
  Tilts up to :data:`MAX_TILT_DEG` are repaired; an in-plane drift that is not a linear shear is refused.
* **Missing slices.** A gap that is a whole multiple of the slice spacing, missing at most
  :data:`MAX_MISSING_PER_GAP` slices and at most :data:`MAX_FILLED_GAP_MM` long, is filled by linear interpolation
  between its neighbours. Decided so because such a gap (a slice lost in a PACS transfer) is thinner than an
  intervertebral disc, so interpolation cannot invent or merge a vertebra, while refusing would leave the whole scan
  unpredicted; anything longer is refused (its interpolation would be invented anatomy): re-export the series.

Duplicate positions (several acquisitions or phases in one series) and irregular spacing are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

__all__ = ["spacing_problem", "plan_regular_grid", "RegularGrid", "regularise", "add_read_note", "read_notes",
           "READ_NOTES_KEY", "MAX_TILT_DEG", "MAX_MISSING_PER_GAP", "MAX_FILLED_GAP_MM"]

# Slice gaps may differ by this fraction of the median gap (DS values carry rounding) and still count as uniform.
UNIFORM_REL_TOL = 0.01
UNIFORM_ABS_TOL_MM = 1e-3
MAX_TILT_DEG = 45.0
MAX_MISSING_PER_GAP = 2
MAX_FILLED_GAP_MM = 5.0
#: Metadata key of an image's read notes (newline-separated), SimpleITK metadata dictionary.
READ_NOTES_KEY = "vertebraformer|read_notes"


@dataclass(frozen=True)
class RegularGrid:
    """How sorted slices at ``positions`` map onto a regular grid starting at slice 0 (module docstring)."""

    origin: np.ndarray  # slice 0's position
    normal: np.ndarray
    along: np.ndarray  # each input slice's distance from slice 0 along the normal, mm
    slice_spacing: float
    n_slices: int  # of the regular grid
    shear: np.ndarray  # in-plane shift per mm along the normal (3-vector, zero without tilt)
    notes: tuple[str, ...] = field(default=())

    @property
    def is_identity(self) -> bool:
        return not self.notes


def _tolerance(spacing: float) -> float:
    return max(UNIFORM_REL_TOL * spacing, UNIFORM_ABS_TOL_MM)


def plan_regular_grid(positions: np.ndarray, row: np.ndarray, col: np.ndarray) -> RegularGrid | str:
    """The regular grid for slices at ``positions`` (sorted along the normal), or why there is none."""
    positions = np.asarray(positions, dtype=float)
    normal = np.cross(row, col)
    if len(positions) < 2:
        return "a single slice"
    along = (positions - positions[0]) @ normal
    gaps = np.diff(along)
    if gaps.min() <= UNIFORM_ABS_TOL_MM:
        return "duplicate slice positions (several acquisitions or phases in one series)"
    spacing = float(np.median(gaps))
    tol = _tolerance(spacing)
    steps = np.rint(gaps / spacing)
    if np.abs(gaps - steps * spacing).max() > tol or steps.min() < 1:
        return (f"non-uniform slice spacing (gaps {gaps.min():g} to {gaps.max():g} mm: not whole multiples of one "
                "spacing)")
    spacing = float(along[-1] / steps.sum())  # the best estimate once the gaps are known in whole steps
    notes = []
    missing = steps - 1
    if missing.any():
        worst = int(np.argmax(gaps))
        if missing.max() > MAX_MISSING_PER_GAP or gaps.max() > MAX_FILLED_GAP_MM + tol:
            return (f"non-uniform slice spacing (gaps {gaps.min():g} to {gaps.max():g} mm: missing slices; a gap of "
                    f"{gaps[worst]:g} mm after slice {worst} is more than {MAX_MISSING_PER_GAP} slices or "
                    f"{MAX_FILLED_GAP_MM:g} mm, too long to interpolate)")
        where = ", ".join(f"{int(m)} after slice {i}" for i, m in enumerate(missing) if m)
        notes.append(f"{int(missing.sum())} missing slice(s) ({where}; gaps up to {gaps.max():g} mm for "
                     f"{spacing:g} mm slices) filled by linear interpolation between their neighbours")
    in_plane = positions - positions[0] - np.outer(along, normal)
    shear = np.linalg.lstsq(along[:, None], in_plane, rcond=None)[0][0]
    if np.linalg.norm(in_plane - np.outer(along, shear), axis=1).max() > tol:
        return "slices drift in-plane irregularly (not a gantry tilt: a shear that is not linear)"
    if np.linalg.norm(in_plane, axis=1).max() <= tol:
        shear = np.zeros(3)
    else:
        angle = math.degrees(math.atan(float(np.linalg.norm(shear))))
        if angle > MAX_TILT_DEG:
            return f"slices sheared by {angle:.1f} degrees, more than a gantry tilt ({MAX_TILT_DEG:g} degrees)"
        notes.append(f"gantry tilt of {angle:.2f} degrees (slices sheared in-plane): resampled onto a regular grid "
                     "(each slice shifted back in-plane, bilinear), as dcm2niix does")
    n = int(steps.sum()) + 1
    return RegularGrid(positions[0], normal, along, spacing, n, shear, tuple(notes))


def spacing_problem(gaps: np.ndarray, sorted_positions: np.ndarray, normal: np.ndarray) -> str | None:
    """Why slices at these sorted positions do not form a regular grid as they are, or None when they do."""
    if len(gaps) == 0:
        return "a single slice"
    median = float(np.median(gaps))
    if gaps.min() <= UNIFORM_ABS_TOL_MM:
        return "duplicate slice positions (several acquisitions or phases in one series)"
    tol = _tolerance(median)
    if np.abs(gaps - median).max() > tol:
        return f"non-uniform slice spacing (gaps {gaps.min():g} to {gaps.max():g} mm: missing slices?)"
    # Slices must stack along their own normal; an in-plane drift means gantry tilt (a sheared grid).
    steps = np.diff(sorted_positions, axis=0)
    in_plane = steps - np.outer(steps @ normal, normal)
    if np.linalg.norm(in_plane, axis=1).max() > tol:
        return "slices not stacked along their normal (gantry tilt or shear)"
    return None


def regularise(stack: np.ndarray, grid: RegularGrid, row: np.ndarray, col: np.ndarray,
               pixel_spacing: tuple[float, float]) -> np.ndarray:
    """``stack`` (slices, rows, cols; sorted like the grid's positions) resampled onto ``grid``: each output slice
    interpolated linearly between its two nearest input slices along the normal, each of those shifted back
    in-plane by its shear (bilinear; pixels shifted in from outside the field of view get the volume's minimum)."""
    row_spacing, col_spacing = pixel_spacing
    fill = stack.min()
    out = np.empty((grid.n_slices, *stack.shape[1:]), dtype=stack.dtype)
    tol = _tolerance(grid.slice_spacing)
    for k in range(grid.n_slices):
        t = k * grid.slice_spacing
        b = int(np.searchsorted(grid.along, t - tol))
        a = b if abs(grid.along[b] - t) <= tol else b - 1
        weights = [(a, 1.0)] if a == b else [(a, (grid.along[b] - t) / (grid.along[b] - grid.along[a])),
                                             (b, (t - grid.along[a]) / (grid.along[b] - grid.along[a]))]
        value = np.zeros(stack.shape[1:], dtype=np.float64)
        for index, weight in weights:
            offset = grid.shear * grid.along[index]  # in-plane position of this input slice relative to the grid
            shift = (float(offset @ col) / row_spacing, float(offset @ row) / col_spacing)  # (rows, columns)
            plane = stack[index].astype(np.float64)
            if np.abs(shift).max() > 1e-6:
                # out[x] = in[x - shift]
                plane = ndimage.shift(plane, shift, order=1, mode="grid-constant", cval=float(fill))
            value += weight * plane
        out[k] = np.rint(value) if np.issubdtype(out.dtype, np.integer) else value
    return out


def add_read_note(image: sitk.Image, note: str) -> None:
    """Attach a note for the case's report (what the reader repaired) to ``image``'s metadata."""
    image.SetMetaData(READ_NOTES_KEY, "\n".join([*read_notes(image), note]))


def read_notes(image: sitk.Image) -> list[str]:
    """The notes a reader attached to ``image`` (:func:`add_read_note`); empty for most images."""
    if not image.HasMetaDataKey(READ_NOTES_KEY):
        return []
    return [line for line in image.GetMetaData(READ_NOTES_KEY).split("\n") if line]
