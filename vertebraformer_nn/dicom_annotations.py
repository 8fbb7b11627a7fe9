"""DICOM annotations of a CT series: DICOM SEG (via highdicom) and RTSTRUCT (via pydicom), written and read.

Writers take binary masks on the CT grid (as :func:`vertebraformer_nn.image_io.read_dicom_series` returns it, or any
reorientation of it) plus the CT's files, and reference those files. Readers put every segment / ROI onto a
reference image's grid, matching frames and contours by their physical position (never by frame order), so that
a SEG covering part of the CT, or a reference image in another axis order (RAS after conversion), still maps
voxel for voxel. Anything that does not fall on the reference grid is an :class:`ImageReadError` naming the file.
"""
from __future__ import annotations

import copy
import datetime
import fnmatch
import hashlib
from pathlib import Path
from typing import Mapping, Sequence

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, SegmentationStorage, generate_uid
from skimage.draw import polygon
from skimage.measure import find_contours

from . import __version__
from .image_io import (
    FRAME_OF_REFERENCE_KEY,
    ImageReadError,
    _spacing_problem,
    grid_mismatch,
    orientation,
    reorient,
    write_dicom_dataset,
)

__all__ = ["write_seg", "write_rtstruct", "read_seg", "read_rtstruct"]

# Segment names that describe lesions get lesion codes in a SEG; everything else is coded as a vertebra.
LESION_PATTERNS = ("*lesion*", "*metasta*", "*lytic*", "*blastic*", "*tumo*")
# A frame or contour lies on the reference grid when its position is within this fraction of a voxel of a voxel
# centre (DICOM decimal strings carry at most 16 characters, far below this).
GRID_TOL_VOXELS = 0.01
MANUFACTURER = "VertebraFormer-nn"


# --------------------------------------------------------------------------------------------------------------------
# Reference series (shared by both writers)
# --------------------------------------------------------------------------------------------------------------------


def _reference_datasets(reference_files: Sequence[Path], what: Path) -> list[Dataset]:
    """Headers of the CT slices, sorted along the slice normal (the order read_dicom_series gives the volume).

    Anonymised series sometimes carry empty UIDs (the real TotalSegmentator sample does). The SOP instance/class are
    then taken from the file meta; missing study/series UIDs are derived from the frame of reference, deterministically,
    so that the annotation can still reference its images."""
    if not reference_files:
        raise ValueError(f"{what}: no reference CT files given")
    datasets = []
    for f in reference_files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:
            raise ImageReadError(f"{f}: unreadable reference DICOM file ({e})") from None
        datasets.append(_repair_identity(ds, Path(f)))
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


def _repair_identity(ds: Dataset, path: Path) -> Dataset:
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
    return ds


def _series_grid(datasets: list[Dataset], what: Path) -> sitk.Image:
    """An empty image with the geometry of the (sorted) reference slices: what read_dicom_series would return."""
    first = datasets[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    along = positions @ normal
    if len(datasets) > 1:
        problem = _spacing_problem(np.diff(along), positions, normal)
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


def _masks_on_grid(masks: Mapping[str, sitk.Image], grid: sitk.Image, path: Path) -> dict[str, np.ndarray]:
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


def _is_lesion(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in LESION_PATTERNS)


def _derived_uid(datasets: list[Dataset], kind: str, arrays: Mapping[str, np.ndarray]) -> str:
    """Deterministic UIDs: the same masks on the same series give the same annotation file, other masks another UID."""
    digest = hashlib.sha1()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.packbits(arrays[name]).tobytes())
    return generate_uid(entropy_srcs=[datasets[0].SeriesInstanceUID, kind, digest.hexdigest()])


# --------------------------------------------------------------------------------------------------------------------
# DICOM SEG
# --------------------------------------------------------------------------------------------------------------------


