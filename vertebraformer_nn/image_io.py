"""The project's one image-I/O module: volumes from NIfTI/NRRD/MHA files and DICOM series, written back atomically.

Everything that reads or writes a CT or a label map goes through here, so that every part of the pipeline agrees on
geometry (SimpleITK's LPS world, spacing/origin/direction exactly as stored) and every bad input fails the same way:
an :class:`ImageReadError` whose message names the file or folder and the problem.

DICOM series are found with GDCM (SimpleITK's ``ImageSeriesReader.GetGDCMSeriesIDs``), described from pydicom header
reads, chosen by the rule in ``docs/source_layouts.md`` ("DICOM cohort") and read with SimpleITK, slices ordered by
their position along the slice normal, never by file name.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .atomic import atomic_path

__all__ = [
    "ImageReadError",
    "IMAGE_SUFFIXES",
    "is_image_file",
    "read_image",
    "read_label",
    "DicomSeries",
    "list_dicom_series",
    "choose_series",
    "read_dicom_series",
    "write_image",
    "reorient",
    "orientation",
    "grid_mismatch",
    "write_dicom_series",
    "FRAME_OF_REFERENCE_KEY",
]


class ImageReadError(ValueError):
    """An input that cannot be used as a CT volume or label map; the message names the path and the problem."""


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# Series choice (docs/source_layouts.md, "DICOM cohort").
MIN_SLICES = 8
AXIAL_MAX_ANGLE_DEG = 10.0
# Slice gaps may differ by this fraction of the median gap (DS values carry rounding) and still count as uniform.
UNIFORM_REL_TOL = 0.01
UNIFORM_ABS_TOL_MM = 1e-3

_SITK_ORIENT = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def is_image_file(path) -> bool:
    """True for an existing file named with one of :data:`IMAGE_SUFFIXES` (DICOM series are folders, not files)."""
    path = Path(path)
    return path.is_file() and _suffix(path) is not None and not path.name.startswith(".")


def _direction_matrix(image: sitk.Image) -> np.ndarray:
    d = image.GetDimension()
    return np.asarray(image.GetDirection(), dtype=float).reshape(d, d)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _check_volume(image: sitk.Image, path: Path, what: str = "image") -> sitk.Image:
    """A usable CT volume or label map is 3D, scalar, more than one voxel thick on every axis, with positive spacing."""
    dim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel (vector/RGB image); "
            "expected a scalar 3D volume"
        )
    if dim == 4 and image.GetSize()[3] == 1:
        # A 4D file with a single time point is still a 3D volume (some NIfTI writers add the axis).
        image = image[:, :, :, 0]
        dim = 3
    if dim != 3:
        raise ImageReadError(f"{path}: {what} is {dim}D with size {image.GetSize()}; expected a 3D volume")
    size = image.GetSize()
    if min(size) < 2:
        raise ImageReadError(f"{path}: {what} has size {size}, a single slice (2D image); expected a 3D volume")
    spacing = image.GetSpacing()
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ImageReadError(f"{path}: {what} has missing or zero voxel spacing {_fmt(spacing)}")
    if not np.all(np.isfinite(image.GetOrigin())) or not np.all(np.isfinite(image.GetDirection())):
        raise ImageReadError(f"{path}: {what} has a non-finite origin or direction")
    return image


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------


def read_image(path, series_uid: str | None = None) -> sitk.Image:
    """Read a 3D volume from an image file, a single (multi-frame) DICOM file, or a folder holding DICOM series.

    For a folder, ``series_uid`` picks the series; without it :func:`choose_series` applies the documented rule.
    Geometry is returned exactly as stored. Raises :class:`ImageReadError` naming the path and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: does not exist")
    if path.is_dir():
        series = list_dicom_series(path)
        if series_uid is not None:
            matching = [s for s in series if s.series_uid == series_uid]
            if not matching:
                known = ", ".join(repr(s.series_uid) for s in series) or "none"
                raise ImageReadError(f"{path}: no DICOM series with SeriesInstanceUID {series_uid!r} (found: {known})")
            # The same UID in several folders (a series split on export): the rule picks among them.
            chosen = matching[0] if len(matching) == 1 else choose_series(matching, source=str(path))
        else:
            chosen = choose_series(series, source=str(path))
        return read_dicom_series(chosen)
    if series_uid is not None:
        raise ImageReadError(f"{path}: series_uid is only meaningful for a folder of DICOM series")
    if _suffix(path) is not None:
        return _read_image_file(path)
    return _read_dicom_file(path)


