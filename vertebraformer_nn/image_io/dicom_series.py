"""DICOM series: found, described and chosen (docs/source_layouts.md, "DICOM cohort").

Series are found with GDCM (SimpleITK's ``ImageSeriesReader.GetGDCMSeriesIDs``, one folder at a time), described
from pydicom header reads (no pixels): modality, image type, slice geometry and what, if anything, makes a series
unusable. :func:`choose_series` applies the documented rule; reading pixels is :mod:`.dicom_read`'s job.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from .checks import ImageReadError, fmt
from .regular_grid import RegularGrid, plan_regular_grid

__all__ = ["DicomSeries", "list_dicom_series", "choose_series", "frame_geometry", "plane_problem", "walk_folders",
           "is_dicom_file", "series_in_folder", "MIN_SLICES", "AXIAL_MAX_ANGLE_DEG"]

# Series choice (docs/source_layouts.md, "DICOM cohort").
MIN_SLICES = 8
AXIAL_MAX_ANGLE_DEG = 10.0
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
# ImageOrientationPatient: two unit vectors at right angles, within this tolerance (DS rounding).
ORIENTATION_TOL = 1e-3


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
    #: What reading will repair (gantry tilt, a few missing slices: ``regular_grid``), else None.
    repair: str | None = field(default=None, compare=False)

    def summary(self) -> str:
        spacing = f"{self.slice_spacing:g} mm" if self.slice_spacing is not None else "unknown spacing"
        return (
            f"series {self.series_uid or '(no SeriesInstanceUID)'} in {self.folder} "
            f"({self.modality or '?'}, '{self.description}', {self.n_slices} slices, {spacing})"
        )


def list_dicom_series(folder) -> list[DicomSeries]:
    """Every DICOM series below ``folder`` (recursive, through symbolic links), one entry per series and folder,
    sorted by folder then UID.

    GDCM groups the files of a folder by SeriesInstanceUID; pydicom reads their headers (no pixels) to describe
    each series and order its slices by position along the slice normal."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder")
    found: list[DicomSeries] = []
    for sub, _, files in sorted(walk_folders(folder)):
        if not files:
            continue
        series = sorted(_gdcm_series(sub), key=lambda item: item[0])
        listed = {f.name for _, series_files in series for f in series_files}
        damaged, unparsable = _left_out(sub, [f for f in files if f not in listed])
        for uid, series_files in series:
            found.append(_describe_series(uid, sub, series_files, damaged.get(uid, []), unparsable))
    return found


def _left_out(folder: Path, names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Files GDCM left out of every series: ({series UID: files whose header names that series (GDCM cannot read
    them: truncated or corrupt)}, files that look like DICOM but whose series pydicom cannot tell: every series of
    the folder is refused for them). Other files (a DICOMDIR, an RTSTRUCT of another series, notes) are not news."""
    damaged: dict[str, list[str]] = {}
    unparsable = []
    for name in names:
        path = folder / name
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:
            if is_dicom_file(path):
                unparsable.append(name)
            continue
        if "DirectoryRecordSequence" in ds:
            continue  # a DICOMDIR
        if ds.get("SeriesInstanceUID"):
            damaged.setdefault(str(ds.SeriesInstanceUID), []).append(name)
        elif is_dicom_file(path):
            unparsable.append(name)  # pydicom reads what it can of a cut header; without a series it is unknown
    return damaged, unparsable


def is_dicom_file(path: Path) -> bool:
    """A DICOM file by its name (``.dcm``, ``.ima``, ``.dicom``) or its Part-10 ``DICM`` magic."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def walk_folders(root: Path, skip=lambda folder: False):
    """``(folder, sub-folder names, file names)`` for ``root`` and every folder below it, like ``os.walk`` but
    through symbolic links (a DICOM export linked into the input is read) and each real folder once (a link back
    up the tree does not loop). Hidden entries are skipped; so are folders for which ``skip`` is true."""
    seen = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        folder = Path(current)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not skip(folder / d))
        yield folder, list(dirs), sorted(f for f in files if not f.startswith("."))


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


def _describe_series(uid: str, folder: Path, files: list[Path], damaged: list[str] = (),
                     unparsable: list[str] = ()) -> DicomSeries:
    headers = _read_headers(files)
    first = headers[0][1] if headers else Dataset()
    modality = str(first.get("Modality", "") or "")
    image_type = tuple(str(v) for v in (first.get("ImageType") or ()))
    description = str(first.get("SeriesDescription", "") or "")
    number = first.get("SeriesNumber")
    frames = int(first.get("NumberOfFrames", 1) or 1)
    n_slices = frames if len(headers) == 1 else len(headers)

    sorted_files, spacing, axial, geometry_problem, grid = _slice_geometry(headers)
    uniform = grid is not None and grid.is_identity
    localizer = "LOCALIZER" in {t.upper() for t in image_type} or n_slices < MIN_SLICES

    reasons = []
    if len(headers) < len(files):
        reasons.append(f"{len(files) - len(headers)} of {len(files)} files have unreadable headers")
    if damaged or unparsable:
        # Read without its damaged slices a series would look whole (a cut end slice leaves no gap).
        uniform = False
        names = [*damaged, *unparsable]
        reasons.append(f"{len(names)} DICOM file(s) in the folder unreadable (truncated or corrupt; "
                       f"{'of this series' if damaged else 'perhaps slices of it'}): "
                       + ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))
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
        repair="; ".join(grid.notes) if grid is not None and grid.notes and not reasons else None,
    )


