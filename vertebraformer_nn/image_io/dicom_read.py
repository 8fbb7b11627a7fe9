"""DICOM pixels: a described series (:mod:`.dicom_series`) or one multi-frame file read into a volume.

Pixels are decoded by SimpleITK/GDCM (HU through RescaleSlope/Intercept), slices in position order, never by file
name; the result is checked against the headers (first and last slice where they say); a series with gantry tilt or
a few missing slices is put on its regular grid (:mod:`.regular_grid`, with a read note); the result carries the DICOM
identity (frame of reference, series, study) in its metadata dictionary, so that SEG/RTSTRUCT readers can check
that an annotation belongs to it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .checks import IMAGE_SUFFIXES, ImageReadError, check_volume, error_summary, fmt
from .dicom_series import DicomSeries, frame_geometry
from .regular_grid import RegularGrid, add_read_note, plan_regular_grid, regularise

__all__ = ["read_dicom_series", "read_dicom_file", "FRAME_OF_REFERENCE_KEY", "SERIES_INSTANCE_UID_KEY",
           "STUDY_INSTANCE_UID_KEY"]

# SimpleITK's own key convention for DICOM tags in an image's metadata dictionary. Images read from DICOM carry
# these so that DICOM SEG/RTSTRUCT readers can check that an annotation belongs to this frame of reference.
FRAME_OF_REFERENCE_KEY = "0020|0052"
SERIES_INSTANCE_UID_KEY = "0020|000e"
STUDY_INSTANCE_UID_KEY = "0020|000d"


def read_dicom_series(series: DicomSeries) -> sitk.Image:
    """Read a series with SimpleITK/GDCM (HU through RescaleSlope/Intercept), slices in position order."""
    where = f"{series.folder} (series {series.series_uid or '(no SeriesInstanceUID)'})"
    if len(series.files) == 1:
        return read_dicom_file(series.files[0])
    if not series.uniform and not series.repair:
        raise ImageReadError(f"{where}: {series.reason_rejected or 'slices do not form a uniform volume'}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    warnings_were_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(series.uniform)  # ITK's "non uniform sampling" is handled below
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise ImageReadError(f"{where}: unreadable DICOM series ({error_summary(e)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_were_on)
    if series.uniform:
        image = check_volume(image, Path(where))
        first, notes = _verify_slice_positions(image, series, where), ()
    else:
        image, first, notes = _regular_volume(image, series, where)
    return _finish(image, first, notes)


def _regular_volume(stack: sitk.Image, series: DicomSeries, where: str) -> tuple[sitk.Image, Dataset, tuple]:
    """A series with gantry tilt or a few missing slices (``series.repair``) on its regular grid, geometry from the
    headers (``regular_grid``); ITK's own geometry for such a stack is not used. Returns it, the first header and
    the notes."""
    headers = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in series.files]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in headers])
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in headers[0].PixelSpacing)
    grid = plan_regular_grid(positions, iop[:3], iop[3:])
    array = sitk.GetArrayViewFromImage(stack)
    if isinstance(grid, str) or array.shape[0] != len(positions):
        raise ImageReadError(f"{where}: {grid if isinstance(grid, str) else 'slices and headers disagree'}")
    return _image_on_grid(array, grid, iop, (row_spacing, col_spacing), where), headers[0], grid.notes


def _image_on_grid(array: np.ndarray, grid: RegularGrid, iop: np.ndarray, pixel_spacing: tuple[float, float],
                   where) -> sitk.Image:
    """``array`` (slices sorted along the normal) resampled onto ``grid``, with its geometry."""
    row, col = iop[:3], iop[3:]
    image = sitk.GetImageFromArray(regularise(array, grid, row, col, pixel_spacing) if grid.notes else array)
    image.SetSpacing((pixel_spacing[1], pixel_spacing[0], grid.slice_spacing))
    image.SetOrigin(tuple(float(v) for v in grid.origin))
    image.SetDirection(tuple(np.column_stack([row, col, grid.normal]).ravel()))
    return check_volume(image, Path(str(where)))


def read_dicom_file(path: Path) -> sitk.Image:
    """One DICOM file: a multi-frame CT (Enhanced or legacy-converted) holds a volume; a single slice is 2D."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:
        raise ImageReadError(
            f"{path}: not an image file of {', '.join(IMAGE_SUFFIXES)} and not DICOM ({error_summary(e)})"
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
        raise ImageReadError(f"{path}: unreadable DICOM file ({error_summary(e)})") from None
    return check_volume(image, path)


def _read_enhanced_multiframe(path: Path, ds: Dataset) -> sitk.Image:
    """Multi-frame CT: pixels decoded by SimpleITK/GDCM, geometry rebuilt from the per-frame functional groups.

    GDCM's geometry for Enhanced objects assumes frames are stored in position order; here they are sorted by their
    position along the slice normal, like the slices of a series."""
    positions, iop, pixel_spacing = frame_geometry(ds, path)
    order = np.argsort(positions @ np.cross(iop[:3], iop[3:]), kind="stable")
    grid = plan_regular_grid(positions[order], iop[:3], iop[3:])
    if isinstance(grid, str):
        raise ImageReadError(f"{path}: multi-frame DICOM frames are not a uniform volume ({grid})")
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        raw = reader.Execute()
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable DICOM file ({error_summary(e)})") from None
    array = sitk.GetArrayFromImage(raw)
    if array.ndim != 3 or array.shape[0] != len(order):
        raise ImageReadError(f"{path}: decoded {array.shape} pixels for {len(order)} frames")
    return _finish(_image_on_grid(array[order], grid, iop, pixel_spacing, path), ds, grid.notes)


def _finish(image: sitk.Image, ds: Dataset, notes) -> sitk.Image:
    """Narrowed to int16 where HU fit, tagged with the DICOM identity of header ``ds`` and the read notes (last:
    a cast drops the metadata)."""
    image = _narrow_integer_type(image)
    _tag_dicom_identity(image, ds)
    for note in notes:
        add_read_note(image, note)
    return image


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
            raise ImageReadError(f"{where}: slice {index} lies at {fmt(got)}, its header says {fmt(ipp)}")
        headers.append(ds)
    return headers[0]