def _read_image_file(path: Path) -> sitk.Image:
    _check_nifti_spacing(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable image file ({_error_summary(e)})") from None
    image = _check_volume(image, path)
    if _suffix(path) in (".nii", ".nii.gz") and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = _restore_nifti_non_finite(image, path)
    return image


def _restore_nifti_non_finite(image: sitk.Image, path: Path) -> sitk.Image:
    """ITK's NIfTI reader turns NaN and infinite voxel values into 0 (measured with SimpleITK 2.5.7 / ITK 5.4, on
    files written by ITK and by nibabel; NRRD and MHA keep them), so a broken float NIfTI would pass as a valid
    image. nibabel reads the stored values: put the non-finite ones back, so that a NIfTI file reads as what it
    holds, as the other formats do, and the callers' finiteness checks see them."""
    import nibabel as nib

    try:
        nifti = nib.load(str(path))
        if nifti.get_data_dtype().kind != "f":  # integers scaled to float by scl_slope: never NaN, not read twice
            return image
        stored = np.asanyarray(nifti.dataobj)  # (x, y, z[, 1...]); ITK keeps this voxel order
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError):
        return image  # ITK read it; a file nibabel cannot parse stays as ITK read it
    stored = stored.reshape(stored.shape[:3])  # _check_volume allowed only trailing singleton axes
    bad = ~np.isfinite(stored)
    if not bad.any():
        return image
    array = sitk.GetArrayFromImage(image)
    array[bad.T] = stored.T[bad.T]
    restored = sitk.GetImageFromArray(array)
    restored.CopyInformation(image)
    for key in image.GetMetaDataKeys():
        restored.SetMetaData(key, image.GetMetaData(key))
    return restored


