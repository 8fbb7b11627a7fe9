"""The project's one image-I/O place: volumes from NIfTI/NRRD/MHA files and DICOM series, written back atomically.

Everything that reads or writes a CT or a label map goes through this package, so that every part of the pipeline
agrees on geometry (SimpleITK's LPS world, spacing/origin/direction exactly as stored) and every bad input fails the
same way: an :class:`ImageReadError` whose message names the file or folder and the problem. Callers import from
here; the modules behind it have one job each:

* :mod:`.checks`: the error, the image suffixes, what every volume must be;
* :mod:`.files`: :func:`read_image` (any input) and :func:`read_label`;
* :mod:`.dicom_series`: DICOM series found with GDCM, described from pydicom header reads, chosen by the rule in
  ``docs/source_layouts.md`` ("DICOM cohort");
* :mod:`.headers`: raw NIfTI/NRRD/MetaImage headers and voxel data checked before ITK reads them (ITK patches
  or ignores truncation, corrupt compressed data and broken geometry fields);
* :mod:`.dicom_read`: a series' or a multi-frame file's pixels, slices ordered by their position along the slice
  normal, never by file name;
* :mod:`.regular_grid`: slices that do not stack regularly: gantry tilt and a few missing slices repaired onto a
  regular grid with a note (:func:`read_notes`), anything else refused;
* :mod:`.write`: atomic writing, reorientation without resampling, grid comparison.

Writing CT as DICOM is only for phantoms: :mod:`vertebraformer_nn.phantoms.dicom_writer`.
"""
from __future__ import annotations

from .checks import IMAGE_SUFFIXES, ImageReadError, is_image_file
from .dicom_read import FRAME_OF_REFERENCE_KEY, SERIES_INSTANCE_UID_KEY, STUDY_INSTANCE_UID_KEY, read_dicom_series
from .dicom_series import DicomSeries, choose_series, list_dicom_series
from .files import read_image, read_label
from .regular_grid import read_notes
from .write import grid_mismatch, orientation, reorient, write_dicom_dataset, write_image

__all__ = [
    "ImageReadError",
    "IMAGE_SUFFIXES",
    "is_image_file",
    "read_image",
    "read_label",
    "DicomSeries",
    "list_dicom_series",
    "choose_series",
    "read_dicom_series",
    "read_notes",
    "write_image",
    "write_dicom_dataset",
    "reorient",
    "orientation",
    "grid_mismatch",
    "FRAME_OF_REFERENCE_KEY",
    "SERIES_INSTANCE_UID_KEY",
    "STUDY_INSTANCE_UID_KEY",
]