def _slice_geometry(headers: list[tuple[Path, Dataset]]
                    ) -> tuple[list[Path], float | None, bool, str | None, RegularGrid | None]:
    """Files sorted along the slice normal, the slice spacing, whether axial, what (if anything) is wrong, and the
    regular grid the slices map onto (None when something is wrong)."""
    if not headers:
        return [], None, False, "no readable DICOM headers", None
    if len(headers) == 1 and int(headers[0][1].get("NumberOfFrames", 1) or 1) > 1:
        return _multiframe_geometry(*headers[0])
    unsorted = [f for f, _ in headers]
    for f, ds in headers:
        problem = plane_problem(ds, f)
        if problem:
            return unsorted, None, False, problem, None
    iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in headers])
    ipps = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    normal = np.cross(iops[0, :3], iops[0, 3:])
    along = ipps @ normal
    order = np.argsort(along, kind="stable")
    files = [headers[i][0] for i in order]
    axial = _is_axial(normal)
    if np.abs(iops - iops[0]).max() > 1e-4:
        return files, None, axial, "slices with different orientations", None
    if len(headers) < 2:
        return files, None, axial, "a single slice", None
    grid = plan_regular_grid(ipps[order], iops[0, :3], iops[0, 3:])
    if isinstance(grid, str):
        return files, float(np.median(np.diff(along[order]))), axial, grid, None
    return files, grid.slice_spacing, axial, None, grid


def plane_problem(ds: Dataset, path: Path) -> str | None:
    """What makes one slice's geometry unusable (naming the file and the attribute), or None. GDCM reads a
    PixelSpacing of 0 as 1 mm, a negative one as a flipped axis and "nan" as 4.7e-310 mm, all without a word."""
    for keyword, n in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6), ("PixelSpacing", 2)):
        if keyword not in ds:
            return f"no {keyword} in {path.name}" + (" (missing spacing)" if keyword == "PixelSpacing" else "")
        try:
            values = [float(v) for v in (ds[keyword].value if ds[keyword].VM != 1 else [ds[keyword].value])]
        except (TypeError, ValueError):
            return f"{keyword} of {path.name} is not numeric ({ds[keyword].value!r})"
        if len(values) != n or not all(math.isfinite(v) for v in values):
            return f"{keyword} of {path.name} is not {n} finite numbers ({fmt(values) if values else 'empty'})"
        if keyword == "PixelSpacing" and not all(v > 0 for v in values):
            return f"PixelSpacing of {path.name} is zero or negative {fmt(values)}"
        if keyword == "ImageOrientationPatient":
            row, col = np.array(values[:3]), np.array(values[3:])
            if (abs(np.linalg.norm(row) - 1) > ORIENTATION_TOL or abs(np.linalg.norm(col) - 1) > ORIENTATION_TOL
                    or abs(float(row @ col)) > ORIENTATION_TOL):
                return f"ImageOrientationPatient of {path.name} is not two orthogonal unit vectors {fmt(values)}"
    return None


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
        plane = Dataset()
        plane.update({**dict(pos.items()), **dict(ori.items()), **dict(meas.items())})
        problem = plane_problem(plane, path)
        if problem:
            raise ImageReadError(f"{path}: frame {len(positions) + 1}: {problem}")
        positions.append([float(v) for v in pos.ImagePositionPatient])
        orientations.append([float(v) for v in ori.ImageOrientationPatient])
        spacings.append(tuple(float(v) for v in meas.PixelSpacing))
    orientations = np.asarray(orientations)
    if np.abs(orientations - orientations[0]).max() > 1e-4 or len(set(spacings)) != 1:
        raise ImageReadError(f"{path}: frames of the multi-frame DICOM differ in orientation or pixel spacing")
    return np.asarray(positions), orientations[0], spacings[0]


def _multiframe_geometry(path: Path, ds: Dataset
                         ) -> tuple[list[Path], float | None, bool, str | None, RegularGrid | None]:
    try:
        positions, iop, _ = frame_geometry(ds, path)
    except ImageReadError as e:
        return [path], None, False, str(e).split(": ", 1)[-1], None
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort(positions @ normal, kind="stable")
    grid = plan_regular_grid(positions[order], iop[:3], iop[3:])
    if isinstance(grid, str):
        return [path], float(np.median(np.diff(np.sort(positions @ normal)))), _is_axial(normal), grid, None
    return [path], grid.slice_spacing, _is_axial(normal), None, grid


def _is_axial(normal: np.ndarray) -> bool:
    cos = abs(float(normal[2])) / max(float(np.linalg.norm(normal)), 1e-12)
    return cos >= math.cos(math.radians(AXIAL_MAX_ANGLE_DEG))


def series_in_folder(folder) -> DicomSeries:
    """The series the rule chooses among those directly in ``folder`` (its sub-folders are not searched): what a
    DICOM folder given to ``predict`` is read from."""
    series = [s for s in list_dicom_series(folder) if Path(s.folder) == Path(folder)]
    return choose_series(series, source=str(folder))


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