def _check_nifti_spacing(path: Path) -> None:
    """ITK and nibabel silently turn a NIfTI pixdim of 0 ('spacing unknown') into 1 mm; refuse it instead.

    The raw header is parsed here because both libraries patch the value while loading."""
    if _suffix(path) not in (".nii", ".nii.gz"):
        return
    opener = gzip.open if _suffix(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
    except (OSError, EOFError) as e:
        raise ImageReadError(f"{path}: unreadable NIfTI file ({_error_summary(e)})") from None
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:  # NIfTI-1
            ndim = struct.unpack(endian + "h", header[40:42])[0]
            pixdim = struct.unpack(endian + "8f", header[76:108])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:  # NIfTI-2
            ndim = struct.unpack(endian + "q", header[16:24])[0]
            pixdim = struct.unpack(endian + "8d", header[104:168])
            break
    else:
        raise ImageReadError(f"{path}: unreadable NIfTI file (bad header size field: not NIfTI-1 or NIfTI-2)")
    spatial = [float(p) for p in pixdim[1 : 1 + max(1, min(int(ndim), 3))]]
    if any(not math.isfinite(p) or p == 0 for p in spatial):
        raise ImageReadError(f"{path}: missing or zero voxel spacing in the NIfTI header (pixdim {_fmt(spatial)})")


def _error_summary(error: Exception) -> str:
    """The informative line of a library error: ITK's "ITK ERROR: <filter>: <what>" or "sitk::ERROR: <what>" line,
    without the source-file location; otherwise the last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        for marker in ("ITK ERROR:", "sitk::ERROR:"):
            if marker in line:
                text = line.split(marker, 1)[1].strip()
                # "MetaImageIO(0x55d0...): File cannot be read" -> drop the object address.
                head, sep, tail = text.partition("): ")
                return (tail if sep and "(0x" in head else text)[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _read_dicom_file(path: Path) -> sitk.Image:
    """One DICOM file: a multi-frame CT (Enhanced or legacy-converted) holds a volume; a single slice is 2D."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:
        raise ImageReadError(
            f"{path}: not an image file of {', '.join(IMAGE_SUFFIXES)} and not DICOM ({_error_summary(e)})"
        ) from None
    if "Rows" not in ds:  # stop_before_pixels leaves PixelData out; every image has Rows
        raise ImageReadError(f"{path}: DICOM file without pixel data (modality {ds.get('Modality', '?')})")
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT":
        raise ImageReadError(
            f"{path}: DICOM {modality or 'file without Modality'} ({ds.get('SOPClassUID', UID('')).name or '?'}), "
            "not a CT image"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames < 2:
        raise ImageReadError(
            f"{path}: a single DICOM slice (2D image); pass the folder holding the whole series instead"
        )
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _read_enhanced_multiframe(path, ds)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable DICOM file ({_error_summary(e)})") from None
    return _check_volume(image, path)


def _frame_geometry(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(positions n x 3, orientation 6, pixel spacing) of the frames of a multi-frame DICOM (functional groups)."""
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    positions, orientations, spacings = [], [], []
    for frame in ds.PerFrameFunctionalGroupsSequence:

        def item(name, frame=frame):
            seq = frame.get(name) or shared.get(name)
            return seq[0] if seq else None

        pos, ori, meas = item("PlanePositionSequence"), item("PlaneOrientationSequence"), item("PixelMeasuresSequence")
        if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
            raise ImageReadError(f"{path}: multi-frame DICOM without per-frame position, orientation or pixel spacing")
        positions.append([float(v) for v in pos.ImagePositionPatient])
        orientations.append([float(v) for v in ori.ImageOrientationPatient])
        spacings.append(tuple(float(v) for v in meas.PixelSpacing))
    orientations = np.asarray(orientations)
    if np.abs(orientations - orientations[0]).max() > 1e-4 or len(set(spacings)) != 1:
        raise ImageReadError(f"{path}: frames of the multi-frame DICOM differ in orientation or pixel spacing")
    return np.asarray(positions), orientations[0], spacings[0]


def _read_enhanced_multiframe(path: Path, ds: Dataset) -> sitk.Image:
    """Multi-frame CT: pixels decoded by SimpleITK/GDCM, geometry rebuilt from the per-frame functional groups.

    GDCM's geometry for Enhanced objects assumes frames are stored in position order; here they are sorted by their
    position along the slice normal, like the slices of a series."""
    positions, iop, (row_spacing, col_spacing) = _frame_geometry(ds, path)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    problem = _spacing_problem(gaps, positions[order], normal)
    if problem:
        raise ImageReadError(f"{path}: multi-frame DICOM frames are not a uniform volume ({problem})")
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        raw = reader.Execute()
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable DICOM file ({_error_summary(e)})") from None
    array = sitk.GetArrayFromImage(raw)
    if array.ndim != 3 or array.shape[0] != len(along):
        raise ImageReadError(f"{path}: decoded {array.shape} pixels for {len(along)} frames")
    image = sitk.GetImageFromArray(array[order])
    image.SetSpacing((col_spacing, row_spacing, float(np.median(gaps))))
    image.SetOrigin(tuple(positions[order[0]]))
    image.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    image = _narrow_integer_type(_check_volume(image, path))
    _tag_dicom_identity(image, ds)
    return image


def read_label(path) -> sitk.Image:
    """Read a label map like :func:`read_image`, then insist on integral values.

    Float label maps (VerSe ships float64 masks) whose values are all integers are rounded to the smallest integer
    type that holds them; any non-integral value is an error."""
    path = Path(path)
    image = read_image(path)
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(image)
        if not np.all(np.isfinite(array)):
            raise ImageReadError(f"{path}: label map holds NaN or infinite values")
        rounded = np.round(array)
        bad = np.abs(array - rounded) > 1e-3
        if bad.any():
            example = float(array[bad].flat[0])
            raise ImageReadError(
                f"{path}: label map holds non-integral values (e.g. {example:g} in {int(bad.sum())} voxels); "
                "expected integer label codes"
            )
        out = sitk.GetImageFromArray(rounded.astype(_smallest_int_dtype(rounded, path)))
        out.CopyInformation(image)
        return out
    if image.GetPixelID() not in _INTEGER_PIXEL_IDS:
        raise ImageReadError(f"{path}: label map has pixel type {image.GetPixelIDTypeAsString()}; expected integers")
    return image


_INTEGER_PIXEL_IDS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64,
}


def _smallest_int_dtype(values: np.ndarray, path: Path) -> type:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    raise ImageReadError(f"{path}: label values {lo:g}..{hi:g} do not fit a 64-bit integer")


# --------------------------------------------------------------------------------------------------------------------
# DICOM series: listing, choosing, reading
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class DicomSeries:
    """One DICOM series in one folder, described from its headers (``files`` sorted along the slice normal)."""

    series_uid: str
    folder: Path
    files: list[Path]
    modality: str
    image_type: tuple[str, ...]
    description: str
    n_slices: int
    slice_spacing: float | None
    is_localizer: bool
    is_axial: bool
    uniform: bool
    reason_rejected: str | None = None
    series_number: int | None = field(default=None, compare=False)

    def summary(self) -> str:
        spacing = f"{self.slice_spacing:g} mm" if self.slice_spacing is not None else "unknown spacing"
        return (
            f"series {self.series_uid or '(no SeriesInstanceUID)'} in {self.folder} "
            f"({self.modality or '?'}, '{self.description}', {self.n_slices} slices, {spacing})"
        )


def list_dicom_series(folder) -> list[DicomSeries]:
    """Every DICOM series below ``folder`` (recursive), one entry per series and folder, sorted by folder then UID.

    GDCM groups the files of a folder by SeriesInstanceUID; pydicom reads their headers (no pixels) to describe
    each series and order its slices by position along the slice normal."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder")
    found: list[DicomSeries] = []
    for sub in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        if not any(p.is_file() for p in sub.iterdir()):
            continue
        for uid, files in sorted(_gdcm_series(sub), key=lambda item: item[0]):
            found.append(_describe_series(uid, sub, files))
    return found


def _gdcm_series(folder: Path) -> list[tuple[str, list[Path]]]:
    """GDCM's series in one folder (not recursive), as (series id, files); GDCM's id is the SeriesInstanceUID."""
    # GDCM prints "No Series were found" for every folder without DICOM files; that is not news here.
    warnings_were_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        reader = sitk.ImageSeriesReader()
        series = []
        for uid in reader.GetGDCMSeriesIDs(str(folder)):
            files = [Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), uid)]
            if files:
                series.append((uid, files))
        return series
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_were_on)


