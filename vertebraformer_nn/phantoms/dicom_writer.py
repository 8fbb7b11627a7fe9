"""CT volumes written as DICOM CT Image Storage series: only the phantoms write DICOM (MultiSpine-Sim's DICOM cohort,
tests of the readers).

Geometry comes from the SimpleITK image, whatever its direction; values are stored the way scanners store them
(uint16 with RescaleIntercept -1024 when they fit); UIDs are derived deterministically, so a phantom is the same
file every time. Optionally, file-name order differs from slice order, a test of every reader's sorting.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..image_io import write_dicom_dataset
from ..image_io.checks import check_volume, direction_matrix

__all__ = ["write_dicom_series"]


def write_dicom_series(
    image: sitk.Image,
    folder,
    *,
    patient_id: str = "ANON",
    patient_name: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    convolution_kernel: str | None = None,
    slice_thickness: float | None = None,
    shuffle_file_names: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a 3D CT volume as a CT Image Storage series, one file per slice, returned in position order.

    Geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, spacing between slices) comes from the
    SimpleITK image, whatever its direction. A left-handed direction (third axis opposite to row x column) cannot be
    stored in DICOM; such a volume is written with its slices in the order along the normal, so it reads back as the
    same physical image with the third axis flipped. Values are rounded to integers (HU) and stored as uint16 with
    RescaleIntercept -1024 when they fit (scanner style), else int16 with intercept 0. UIDs not given are derived
    deterministically from ``patient_id`` and ``seed``. With ``shuffle_file_names`` file-name order differs from
    slice order (a test of every reader's sorting).
    """
    folder = Path(folder)
    image = check_volume(image, folder, what="image to write")
    image = _right_handed(image)
    stored, pixel_repr, intercept = _stored_pixels(image, folder)

    def uid(*parts) -> str:
        return generate_uid(entropy_srcs=["vertebraformer", patient_id, str(seed), *map(str, parts)])

    study_uid = study_instance_uid or uid("study")
    series_uid = series_instance_uid or uid("series", series_number, series_description)
    for_uid = frame_of_reference_uid or uid("frame-of-reference")
    nx, ny, nz = image.GetSize()
    sx, sy, sz = image.GetSpacing()
    direction = direction_matrix(image)
    iop = [*direction[:, 0], *direction[:, 1]]
    names = _slice_file_names(nz, series_number, series_uid, shuffle_file_names, seed)

    base = _series_dataset(
        patient_id=patient_id, patient_name=patient_name if patient_name is not None else f"{patient_id}^",
        study_uid=study_uid, series_uid=series_uid, for_uid=for_uid, series_number=series_number,
        description=series_description, image_type=image_type, kernel=convolution_kernel,
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(nz):
        ds = _slice_dataset(base, uid(series_uid, "instance", k))
        ds.InstanceNumber = k + 1
        ipp = image.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]  # DICOM: row spacing (between rows) first
        ds.SliceThickness = _ds(slice_thickness if slice_thickness is not None else sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.SliceLocation = _ds(float(np.dot(ipp, np.cross(direction[:, 0], direction[:, 1]))))
        ds.Rows, ds.Columns = ny, nx
        ds.PixelRepresentation = pixel_repr
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = "1"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        paths.append(write_dicom_dataset(ds, folder / names[k]))
    return paths


def _right_handed(image: sitk.Image) -> sitk.Image:
    """DICOM stacks slices along row x column; flip the third axis of a left-handed volume so it is right-handed."""
    d = direction_matrix(image)
    if np.linalg.det(d) > 0:
        return image
    return sitk.Flip(image, [False, False, True], flipAboutOrigin=False)


def _stored_pixels(image: sitk.Image, folder: Path) -> tuple[np.ndarray, int, int]:
    """(stored array z,y,x, PixelRepresentation, RescaleIntercept) for integer-rounded values."""
    values = np.rint(sitk.GetArrayViewFromImage(image).astype(np.float64))
    lo, hi = float(values.min()), float(values.max())
    if lo >= -1024 and hi <= 65535 - 1024:
        return (values + 1024).astype("<u2"), 0, -1024
    if lo >= -32768 and hi <= 32767:
        return values.astype("<i2"), 1, 0
    raise ValueError(f"{folder}: values {lo:g}..{hi:g} do not fit 16-bit CT pixels")


def _slice_file_names(n: int, series_number: int, series_uid: str, shuffle: bool, seed: int) -> list[str]:
    """Per-slice file names, unique per series; shuffled names never run in slice order (for n > 1)."""
    tag = hashlib.sha1(series_uid.encode()).hexdigest()[:6]
    numbers = np.arange(n)
    if shuffle and n > 1:
        rng = np.random.default_rng(seed)
        # Neither in order nor simply reversed (for n > 2), so a reader that trusts names in either direction fails.
        while np.array_equal(numbers, np.arange(n)) or (n > 2 and np.array_equal(numbers, np.arange(n)[::-1])):
            numbers = rng.permutation(n)
    return [f"{series_number:03d}_{tag}_{int(i) + 1:04d}.dcm" for i in numbers]


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) as precise as the VR allows."""
    value = float(value)
    if value == 0 or abs(value) < 1e-12:
        return "0"
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.6e}"


def _series_dataset(*, patient_id, patient_name, study_uid, series_uid, for_uid, series_number, description,
                    image_type, kernel) -> Dataset:
    """The attributes every slice of the series shares (Patient, Study, Series, Frame of Reference, Equipment)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = list(image_type)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "VertebraFormer-nn"
    ds.ManufacturerModelName = "MultiSpine-Sim"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.KVP = "120"
    if kernel:
        ds.ConvolutionKernel = kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return ds


def _slice_dataset(base: Dataset, sop_instance_uid: str) -> Dataset:
    ds = copy.deepcopy(base)
    ds.SOPInstanceUID = sop_instance_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds
