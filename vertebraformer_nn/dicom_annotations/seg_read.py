"""DICOM SEG read onto a reference image's grid, every frame placed by its physical position (never by frame order)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage

from ..image_io import ImageReadError
from .common import GRID_TOL_VOXELS, as_image, check_frame_of_reference, read_annotation

__all__ = ["read_seg"]


def read_seg(path, reference: sitk.Image) -> dict[str, sitk.Image]:
    """Segment label -> uint8 mask on ``reference``'s grid.

    Frames are placed by their PlanePositionSequence (a SEG may cover only part of the CT, in any frame order);
    segments that share a label are merged. Raises :class:`ImageReadError` naming the file when it is not a SEG,
    belongs to another frame of reference, or a frame does not fall on the reference grid."""
    path = Path(path)
    ds = read_annotation(path, "SEG", SegmentationStorage)
    check_frame_of_reference(path, ds.get("FrameOfReferenceUID"), reference)
    try:
        frames = ds.pixel_array
    except Exception as e:
        raise ImageReadError(f"{path}: cannot decode the SEG pixel data ({e})") from None
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frames = np.asarray(frames).reshape(n_frames, int(ds.Rows), int(ds.Columns))
    if str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL":
        # Fractional values are stored 0..MaximumFractionalValue; inside means at least half.
        frames = frames >= (int(ds.get("MaximumFractionalValue", 255)) + 1) // 2
    labels = {
        int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}")) for s in ds.SegmentSequence
    }
    out = {label: np.zeros(reference.GetSize()[::-1], dtype=np.uint8) for label in labels.values()}
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != n_frames:
        raise ImageReadError(f"{path}: SEG without one PerFrameFunctionalGroupsSequence item per frame")
    for i, item in enumerate(per_frame):
        number = _functional(item, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber", path, i)
        ipp = _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient", path, i)
        iop = _functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient", path, i)
        spacing = _functional(item, shared, "PixelMeasuresSequence", "PixelSpacing", path, i)
        if int(number) not in labels:
            raise ImageReadError(f"{path}: frame {i + 1} refers to segment {number}, which the SEG does not describe")
        index = _frame_indices(reference, ipp, iop, spacing, frames.shape[1:], path, f"frame {i + 1}")
        target = out[labels[int(number)]]
        target[index] |= (frames[i] > 0).astype(np.uint8)
    return {label: as_image(array, reference) for label, array in out.items()}


def _functional(item: Dataset, shared: Dataset, sequence: str, keyword: str, path: Path, i: int):
    """A functional-group attribute of frame ``i``: per-frame item first, then the shared group."""
    for group in (item, shared):
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            value = seq[0][keyword].value
            return [float(v) for v in value] if keyword != "ReferencedSegmentNumber" else int(value)
    raise ImageReadError(f"{path}: frame {i + 1} has no {sequence} ({keyword})")


def _frame_indices(reference: sitk.Image, ipp, iop, spacing, shape, path: Path, what: str):
    """Numpy index arrays (z, y, x) of the reference voxels under each pixel of a plane at ``ipp``/``iop``.

    The plane's pixel steps must map to whole reference-voxel steps along two reference axes, and its origin onto
    a voxel centre: then the plane is one slice of the reference grid (in any axis order or direction)."""
    row_dir, col_dir = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_spacing, col_spacing = spacing
    origin = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(map(float, ipp))))
    step_c = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + col_spacing * row_dir))) - origin
    step_r = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + row_spacing * col_dir))) - origin
    rounded = [np.round(v) for v in (origin, step_c, step_r)]
    off_grid = max(np.abs(v - r).max() for v, r in zip((origin, step_c, step_r), rounded))
    unit_steps = all(np.abs(r).sum() == 1 for r in rounded[1:]) and np.abs(rounded[1] * rounded[2]).sum() == 0
    if off_grid > GRID_TOL_VOXELS or not unit_steps:
        raise ImageReadError(
            f"{path}: {what} at {tuple(round(float(v), 3) for v in ipp)} mm does not fall on the reference grid "
            f"(voxel index {tuple(round(float(v), 3) for v in origin)})"
        )
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    idx = rounded[0][:, None, None] + rounded[1][:, None, None] * cols + rounded[2][:, None, None] * rows
    idx = idx.astype(np.int64)
    size = np.asarray(reference.GetSize())[:, None, None]
    if (idx < 0).any() or (idx >= size).any():
        raise ImageReadError(
            f"{path}: {what} at {tuple(round(float(v), 3) for v in ipp)} mm lies outside the reference image"
        )
    return idx[2], idx[1], idx[0]
