"""What the DICOM SEG and RTSTRUCT readers and writers share: the reference CT series, masks on its grid, the file.

Writers take binary masks on the CT grid (as :func:`vertebraformer_nn.image_io.read_dicom_series` returns it, or any
reorientation of it) plus the CT's files, and reference those files. Readers put every segment / ROI onto a
reference image's grid by physical position; anything that does not fall on the reference grid is an
:class:`ImageReadError` naming the file.
"""
from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..image_io import FRAME_OF_REFERENCE_KEY, ImageReadError, grid_mismatch, orientation, reorient
from ..image_io.regular_grid import spacing_problem


# Segment names that describe lesions get lesion codes in a SEG; everything else is coded as a vertebra.
LESION_PATTERNS = ("*lesion*", "*metasta*", "*lytic*", "*blastic*", "*tumo*")
# A frame or contour lies on the reference grid when its position is within this fraction of a voxel of a voxel
# centre (DICOM decimal strings carry at most 16 characters, far below this).
GRID_TOL_VOXELS = 0.01
MANUFACTURER = "VertebraFormer-nn"


def reference_datasets(reference_files: Sequence[Path], what: Path) -> list[Dataset]:
    """Headers of the CT slices, sorted along the slice normal (the order read_dicom_series gives the volume).

    Anonymised series sometimes carry empty UIDs (the real TotalSegmentator sample does). The SOP instance/class are
    then taken from the file meta; missing study/series UIDs are derived from the frame of reference, deterministically,
    so that the annotation can still reference its images. Header values a SEG writer would copy but DICOM forbids
    (an empty SpecificCharacterSet, a negative SpacingBetweenSlices) are mended in these in-memory copies only."""
    if not reference_files:
        raise ValueError(f"{what}: no reference CT files given")
    datasets = []
    for f in reference_files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:
            raise ImageReadError(f"{f}: unreadable reference DICOM file ({e})") from None
        datasets.append(repair_identity(ds, Path(f)))
    try:
        iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        along = np.array([np.dot([float(v) for v in ds.ImagePositionPatient], normal) for ds in datasets])
    except AttributeError:
        raise ImageReadError(
            f"{reference_files[0]}: reference CT without ImagePositionPatient/ImageOrientationPatient"
        ) from None
    order = np.argsort(along, kind="stable")
    datasets = [datasets[i] for i in order]
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        raise ValueError(f"{what}: the reference is one multi-frame CT file; give the files of a single-frame series")
    if len({ds.FrameOfReferenceUID for ds in datasets}) != 1:
        raise ImageReadError(f"{reference_files[0]}: reference CT files span several frames of reference")
    return datasets


def repair_identity(ds: Dataset, path: Path) -> Dataset:
    meta = getattr(ds, "file_meta", Dataset())
    if not ds.get("SOPInstanceUID"):
        ds.SOPInstanceUID = meta.get("MediaStorageSOPInstanceUID") or generate_uid(entropy_srcs=[str(path)])
    if not ds.get("SOPClassUID"):
        ds.SOPClassUID = meta.get("MediaStorageSOPClassUID") or pydicom.uid.CTImageStorage
    if not ds.get("FrameOfReferenceUID"):
        raise ImageReadError(f"{path}: reference CT has no FrameOfReferenceUID; an annotation cannot be placed on it")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not ds.get(keyword):
            setattr(ds, keyword, generate_uid(entropy_srcs=[ds.FrameOfReferenceUID, keyword]))
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet  # present but empty (the GE sample): the default repertoire, as DICOM means
    if ds.get("SpacingBetweenSlices") is not None and float(ds.SpacingBetweenSlices) < 0:
        # Philips writes -2.0 (the real chest sample); DICOM allows no negative value, and highdicom copies it
        ds.SpacingBetweenSlices = abs(float(ds.SpacingBetweenSlices))
    return ds


def series_grid(datasets: list[Dataset], what: Path) -> sitk.Image:
    """An empty image with the geometry of the (sorted) reference slices: what read_dicom_series would return."""
    first = datasets[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    along = positions @ normal
    if len(datasets) > 1:
        problem = spacing_problem(np.diff(along), positions, normal)
        if problem:
            raise ImageReadError(f"{what}: the reference CT slices do not form a regular grid ({problem})")
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    if len(datasets) > 1:
        slice_spacing = float(np.median(np.diff(along)))
    else:
        slice_spacing = float(first.get("SliceThickness", 1) or 1)
    grid = sitk.Image(int(first.Columns), int(first.Rows), len(datasets), sitk.sitkUInt8)
    grid.SetSpacing((col_spacing, row_spacing, slice_spacing))
    grid.SetOrigin(tuple(positions[0]))
    grid.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    return grid


def masks_on_grid(masks: Mapping[str, sitk.Image], grid: sitk.Image, path: Path) -> dict[str, np.ndarray]:
    """Each mask as a boolean array (z, y, x) on the reference grid; masks in another axis order are reoriented."""
    arrays = {}
    for name, mask in masks.items():
        if not str(name).strip():
            raise ValueError(f"{path}: empty segment name")
        if mask.GetDimension() == 3 and orientation(mask) != orientation(grid):
            mask = reorient(mask, orientation(grid))
        reason = grid_mismatch(mask, grid)
        if reason:
            raise ValueError(f"{path}: mask '{name}' is not on the reference CT grid ({reason})")
        arrays[str(name)] = sitk.GetArrayViewFromImage(mask) > 0
    return arrays


def is_lesion(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in LESION_PATTERNS)


def derived_uid(datasets: list[Dataset], kind: str, arrays: Mapping[str, np.ndarray]) -> str:
    """Deterministic UIDs: the same masks on the same series give the same annotation file, other masks another UID."""
    digest = hashlib.sha1()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.packbits(arrays[name]).tobytes())
    return generate_uid(entropy_srcs=[datasets[0].SeriesInstanceUID, kind, digest.hexdigest()])


def continuous_index(reference: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Continuous voxel indices (x, y, z) of physical points (n x 3), vectorised (one sitk call per point is slow)."""
    affine = np.asarray(reference.GetDirection()).reshape(3, 3) * np.asarray(reference.GetSpacing())
    return np.linalg.solve(affine, (np.asarray(points, dtype=float) - reference.GetOrigin()).T).T


def as_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def read_annotation(path: Path, modality: str, sop_class: str) -> Dataset:
    if not path.is_file():
        raise ImageReadError(f"{path}: does not exist")
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:
        raise ImageReadError(f"{path}: not a DICOM file ({e})") from None
    got_class = str(ds.get("SOPClassUID", "") or "")
    if str(ds.get("Modality", "")).upper() != modality or (got_class and got_class != sop_class):
        name = pydicom.uid.UID(got_class).name if got_class else "unknown SOP class"
        raise ImageReadError(f"{path}: not a DICOM {modality} (modality {ds.get('Modality', '?')}, {name})")
    return ds


def check_frame_of_reference(path: Path, uid: str | None, reference: sitk.Image) -> None:
    """Only images read from DICOM know their frame of reference; for those the annotation must share it."""
    if not reference.HasMetaDataKey(FRAME_OF_REFERENCE_KEY) or not uid:
        return
    expected = reference.GetMetaData(FRAME_OF_REFERENCE_KEY).strip()
    if expected and str(uid).strip() != expected:
        raise ImageReadError(
            f"{path}: references frame of reference {uid}, but the CT belongs to {expected} "
            "(an annotation of another scan?)"
        )