def _read_headers(files: list[Path]) -> list[tuple[Path, Dataset]]:
    headers = []
    for f in files:
        try:
            headers.append((f, pydicom.dcmread(str(f), stop_before_pixels=True)))
        except Exception:
            continue  # GDCM listed it; a header pydicom cannot parse is left out and counted as missing below
    return headers


def _describe_series(uid: str, folder: Path, files: list[Path]) -> DicomSeries:
    headers = _read_headers(files)
    first = headers[0][1] if headers else Dataset()
    modality = str(first.get("Modality", "") or "")
    image_type = tuple(str(v) for v in (first.get("ImageType") or ()))
    description = str(first.get("SeriesDescription", "") or "")
    number = first.get("SeriesNumber")
    frames = int(first.get("NumberOfFrames", 1) or 1)
    n_slices = frames if len(headers) == 1 else len(headers)

    sorted_files, spacing, axial, geometry_problem = _slice_geometry(headers)
    uniform = geometry_problem is None
    localizer = "LOCALIZER" in {t.upper() for t in image_type} or n_slices < MIN_SLICES

    reasons = []
    if len(headers) < len(files):
        reasons.append(f"{len(files) - len(headers)} of {len(files)} files have unreadable headers")
    if modality != "CT":
        reasons.append(f"modality {modality or 'missing'}, not CT")
    if "LOCALIZER" in {t.upper() for t in image_type}:
        reasons.append("localizer (ImageType contains LOCALIZER)")
    elif n_slices < MIN_SLICES:
        reasons.append(f"localizer-like: only {n_slices} slices (fewer than {MIN_SLICES})")
    if geometry_problem is None and not axial:
        reasons.append(f"not axial (slice normal more than {AXIAL_MAX_ANGLE_DEG:g} degrees from the head-foot axis)")
    if geometry_problem is not None:
        reasons.append(geometry_problem)
    return DicomSeries(
        series_uid=uid,
        folder=folder,
        files=sorted_files if sorted_files else list(files),
        modality=modality,
        image_type=image_type,
        description=description,
        n_slices=n_slices,
        slice_spacing=spacing,
        is_localizer=localizer,
        is_axial=axial,
        uniform=uniform,
        reason_rejected="; ".join(reasons) if reasons else None,
        series_number=int(number) if number not in (None, "") else None,
    )


