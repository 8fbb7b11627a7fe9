"""DICOM SEG read onto a reference image's grid, whatever wrote it (highdicom, dcmqi / 3D Slicer, a PACS).

* **Placement.** Every frame is placed by its own plane position (PlanePositionSequence, per-frame or shared
  functional group), never by frame order; a SEG may cover part of the CT, and the reference may be in another axis
  order. A frame without a position is placed where the source image it was derived from lies
  (DerivationImageSequence > SourceImageSequence > ReferencedSOPInstanceUID), which needs that series' files.
  Orientation and pixel spacing come from the per-frame group, else the shared one.
* **Encoding.** BINARY: a set bit is inside. FRACTIONAL (PROBABILITY or OCCUPANCY): inside when the stored value is at
  least half of MaximumFractionalValue, i.e. a probability or occupancy of 0.5 or more. LABELMAP: the pixel value is
  the segment number.
* **Memory.** Frames are decoded one at a time (pydicom), only for the segments asked for; what is held is the
  output mask, never frames x rows x cols x segments.

A frame off the reference grid, outside it, or naming a segment the file does not describe is an
:class:`ImageReadError` naming the file and the frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.sr.coding import Code
from pydicom.uid import SegmentationStorage

from ..image_io import ImageReadError
from .common import GRID_TOL_VOXELS, as_image, check_frame_of_reference, read_annotation

__all__ = ["read_seg", "SegReader", "SegSegment"]


@dataclass(frozen=True)
class SegSegment:
    """What a segment says it is (SegmentSequence item): number, label and coded meaning."""

    number: int
    label: str
    description: str = ""
    category: Code | None = None
    property_type: Code | None = None
    type_modifiers: tuple[Code, ...] = ()
    anatomic_regions: tuple[Code, ...] = ()

    def describe(self) -> str:
        coded = f", {self.property_type.meaning} ({self.property_type.scheme_designator} " \
                f"{self.property_type.value})" if self.property_type is not None else ""
        return f"segment {self.number} '{self.label}'{coded}"


@dataclass(frozen=True)
class _Frame:
    index: int
    segment: int | None  # None in a LABELMAP: pixel values are segment numbers
    where: tuple  # numpy basic index into the (z, y, x) reference array
    transpose: bool  # the frame's (rows, cols) run along the target view's (second, first) axes


def unpacked_frame(ds: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` of uncompressed 1-bit pixel data. Frames are packed back to back, so when rows x columns is not
    a multiple of 8 a frame starts inside a byte, which pydicom 3.0's ``pixel_array(index=...)`` gets wrong."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    start = index * rows * cols
    data = np.frombuffer(ds.PixelData, np.uint8, count=(start + rows * cols + 7) // 8 - start // 8, offset=start // 8)
    bits = np.unpackbits(data, bitorder="little")[start % 8: start % 8 + rows * cols]
    return bits.reshape(rows, cols)


class SegReader:
    """One SEG file against one reference grid: :attr:`segments`, and :meth:`mask` decoding only what it needs."""

    def __init__(self, path, reference: sitk.Image, reference_files: Sequence[Path] | None = None):
        self.path = Path(path)
        self.reference = reference
        self.ds = read_annotation(self.path, "SEG", SegmentationStorage)
        check_frame_of_reference(self.path, self.ds.get("FrameOfReferenceUID"), reference)
        self.kind = str(self.ds.get("SegmentationType", "BINARY")).upper()
        self.segments = [_segment(item) for item in self.ds.get("SegmentSequence") or []]
        if not self.segments:
            raise ImageReadError(f"{self.path}: SEG without a SegmentSequence (no segment is described)")
        self._numbers = {s.number for s in self.segments}
        self._frames = self._frame_table(reference_files)

    # ------------------------------------------------------------------------------------------------ frames
    def _frame_table(self, reference_files) -> list[_Frame]:
        ds, path = self.ds, self.path
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is None or len(per_frame) != n_frames:
            raise ImageReadError(f"{path}: SEG without one PerFrameFunctionalGroupsSequence item per frame")
        sources = None
        frames = []
        for i, item in enumerate(per_frame):
            what = f"frame {i + 1}"
            segment = None
            if self.kind != "LABELMAP":
                segment = _functional(item, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
                if segment is None:
                    raise ImageReadError(f"{path}: {what} has no SegmentIdentificationSequence (which segment?)")
                if segment not in self._numbers:
                    raise ImageReadError(f"{path}: {what} refers to segment {segment}, which the SEG does not describe")
            ipp = _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient")
            iop = _functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
            spacing = _functional(item, shared, "PixelMeasuresSequence", "PixelSpacing")
            if ipp is None or iop is None or spacing is None:
                if sources is None:
                    sources = _source_geometry(reference_files, path)
                source = sources.get(_source_uid(item, shared))
                if source is None:
                    raise ImageReadError(
                        f"{path}: {what} has no plane position and no source image among the CT's files "
                        f"({'no CT files given' if not reference_files else 'its SourceImageSequence names none'})")
                ipp = ipp if ipp is not None else source[0]
                iop = iop if iop is not None else source[1]
                spacing = spacing if spacing is not None else source[2]
            where, transpose = _frame_slices(self.reference, ipp, iop, spacing, (int(ds.Rows), int(ds.Columns)),
                                             path, what)
            frames.append(_Frame(i, segment, where, transpose))
        return frames

    def _decoded(self, index: int) -> np.ndarray:
        try:
            if int(self.ds.get("BitsAllocated", 8)) == 1 and not self.ds.file_meta.TransferSyntaxUID.is_compressed:
                return unpacked_frame(self.ds, index)
            return pixel_array(self.ds, index=index)
        except Exception as e:
            raise ImageReadError(f"{self.path}: cannot decode frame {index + 1} of the SEG pixel data ({e})") from None

    def _inside(self, frame: np.ndarray, segments: set[int]) -> np.ndarray:
        if self.kind == "FRACTIONAL":
            # Stored 0..MaximumFractionalValue: inside at a probability or occupancy of 0.5 or more.
            return frame.astype(np.float64) * 2 >= float(self.ds.get("MaximumFractionalValue", 255))
        if self.kind == "LABELMAP":
            return np.isin(frame, list(segments))
        return frame > 0

    # ------------------------------------------------------------------------------------------------ masks
    def mask(self, numbers: Iterable[int]) -> np.ndarray:
        """The union of segments ``numbers`` as a boolean (z, y, x) array on the reference grid."""
        wanted = set(int(n) for n in numbers)
        unknown = wanted - self._numbers
        if unknown:
            raise KeyError(f"{self.path}: no segment {sorted(unknown)}")
        out = np.zeros(self.reference.GetSize()[::-1], dtype=bool)
        for frame in self._frames:
            if frame.segment is not None and frame.segment not in wanted:
                continue
            inside = self._inside(self._decoded(frame.index), wanted)
            out[frame.where] |= inside.T if frame.transpose else inside
        return out


def read_seg(path, reference: sitk.Image, reference_files: Sequence[Path] | None = None) -> dict[str, sitk.Image]:
    """Segment label -> uint8 mask on ``reference``'s grid (segments that share a label are merged); see the module
    docstring. ``reference_files``: the CT series' files, needed only for frames without a plane position."""
    reader = SegReader(path, reference, reference_files)
    numbers: dict[str, list[int]] = {}
    for segment in reader.segments:
        numbers.setdefault(segment.label, []).append(segment.number)
    return {label: as_image(reader.mask(n), reference) for label, n in numbers.items()}


