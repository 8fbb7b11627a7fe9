"""Images written back (atomically), reoriented without resampling, and compared grid to grid.

Nothing half-written is ever visible: files are written beside the target and renamed into place. Reorientation
permutes and flips axes only (``sitk.DICOMOrient``), so every voxel keeps its physical point.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from ..atomic import atomic_path
from .checks import IMAGE_SUFFIXES, fmt, image_suffix

__all__ = ["write_image", "write_dicom_dataset", "reorient", "orientation", "grid_mismatch"]

_SITK_ORIENT = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines


def write_image(image: sitk.Image, path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the suffix), atomically: nothing half-written is ever visible.

    The file(s) are written into a temporary folder beside the target and moved into place with ``os.replace``;
    for two-file formats (.mhd/.nhdr) the data file moves first and the header last."""
    path = Path(path)
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{path}: write_image needs a SimpleITK image, got {type(image).__name__}")
    if image_suffix(path) is None:
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


def write_dicom_dataset(ds: Dataset, path) -> Path:
    """Save a pydicom dataset atomically (temp file in the same folder, then rename); creates parent folders."""
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return Path(path)


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
        return f"spacing {fmt(sa)} vs {fmt(sb)}"
    dir_diff = float(np.abs(np.array(a.GetDirection()) - np.array(b.GetDirection())).max())
    if dir_diff > rel_tol:
        return f"direction differs ({orientation(a)} vs {orientation(b)}, largest cosine difference {dir_diff:.3g})"
    shift = float(np.linalg.norm(np.array(a.GetOrigin()) - np.array(b.GetOrigin())))
    if shift > origin_tol_mm:
        return f"origin differs by {shift:.3g} mm"
    return None