def write_seg(masks: Mapping[str, sitk.Image], reference_files: Sequence[Path], path) -> Path:
    """Write one BINARY DICOM SEG holding a segment per non-empty mask, labelled with the dict key, referencing the
    CT series ``reference_files``. Masks are binary images on the CT grid (any non-zero voxel is inside)."""
    path = Path(path)
    datasets = _reference_datasets(reference_files, path)
    grid = _series_grid(datasets, path)
    arrays = {name: a for name, a in _masks_on_grid(masks, grid, path).items() if a.any()}
    if not arrays:
        raise ValueError(f"{path}: every mask is empty; a DICOM SEG needs at least one segment")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=MANUFACTURER, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, name in enumerate(arrays, start=1):
        lesion = _is_lesion(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=(
                    codes.SCT.MorphologicallyAbnormalStructure if lesion else codes.SCT.AnatomicalStructure
                ),
                segmented_property_type=codes.SCT.Lesion if lesion else codes.SCT.Vertebra,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    # Stacked-segments style (frames, rows, cols, segments): segments may overlap (a lesion inside its vertebra).
    pixels = np.stack(list(arrays.values()), axis=-1)
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_derived_uid(datasets, "seg-series", arrays),
        series_number=300,
        sop_instance_uid=_derived_uid(datasets, "seg-instance", arrays),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="vertebraformer_nn.dicom_annotations",
        software_versions=__version__,
        device_serial_number="0",
        series_description="Segmentation",
        omit_empty_frames=True,
    )
    return write_dicom_dataset(seg, path)


def read_seg(path, reference: sitk.Image) -> dict[str, sitk.Image]:
    """Segment label -> uint8 mask on ``reference``'s grid.

    Frames are placed by their PlanePositionSequence (a SEG may cover only part of the CT, in any frame order);
    segments that share a label are merged. Raises :class:`ImageReadError` naming the file when it is not a SEG,
    belongs to another frame of reference, or a frame does not fall on the reference grid."""
    path = Path(path)
    ds = _read_annotation(path, "SEG", SegmentationStorage)
    _check_frame_of_reference(path, ds.get("FrameOfReferenceUID"), reference)
    try:
        frames = ds.pixel_array
    except Exception as e:
        raise ImageReadError(f"{path}: cannot decode the SEG pixel data ({e})") from None
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frames = np.asarray(frames).reshape(n_frames, int(ds.Rows), int(ds.Columns))
    if str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL":
        # Fractional values are stored 0..MaximumFractionalValue; inside means at least half.
        frames = frames >= (int(ds.get("MaximumFractionalValue", 255)) + 1) // 2
    labels = {
        int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}")) for s in ds.SegmentSequence
    }
    out = {label: np.zeros(reference.GetSize()[::-1], dtype=np.uint8) for label in labels.values()}
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != n_frames:
        raise ImageReadError(f"{path}: SEG without one PerFrameFunctionalGroupsSequence item per frame")
    for i, item in enumerate(per_frame):
        number = _functional(item, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber", path, i)
        ipp = _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient", path, i)
        iop = _functional(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient", path, i)
        spacing = _functional(item, shared, "PixelMeasuresSequence", "PixelSpacing", path, i)
        if int(number) not in labels:
            raise ImageReadError(f"{path}: frame {i + 1} refers to segment {number}, which the SEG does not describe")
        index = _frame_indices(reference, ipp, iop, spacing, frames.shape[1:], path, f"frame {i + 1}")
        target = out[labels[int(number)]]
        target[index] |= (frames[i] > 0).astype(np.uint8)
    return {label: _as_image(array, reference) for label, array in out.items()}


def _functional(item: Dataset, shared: Dataset, sequence: str, keyword: str, path: Path, i: int):
    """A functional-group attribute of frame ``i``: per-frame item first, then the shared group."""
    for group in (item, shared):
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            value = seq[0][keyword].value
            return [float(v) for v in value] if keyword != "ReferencedSegmentNumber" else int(value)
    raise ImageReadError(f"{path}: frame {i + 1} has no {sequence} ({keyword})")


def _frame_indices(reference: sitk.Image, ipp, iop, spacing, shape, path: Path, what: str):
    """Numpy index arrays (z, y, x) of the reference voxels under each pixel of a plane at ``ipp``/``iop``.

    The plane's pixel steps must map to whole reference-voxel steps along two reference axes, and its origin onto
    a voxel centre: then the plane is one slice of the reference grid (in any axis order or direction)."""
    row_dir, col_dir = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_spacing, col_spacing = spacing
    origin = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(map(float, ipp))))
    step_c = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + col_spacing * row_dir))) - origin
    step_r = np.asarray(reference.TransformPhysicalPointToContinuousIndex(tuple(ipp + row_spacing * col_dir))) - origin
    rounded = [np.round(v) for v in (origin, step_c, step_r)]
    off_grid = max(np.abs(v - r).max() for v, r in zip((origin, step_c, step_r), rounded))
    unit_steps = all(np.abs(r).sum() == 1 for r in rounded[1:]) and np.abs(rounded[1] * rounded[2]).sum() == 0
    if off_grid > GRID_TOL_VOXELS or not unit_steps:
        raise ImageReadError(
            f"{path}: {what} at {tuple(round(float(v), 3) for v in ipp)} mm does not fall on the reference grid "
            f"(voxel index {tuple(round(float(v), 3) for v in origin)})"
        )
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    idx = rounded[0][:, None, None] + rounded[1][:, None, None] * cols + rounded[2][:, None, None] * rows
    idx = idx.astype(np.int64)
    size = np.asarray(reference.GetSize())[:, None, None]
    if (idx < 0).any() or (idx >= size).any():
        raise ImageReadError(
            f"{path}: {what} at {tuple(round(float(v), 3) for v in ipp)} mm lies outside the reference image"
        )
    return idx[2], idx[1], idx[0]