# ------------------------------------------------------------------------------------------------ helpers
def _code(item: Dataset | None) -> Code | None:
    if item is None or "CodeValue" not in item and "LongCodeValue" not in item:
        return None
    value = item.get("CodeValue") or item.get("LongCodeValue")
    return Code(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))


def _codes(sequence) -> tuple[Code, ...]:
    return tuple(c for c in (_code(item) for item in sequence or []) if c is not None)


def _segment(item: Dataset) -> SegSegment:
    property_type = (item.get("SegmentedPropertyTypeCodeSequence") or [None])[0]
    modifiers = property_type.get("SegmentedPropertyTypeModifierCodeSequence") if property_type else None
    number = int(item.SegmentNumber)
    return SegSegment(
        number=number,
        label=str(item.get("SegmentLabel", "") or f"segment {number}"),
        description=str(item.get("SegmentDescription", "") or ""),
        category=_code((item.get("SegmentedPropertyCategoryCodeSequence") or [None])[0]),
        property_type=_code(property_type),
        type_modifiers=_codes(modifiers),
        anatomic_regions=_codes(item.get("AnatomicRegionSequence")),
    )


def _functional(item: Dataset, shared: Dataset, sequence: str, keyword: str):
    """A functional-group attribute of a frame: per-frame item first, then the shared group; None when absent."""
    for group in (item, shared):
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            value = seq[0][keyword].value
            return int(value) if keyword == "ReferencedSegmentNumber" else np.array([float(v) for v in value])
    return None


