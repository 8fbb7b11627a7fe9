"""Image files (NIfTI, NRRD, MetaImage) and label maps read; :func:`read_image` is the one entry for any input.

:func:`read_image` takes a file, a single (multi-frame) DICOM file, or a folder of DICOM series (found, described and
chosen by :mod:`.dicom_series`, read by :mod:`.dicom_read`). Geometry is returned exactly as stored (SimpleITK's LPS
world); where ITK quietly patches what a file holds (a NIfTI pixdim of 0, a truncated file, NaN voxels in NIfTI),
the raw header is checked first (:mod:`.headers`) or the file read as what it holds, so that the checks see it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .checks import ImageReadError, check_volume, error_summary, image_suffix
from .dicom_read import read_dicom_file, read_dicom_series
from .dicom_series import choose_series, list_dicom_series
from .headers import check_file_header

__all__ = ["read_image", "read_label"]


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
    if image_suffix(path) is not None:
        return _read_image_file(path)
    return read_dicom_file(path)


def _read_image_file(path: Path) -> sitk.Image:
    check_file_header(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable image file ({error_summary(e)})") from None
    image = check_volume(image, path)
    if image_suffix(path) in (".nii", ".nii.gz") and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
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