def _continuous_index(reference: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Continuous voxel indices (x, y, z) of physical points (n x 3), vectorised (one sitk call per point is slow)."""
    affine = np.asarray(reference.GetDirection()).reshape(3, 3) * np.asarray(reference.GetSpacing())
    return np.linalg.solve(affine, (np.asarray(points, dtype=float) - reference.GetOrigin()).T).T


def _as_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def _read_annotation(path: Path, modality: str, sop_class: str) -> Dataset:
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


def _check_frame_of_reference(path: Path, uid: str | None, reference: sitk.Image) -> None:
    """Only images read from DICOM know their frame of reference; for those the annotation must share it."""
    if not reference.HasMetaDataKey(FRAME_OF_REFERENCE_KEY) or not uid:
        return
    expected = reference.GetMetaData(FRAME_OF_REFERENCE_KEY).strip()
    if expected and str(uid).strip() != expected:
        raise ImageReadError(
            f"{path}: references frame of reference {uid}, but the CT belongs to {expected} "
            "(an annotation of another scan?)"
        )


# --------------------------------------------------------------------------------------------------------------------
# RTSTRUCT
# --------------------------------------------------------------------------------------------------------------------

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


def write_rtstruct(masks: Mapping[str, sitk.Image], reference_files: Sequence[Path], path) -> Path:
    """Write an RT Structure Set with one ROI per mask (empty masks give an ROI without contours) and a
    CLOSED_PLANAR contour for every outline (outer and hole) on every CT slice, referencing the slice's image."""
    path = Path(path)
    datasets = _reference_datasets(reference_files, path)
    grid = _series_grid(datasets, path)
    arrays = _masks_on_grid(masks, grid, path)
    if not arrays:
        raise ValueError(f"{path}: no masks given")
    ds = _rtstruct_header(datasets, arrays)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    for number, (name, array) in enumerate(arrays.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = datasets[0].FrameOfReferenceUID
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        ds.StructureSetROISequence.append(roi)

        contours = DicomSequence()
        for k in np.flatnonzero(array.any(axis=(1, 2))):
            ipp = np.array([float(v) for v in datasets[k].ImagePositionPatient])
            for outline in _slice_outlines(array[k]):
                # outline: (row, col) pixel coordinates -> patient mm.
                points = ipp + outline[:, 1:2] * col_spacing * row_dir + outline[:, 0:1] * row_spacing * col_dir
                contours.append(_contour_item(points, datasets[k]))
        item = Dataset()
        item.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        item.ReferencedROINumber = number
        if contours:
            item.ContourSequence = contours
        ds.ROIContourSequence.append(item)

        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "" if _is_lesion(name) else "ORGAN"
        observation.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(observation)
    return write_dicom_dataset(ds, path)


def _slice_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (n x 2, row/col pixel coordinates) of a 2D mask, holes included, at the pixel-edge midpoints.

    The padding closes outlines that touch the image border; rasterised with the even-odd rule they give the mask."""
    padded = np.pad(mask.astype(np.float32), 1)
    outlines = []
    for contour in find_contours(padded, 0.5):
        contour = contour - 1.0
        if np.allclose(contour[0], contour[-1]):
            contour = contour[:-1]  # DICOM closes CLOSED_PLANAR contours implicitly
        if len(contour) >= 3:
            outlines.append(contour)
    return outlines


def _contour_item(points: np.ndarray, image: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    item = Dataset()
    item.ContourImageSequence = DicomSequence([ref])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(points)
    item[CONTOUR_DATA] = _raw_decimal_strings(CONTOUR_DATA, points.ravel())
    # Declares the raw bytes' encoding, so the writer copies them instead of decoding and re-encoding each value.
    item.set_original_encoding(False, True, item._character_set)
    return item


CONTOUR_DATA = Tag(0x3006, 0x0050)


def _raw_decimal_strings(tag: Tag, values: np.ndarray) -> RawDataElement:
    """A DS element as already-encoded bytes (explicit VR little endian, as the file is written).

    pydicom validates and boxes every DS value (about 10 microseconds each); a spine RTSTRUCT holds millions of
    coordinates. 0.1 micrometre precision always fits the 16 characters a decimal string allows."""
    text = "\\".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in values.tolist()).encode("ascii")
    if len(text) % 2:
        text += b" "
    return RawDataElement(tag, "DS", len(text), text, 0, False, True)


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


def _rtstruct_header(datasets: list[Dataset], arrays: Mapping[str, np.ndarray]) -> Dataset:
    """Patient/study copied from the CT; a new RTSTRUCT series referencing every CT image."""
    ref = datasets[0]
    sop_uid = _derived_uid(datasets, "rtstruct-instance", arrays)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop_uid
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, copy.deepcopy(ref.get(keyword, "")) or "")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = _derived_uid(datasets, "rtstruct-series", arrays)
    ds.SeriesNumber = 301
    ds.SeriesDescription = "RTSTRUCT"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "vertebraformer_nn.dicom_annotations"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = ref.FrameOfReferenceUID
    ds.StructureSetLabel = "VertebraFormer"
    now = datetime.datetime.now()
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")

    images = DicomSequence()
    for image in datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        images.append(item)
    series = Dataset()
    series.SeriesInstanceUID = ref.SeriesInstanceUID
    series.ContourImageSequence = images
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (what RT objects reference)
    study.ReferencedSOPInstanceUID = ref.StudyInstanceUID
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ref.FrameOfReferenceUID
    frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    return ds


def read_rtstruct(path, reference: sitk.Image) -> dict[str, sitk.Image]:
    """ROI name -> uint8 mask on ``reference``'s grid, CLOSED_PLANAR contours rasterised per slice.

    A voxel is inside when its centre is inside an odd number of the slice's contours (holes stay holes). Contours
    must lie in a slice plane of the reference grid; other geometric types (POINT, OPEN_PLANAR) are ignored."""
    path = Path(path)
    ds = _read_annotation(path, "RTSTRUCT", RTStructureSetStorage)
    rois = ds.get("StructureSetROISequence") or []
    names = {int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in rois}
    for roi in rois:
        _check_frame_of_reference(path, roi.get("ReferencedFrameOfReferenceUID"), reference)
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
    return {name: _as_image(array, reference) for name, array in out.items()}


def _rasterise_contour(contour: Dataset, reference: sitk.Image, target: np.ndarray, path: Path, name: str) -> None:
    points = _decimal_strings(contour, CONTOUR_DATA).reshape(-1, 3)
    if len(points) < 3:
        return
    index = _continuous_index(reference, points)
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
