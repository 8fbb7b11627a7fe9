"""What every volume the pipeline reads must be, and the one error every reader raises.

A usable CT volume or label map is 3D, scalar, more than one voxel thick on every axis, with finite positive spacing
of a physical size, a finite origin and a finite, invertible direction. Readers call :func:`check_volume` on what
the library returned; :class:`ImageReadError` messages always start with the path and name the field at fault.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["ImageReadError", "IMAGE_SUFFIXES", "image_suffix", "is_image_file", "check_volume", "error_summary",
           "fmt", "direction_matrix", "MIN_SPACING_MM", "MAX_SPACING_MM"]


class ImageReadError(ValueError):
    """An input that cannot be used as a CT volume or label map; the message names the path and the problem."""


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# A voxel spacing outside these bounds is not a CT's: resampled to a model's spacing it gives an empty or an
# astronomically large array (GDCM reads a PixelSpacing of "nan" as 4.7e-310 mm, and nnU-Net's preprocessing then
# failed with "zero-size array to reduction operation maximum which has no identity").
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 1e3


def image_suffix(path) -> str | None:
    """The image suffix of ``path`` (one of :data:`IMAGE_SUFFIXES`, lower case), or None."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def is_image_file(path) -> bool:
    """True for an existing file named with one of :data:`IMAGE_SUFFIXES` (DICOM series are folders, not files)."""
    path = Path(path)
    return path.is_file() and image_suffix(path) is not None and not path.name.startswith(".")


def direction_matrix(image: sitk.Image) -> np.ndarray:
    d = image.GetDimension()
    return np.asarray(image.GetDirection(), dtype=float).reshape(d, d)


def fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def check_volume(image: sitk.Image, path, what: str = "image") -> sitk.Image:
    """``image`` if it is a usable 3D volume (module docstring), a 4D file with one time point as 3D; else
    :class:`ImageReadError` naming ``path`` and the field."""
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
        raise ImageReadError(f"{path}: {what} has missing or zero voxel spacing {fmt(spacing)}")
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise ImageReadError(f"{path}: {what} has voxel spacing {fmt(spacing)} mm, outside {MIN_SPACING_MM:g} to "
                             f"{MAX_SPACING_MM:g} mm: not the spacing of a CT")
    if not np.all(np.isfinite(image.GetOrigin())):
        raise ImageReadError(f"{path}: {what} has a non-finite origin {fmt(image.GetOrigin())}")
    direction = direction_matrix(image)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise ImageReadError(f"{path}: {what} has a non-finite or degenerate direction {fmt(direction.ravel())}")
    return image


def error_summary(error: Exception) -> str:
    """The informative line of a library error: ITK's "ITK ERROR: <filter>: <what>" or "sitk::ERROR: <what>" line,
    without the source-file location; otherwise the last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        for marker in ("ITK ERROR:", "sitk::ERROR:"):
            if marker in line:
                text = line.split(marker, 1)[1].strip()
                # "MetaImage(0x55d0...): File cannot be read" -> drop the object address.
                head, sep, tail = text.partition("): ")
                return (tail if sep and "(0x" in head else text)[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]
