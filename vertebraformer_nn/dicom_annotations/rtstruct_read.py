"""RT Structure Set read onto a reference image's grid: CLOSED_PLANAR contours rasterised per slice (even-odd rule)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import RTStructureSetStorage
from skimage.draw import polygon

from ..image_io import ImageReadError
from .common import GRID_TOL_VOXELS, as_image, check_frame_of_reference, continuous_index, read_annotation

__all__ = ["read_rtstruct", "CONTOUR_DATA"]

CONTOUR_DATA = Tag(0x3006, 0x0050)


def read_rtstruct(path, reference: sitk.Image) -> dict[str, sitk.Image]:
    """ROI name -> uint8 mask on ``reference``'s grid, CLOSED_PLANAR contours rasterised per slice.

    A voxel is inside when its centre is inside an odd number of the slice's contours (holes stay holes). Contours
    must lie in a slice plane of the reference grid; other geometric types (POINT, OPEN_PLANAR) are ignored."""
    path = Path(path)
    ds = read_annotation(path, "RTSTRUCT", RTStructureSetStorage)
    rois = ds.get("StructureSetROISequence") or []
    names = {int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in rois}
    for roi in rois:
        check_frame_of_reference(path, roi.get("ReferencedFrameOfReferenceUID"), reference)
    size_zyx = reference.GetSize()[::-1]
    out = {name: np.zeros(size_zyx, dtype=np.uint8) for name in names.values()}
    for item in ds.get("ROIContourSequence") or []:
        number = int(item.ReferencedROINumber)
        if number not in names:
            raise ImageReadError(f"{path}: contours for ROI {number}, which the structure set does not list")
        target = out[names[number]]
        for contour in item.get("ContourSequence") or []:
            if str(contour.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            _rasterise_contour(contour, reference, target, path, names[number])
    return {name: as_image(array, reference) for name, array in out.items()}


def _rasterise_contour(contour: Dataset, reference: sitk.Image, target: np.ndarray, path: Path, name: str) -> None:
    points = _decimal_strings(contour, CONTOUR_DATA).reshape(-1, 3)
    if len(points) < 3:
        return
    index = continuous_index(reference, points)
    # The contour's plane is the reference axis along which every point has the same (integral) index.
    spread = index.max(axis=0) - index.min(axis=0)
    axis = int(np.argmin(spread))
    plane = float(np.median(index[:, axis]))
    if spread[axis] > GRID_TOL_VOXELS or abs(plane - round(plane)) > GRID_TOL_VOXELS:
        raise ImageReadError(
            f"{path}: a contour of ROI '{name}' (near {tuple(np.round(points[0], 2))} mm) is not in a slice plane "
            "of the reference grid"
        )
    k = int(round(plane))
    if not 0 <= k < reference.GetSize()[axis]:
        raise ImageReadError(
            f"{path}: a contour of ROI '{name}' (near {tuple(np.round(points[0], 2))} mm) lies outside the "
            "reference image"
        )
    np_axis = 2 - axis  # numpy arrays are (z, y, x)
    in_plane = [a for a in (2, 1, 0) if a != axis]  # sitk axes in numpy order
    polygon_index = index[:, in_plane]
    view = np.moveaxis(target, np_axis, 0)[k]
    rows, cols = polygon(polygon_index[:, 0], polygon_index[:, 1], shape=view.shape)  # pixel centres inside
    view[rows, cols] ^= 1


def _decimal_strings(item: Dataset, tag: Tag) -> np.ndarray:
    """A DS element's values as floats, parsed straight from the raw bytes when pydicom has not converted them yet."""
    element = item.get_item(tag)
    if element is None:
        return np.zeros(0)
    value = element.value
    if isinstance(value, bytes):
        text = value.decode("ascii").strip(" \x00")
        return np.array(text.split("\\"), dtype=float) if text else np.zeros(0)
    return np.array(value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value], dtype=float)