def _slice_geometry(headers: list[tuple[Path, Dataset]]) -> tuple[list[Path], float | None, bool, str | None]:
    """Files sorted along the slice normal, the slice spacing, whether axial, and what (if anything) is wrong."""
    if not headers:
        return [], None, False, "no readable DICOM headers"
    if len(headers) == 1 and int(headers[0][1].get("NumberOfFrames", 1) or 1) > 1:
        return _multiframe_geometry(*headers[0])
    try:
        iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in headers])
        ipps = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    except (AttributeError, TypeError, ValueError):
        return [f for f, _ in headers], None, False, "slices without ImagePositionPatient/ImageOrientationPatient"
    if iops.shape[1] != 6 or ipps.shape[1] != 3:
        return [f for f, _ in headers], None, False, "malformed ImagePositionPatient/ImageOrientationPatient"
    normal = np.cross(iops[0, :3], iops[0, 3:])
    along = ipps @ normal
    order = np.argsort(along, kind="stable")
    files = [headers[i][0] for i in order]
    axial = _is_axial(normal)
    if np.abs(iops - iops[0]).max() > 1e-4:
        return files, None, axial, "slices with different orientations"
    if "PixelSpacing" not in headers[0][1]:
        return files, None, axial, "no PixelSpacing (missing spacing)"
    if len(headers) < 2:
        return files, None, axial, "a single slice"
    gaps = np.diff(along[order])
    return files, float(np.median(gaps)), axial, _spacing_problem(gaps, ipps[order], normal)


def _multiframe_geometry(path: Path, ds: Dataset) -> tuple[list[Path], float | None, bool, str | None]:
    try:
        positions, iop, _ = _frame_geometry(ds, path)
    except ImageReadError as e:
        return [path], None, False, str(e).split(": ", 1)[-1]
    normal = np.cross(iop[:3], iop[3:])
    along = np.sort(positions @ normal)
    gaps = np.diff(along)
    order = np.argsort(positions @ normal, kind="stable")
    return [path], float(np.median(gaps)), _is_axial(normal), _spacing_problem(gaps, positions[order], normal)


def _is_axial(normal: np.ndarray) -> bool:
    cos = abs(float(normal[2])) / max(float(np.linalg.norm(normal)), 1e-12)
    return cos >= math.cos(math.radians(AXIAL_MAX_ANGLE_DEG))