def _source_uid(item: Dataset, shared: Dataset) -> str | None:
    for group in (item, shared):
        for derivation in group.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                if source.get("ReferencedSOPInstanceUID"):
                    return str(source.ReferencedSOPInstanceUID)
    return None


def _source_geometry(files: Sequence[Path] | None, path: Path) -> dict[str, tuple]:
    """SOP instance UID -> (position, orientation, pixel spacing) of each CT file (headers only)."""
    out = {}
    for f in files or []:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
            uid = str(ds.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID") or "")
            out[uid] = tuple(np.array([float(v) for v in ds[k].value])
                             for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))
        except Exception as e:
            raise ImageReadError(f"{path}: cannot read the geometry of CT file {f} ({e})") from None
    return out


def _frame_slices(reference: sitk.Image, ipp, iop, spacing, shape, path: Path, what: str) -> tuple[tuple, bool]:
    """(numpy basic index into the (z, y, x) reference array, transpose) of the voxels under a plane's pixels.

    The plane's pixel steps must map to whole reference-voxel steps along two reference axes, and its origin onto
    a voxel centre: then the plane is one slice of the reference grid (in any axis order or direction)."""
    row_dir, col_dir = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_spacing, col_spacing = spacing
    point = tuple(map(float, ipp))
    origin = np.asarray(reference.TransformPhysicalPointToContinuousIndex(point))
    step_c = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + col_spacing * row_dir))) - origin
    step_r = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + row_spacing * col_dir))) - origin
    rounded = [np.round(v).astype(int) for v in (origin, step_c, step_r)]
    off_grid = max(np.abs(v - r).max() for v, r in zip((origin, step_c, step_r), rounded))
    unit_steps = all(np.abs(r).sum() == 1 for r in rounded[1:]) and np.abs(rounded[1] * rounded[2]).sum() == 0
    where = tuple(round(float(v), 3) for v in ipp)
    if off_grid > GRID_TOL_VOXELS or not unit_steps:
        raise ImageReadError(f"{path}: {what} at {where} mm does not fall on the reference grid "
                             f"(voxel index {tuple(round(float(v), 3) for v in origin)})")
    start, size = rounded[0], reference.GetSize()
    col_axis, row_axis = int(np.flatnonzero(rounded[1])[0]), int(np.flatnonzero(rounded[2])[0])
    index: list = [None, None, None]  # sitk axes (x, y, z)
    for axis, step, n in ((col_axis, int(rounded[1][col_axis]), shape[1]), (row_axis, int(rounded[2][row_axis]),
                                                                              shape[0])):
        last = start[axis] + step * (n - 1)
        if not (0 <= start[axis] < size[axis] and 0 <= last < size[axis]):
            raise ImageReadError(f"{path}: {what} at {where} mm lies outside the reference image")
        stop = last + step
        index[axis] = slice(start[axis], None if stop < 0 else stop, step)
    fixed = 3 - col_axis - row_axis
    if not 0 <= start[fixed] < size[fixed]:
        raise ImageReadError(f"{path}: {what} at {where} mm lies outside the reference image")
    index[fixed] = int(start[fixed])
    # numpy axes are sitk axes reversed; the view keeps the two sliced axes in numpy order
    transpose = (2 - col_axis) < (2 - row_axis)
    return tuple(index[::-1]), transpose
