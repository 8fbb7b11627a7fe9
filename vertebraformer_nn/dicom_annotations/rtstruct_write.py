"""RT Structure Set written with pydicom: one ROI per mask, a CLOSED_PLANAR contour per outline and slice."""
from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage
from skimage.measure import find_contours

from .. import __version__
from ..image_io import write_dicom_dataset
from .common import MANUFACTURER, derived_uid, is_lesion, masks_on_grid, reference_datasets, series_grid
from .rtstruct_read import CONTOUR_DATA

__all__ = ["write_rtstruct"]

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


def write_rtstruct(masks: Mapping[str, sitk.Image], reference_files: Sequence[Path], path) -> Path:
    """Write an RT Structure Set with one ROI per mask (empty masks give an ROI without contours) and a
    CLOSED_PLANAR contour for every outline (outer and hole) on every CT slice, referencing the slice's image."""
    path = Path(path)
    datasets = reference_datasets(reference_files, path)
    grid = series_grid(datasets, path)
    arrays = masks_on_grid(masks, grid, path)
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
        observation.RTROIInterpretedType = "" if is_lesion(name) else "ORGAN"
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



def _raw_decimal_strings(tag: Tag, values: np.ndarray) -> RawDataElement:
    """A DS element as already-encoded bytes (explicit VR little endian, as the file is written).

    pydicom validates and boxes every DS value (about 10 microseconds each); a spine RTSTRUCT holds millions of
    coordinates. 0.1 micrometre precision always fits the 16 characters a decimal string allows."""
    text = "\\".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in values.tolist()).encode("ascii")
    if len(text) % 2:
        text += b" "
    return RawDataElement(tag, "DS", len(text), text, 0, False, True)


def _rtstruct_header(datasets: list[Dataset], arrays: Mapping[str, np.ndarray]) -> Dataset:
    """Patient/study copied from the CT; a new RTSTRUCT series referencing every CT image."""
    ref = datasets[0]
    sop_uid = derived_uid(datasets, "rtstruct-instance", arrays)
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
    ds.SeriesInstanceUID = derived_uid(datasets, "rtstruct-series", arrays)
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