def _spacing_problem(gaps: np.ndarray, sorted_positions: np.ndarray, normal: np.ndarray) -> str | None:
    """Why slices at these sorted positions do not form a regular grid, or None when they do."""
    if len(gaps) == 0:
        return "a single slice"
    median = float(np.median(gaps))
    if gaps.min() <= UNIFORM_ABS_TOL_MM:
        return "duplicate slice positions (several acquisitions or phases in one series)"
    tol = max(UNIFORM_REL_TOL * median, UNIFORM_ABS_TOL_MM)
    if np.abs(gaps - median).max() > tol:
        return f"non-uniform slice spacing (gaps {gaps.min():g} to {gaps.max():g} mm: missing slices?)"
    # Slices must stack along their own normal; an in-plane drift means gantry tilt (a sheared grid).
    steps = np.diff(sorted_positions, axis=0)
    in_plane = steps - np.outer(steps @ normal, normal)
    if np.linalg.norm(in_plane, axis=1).max() > tol:
        return "slices not stacked along their normal (gantry tilt or shear)"
    return None


def choose_series(series: list[DicomSeries], source: str = "") -> DicomSeries:
    """Pick the series the documented rule prefers: CT, not a localizer, axial, uniformly spaced; then the thinnest
    slice spacing, then the most slices. Raises :class:`ImageReadError` listing every series and why it was rejected."""
    where = source or "DICOM input"
    if not series:
        raise ImageReadError(f"{where}: no DICOM series found (empty folder or no DICOM files)")
    eligible = [s for s in series if s.reason_rejected is None]
    if not eligible:
        lines = "\n".join(f"  - {s.summary()}: {s.reason_rejected}" for s in series)
        raise ImageReadError(f"{where}: no usable CT series among {len(series)}:\n{lines}")
    return min(eligible, key=lambda s: (s.slice_spacing, -s.n_slices, str(s.folder), s.series_uid))


