"""DICOM series: found, described and chosen (docs/source_layouts.md, "DICOM cohort").

Series are found with GDCM (SimpleITK's ``ImageSeriesReader.GetGDCMSeriesIDs``, one folder at a time), described
from pydicom header reads (no pixels): modality, image type, slice geometry and what, if anything, makes a series
unusable. :func:`choose_series` applies the documented rule; reading pixels is :mod:`.dicom_read`'s job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from .checks import ImageReadError

__all__ = ["DicomSeries", "list_dicom_series", "choose_series", "spacing_problem", "frame_geometry",
           "MIN_SLICES", "AXIAL_MAX_ANGLE_DEG"]

# Series choice (docs/source_layouts.md, "DICOM cohort").
MIN_SLICES = 8
AXIAL_MAX_ANGLE_DEG = 10.0
# Slice gaps may differ by this fraction of the median gap (DS values carry rounding) and still count as uniform.
UNIFORM_REL_TOL = 0.01
UNIFORM_ABS_TOL_MM = 1e-3


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
    return files, float(np.median(gaps)), axial, spacing_problem(gaps, ipps[order], normal)


def frame_geometry(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
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


def _multiframe_geometry(path: Path, ds: Dataset) -> tuple[list[Path], float | None, bool, str | None]:
    try:
        positions, iop, _ = frame_geometry(ds, path)
    except ImageReadError as e:
        return [path], None, False, str(e).split(": ", 1)[-1]
    normal = np.cross(iop[:3], iop[3:])
    along = np.sort(positions @ normal)
    gaps = np.diff(along)
    order = np.argsort(positions @ normal, kind="stable")
    return [path], float(np.median(gaps)), _is_axial(normal), spacing_problem(gaps, positions[order], normal)


def _is_axial(normal: np.ndarray) -> bool:
    cos = abs(float(normal[2])) / max(float(np.linalg.norm(normal)), 1e-12)
    return cos >= math.cos(math.radians(AXIAL_MAX_ANGLE_DEG))


def spacing_problem(gaps: np.ndarray, sorted_positions: np.ndarray, normal: np.ndarray) -> str | None:
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