def read_dicom_series(series: DicomSeries) -> sitk.Image:
    """Read a series with SimpleITK/GDCM (HU through RescaleSlope/Intercept), slices in position order."""
    where = f"{series.folder} (series {series.series_uid or '(no SeriesInstanceUID)'})"
    if len(series.files) == 1:
        return _read_dicom_file(series.files[0])
    if not series.uniform:
        raise ImageReadError(f"{where}: {series.reason_rejected or 'slices do not form a uniform volume'}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise ImageReadError(f"{where}: unreadable DICOM series ({_error_summary(e)})") from None
    image = _check_volume(image, Path(where))
    first = _verify_slice_positions(image, series, where)
    image = _narrow_integer_type(image)
    _tag_dicom_identity(image, first)
    return image


# SimpleITK's own key convention for DICOM tags in an image's metadata dictionary. Images read from DICOM carry
# these so that DICOM SEG/RTSTRUCT readers can check that an annotation belongs to this frame of reference.
FRAME_OF_REFERENCE_KEY = "0020|0052"
SERIES_INSTANCE_UID_KEY = "0020|000e"
STUDY_INSTANCE_UID_KEY = "0020|000d"


def _tag_dicom_identity(image: sitk.Image, ds: Dataset) -> None:
    for key, keyword in (
        (FRAME_OF_REFERENCE_KEY, "FrameOfReferenceUID"),
        (SERIES_INSTANCE_UID_KEY, "SeriesInstanceUID"),
        (STUDY_INSTANCE_UID_KEY, "StudyInstanceUID"),
    ):
        value = str(ds.get(keyword, "") or "")
        if value:
            image.SetMetaData(key, value)


def _narrow_integer_type(image: sitk.Image) -> sitk.Image:
    """GDCM widens uint16 + negative intercept to int32; CT HU fit int16, which halves the memory of a big volume."""
    if image.GetPixelID() not in (sitk.sitkInt32, sitk.sitkUInt32, sitk.sitkInt64, sitk.sitkUInt64):
        return image
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if -32768 <= stats.GetMinimum() and stats.GetMaximum() <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return image


def _verify_slice_positions(image: sitk.Image, series: DicomSeries, where: str) -> Dataset:
    """The volume's first and last slice must sit where the headers put them (guards against a silent reorder).
    Returns the first slice's header."""
    headers = []
    for index, f in ((0, series.files[0]), (image.GetSize()[2] - 1, series.files[-1])):
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        got = np.array(image.TransformIndexToPhysicalPoint((0, 0, int(index))))
        if np.linalg.norm(got - ipp) > max(1e-3, 0.01 * image.GetSpacing()[2]):
            raise ImageReadError(f"{where}: slice {index} lies at {_fmt(got)}, its header says {_fmt(ipp)}")
        headers.append(ds)
    return headers[0]


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------


def write_image(image: sitk.Image, path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the suffix), atomically: nothing half-written is ever visible.

    The file(s) are written into a temporary folder beside the target and moved into place with ``os.replace``;
    for two-file formats (.mhd/.nhdr) the data file moves first and the header last."""
    path = Path(path)
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{path}: write_image needs a SimpleITK image, got {type(image).__name__}")
    if _suffix(path) is None:
        raise ValueError(f"{path}: unsupported image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        sitk.WriteImage(image, str(tmp_dir / path.name), useCompression=compress)
        written = sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name)  # header (the named file) last
        for f in written:
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def reorient(image: sitk.Image, orientation: str = "RAS") -> sitk.Image:
    """Permute/flip axes (no resampling) so the axes point to ``orientation`` (DICOM letters, as nnU-Net's
    SimpleITKIOWithReorient: 'RAS' gives direction diag(-1, -1, 1)). Every voxel keeps its physical point."""
    return sitk.DICOMOrient(image, orientation.upper())


def orientation(image: sitk.Image) -> str:
    """Axis codes of ``image`` ('LPS' for the identity direction, 'PIR' for VerSe's usual scanner orientation)."""
    return _SITK_ORIENT(image.GetDirection())


def grid_mismatch(a: sitk.Image, b: sitk.Image, origin_tol_mm: float = 1e-3, rel_tol: float = 1e-4) -> str | None:
    """None when ``a`` and ``b`` share a voxel grid, else a short human-readable reason."""
    if a.GetDimension() != b.GetDimension():
        return f"dimension {a.GetDimension()} vs {b.GetDimension()}"
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if np.any(np.abs(sa - sb) > rel_tol * np.maximum(sa, sb)):
        return f"spacing {_fmt(sa)} vs {_fmt(sb)}"
    dir_diff = float(np.abs(np.array(a.GetDirection()) - np.array(b.GetDirection())).max())
    if dir_diff > rel_tol:
        return f"direction differs ({orientation(a)} vs {orientation(b)}, largest cosine difference {dir_diff:.3g})"
    shift = float(np.linalg.norm(np.array(a.GetOrigin()) - np.array(b.GetOrigin())))
    if shift > origin_tol_mm:
        return f"origin differs by {shift:.3g} mm"
    return None


def write_dicom_series(
    image: sitk.Image,
    folder,
    *,
    patient_id: str = "ANON",
    patient_name: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    convolution_kernel: str | None = None,
    slice_thickness: float | None = None,
    shuffle_file_names: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a 3D CT volume as a CT Image Storage series, one file per slice, returned in position order.

    Geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, spacing between slices) comes from the
    SimpleITK image, whatever its direction. A left-handed direction (third axis opposite to row x column) cannot be
    stored in DICOM; such a volume is written with its slices in the order along the normal, so it reads back as the
    same physical image with the third axis flipped. Values are rounded to integers (HU) and stored as uint16 with
    RescaleIntercept -1024 when they fit (scanner style), else int16 with intercept 0. UIDs not given are derived
    deterministically from ``patient_id`` and ``seed``. With ``shuffle_file_names`` file-name order differs from
    slice order (a test of every reader's sorting).
    """
    folder = Path(folder)
    image = _check_volume(image, folder, what="image to write")
    image = _right_handed(image)
    stored, pixel_repr, intercept = _stored_pixels(image, folder)

    def uid(*parts) -> str:
        return generate_uid(entropy_srcs=["vertebraformer", patient_id, str(seed), *map(str, parts)])

    study_uid = study_instance_uid or uid("study")
    series_uid = series_instance_uid or uid("series", series_number, series_description)
    for_uid = frame_of_reference_uid or uid("frame-of-reference")
    nx, ny, nz = image.GetSize()
    sx, sy, sz = image.GetSpacing()
    direction = _direction_matrix(image)
    iop = [*direction[:, 0], *direction[:, 1]]
    names = _slice_file_names(nz, series_number, series_uid, shuffle_file_names, seed)

    base = _series_dataset(
        patient_id=patient_id, patient_name=patient_name if patient_name is not None else f"{patient_id}^",
        study_uid=study_uid, series_uid=series_uid, for_uid=for_uid, series_number=series_number,
        description=series_description, image_type=image_type, kernel=convolution_kernel,
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(nz):
        ds = _slice_dataset(base, uid(series_uid, "instance", k))
        ds.InstanceNumber = k + 1
        ipp = image.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]  # DICOM: row spacing (between rows) first
        ds.SliceThickness = _ds(slice_thickness if slice_thickness is not None else sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.SliceLocation = _ds(float(np.dot(ipp, np.cross(direction[:, 0], direction[:, 1]))))
        ds.Rows, ds.Columns = ny, nx
        ds.PixelRepresentation = pixel_repr
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = "1"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        paths.append(write_dicom_dataset(ds, folder / names[k]))
    return paths


def _right_handed(image: sitk.Image) -> sitk.Image:
    """DICOM stacks slices along row x column; flip the third axis of a left-handed volume so it is right-handed."""
    d = _direction_matrix(image)
    if np.linalg.det(d) > 0:
        return image
    return sitk.Flip(image, [False, False, True], flipAboutOrigin=False)


def _stored_pixels(image: sitk.Image, folder: Path) -> tuple[np.ndarray, int, int]:
    """(stored array z,y,x, PixelRepresentation, RescaleIntercept) for integer-rounded values."""
    values = np.rint(sitk.GetArrayViewFromImage(image).astype(np.float64))
    lo, hi = float(values.min()), float(values.max())
    if lo >= -1024 and hi <= 65535 - 1024:
        return (values + 1024).astype("<u2"), 0, -1024
    if lo >= -32768 and hi <= 32767:
        return values.astype("<i2"), 1, 0
    raise ValueError(f"{folder}: values {lo:g}..{hi:g} do not fit 16-bit CT pixels")


def _slice_file_names(n: int, series_number: int, series_uid: str, shuffle: bool, seed: int) -> list[str]:
    """Per-slice file names, unique per series; shuffled names never run in slice order (for n > 1)."""
    tag = hashlib.sha1(series_uid.encode()).hexdigest()[:6]
    numbers = np.arange(n)
    if shuffle and n > 1:
        rng = np.random.default_rng(seed)
        # Neither in order nor simply reversed (for n > 2), so a reader that trusts names in either direction fails.
        while np.array_equal(numbers, np.arange(n)) or (n > 2 and np.array_equal(numbers, np.arange(n)[::-1])):
            numbers = rng.permutation(n)
    return [f"{series_number:03d}_{tag}_{int(i) + 1:04d}.dcm" for i in numbers]


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) as precise as the VR allows."""
    value = float(value)
    if value == 0 or abs(value) < 1e-12:
        return "0"
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.6e}"


def _series_dataset(*, patient_id, patient_name, study_uid, series_uid, for_uid, series_number, description,
                    image_type, kernel) -> Dataset:
    """The attributes every slice of the series shares (Patient, Study, Series, Frame of Reference, Equipment)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = list(image_type)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "VertebraFormer-nn"
    ds.ManufacturerModelName = "MultiSpine-Sim"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.KVP = "120"
    if kernel:
        ds.ConvolutionKernel = kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return ds


def _slice_dataset(base: Dataset, sop_instance_uid: str) -> Dataset:
    ds = copy.deepcopy(base)
    ds.SOPInstanceUID = sop_instance_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_dicom_dataset(ds: Dataset, path) -> Path:
    """Save a pydicom dataset atomically (temp file in the same folder, then rename); creates parent folders."""
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return Path(path)
