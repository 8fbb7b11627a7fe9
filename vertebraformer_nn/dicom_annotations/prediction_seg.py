"""A prediction as a DICOM Segmentation (``vertebraformer predict --dicom-seg``): ``<case>_seg.dcm`` for a case read
from a DICOM series, so that PACS viewers, OHIF and 3D Slicer overlay it on the source images.

One segment per predicted vertebra, labelled "<name> vertebra" and coded with its SNOMED CT concept, and one
"Lesion" segment holding every lesion voxel (the union of the instances of ``<case>_lesion.nii.gz``); BINARY,
referencing the source series and each of its instances, in the source's frame of reference. Read back with
``read_seg`` it gives ``<case>.nii.gz`` voxel for voxel. Memory: two label maps of a byte per voxel (``seg_write``).

Not written, with the reason in the case's notes: for a series put on a regular grid when read (gantry tilt, missing
slices: its voxels are no longer the source slices' pixels), and when nothing was found.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import labels
from ..atomic import write_text_atomic
from ..image_io import grid_mismatch, orientation, read_label, reorient
from ..image_io.dicom_series import series_in_folder
from .common import reference_datasets, series_grid
from .seg_write import write_layered_seg

__all__ = ["write_case_seg", "seg_pending", "SEG_SUFFIX"]

SEG_SUFFIX = "_seg.dcm"
LESION_SEGMENT = "Lesion"


def write_case_seg(out_dir, report: dict, source_folder) -> dict:
    """Write ``<case>_seg.dcm`` for the case of ``report`` (written by ``case_outputs``), predicted from the DICOM
    series in ``source_folder``; return the report, rewritten with ``files["dicom_seg"]`` or a note saying why no
    SEG was written."""
    out_dir = Path(out_dir)
    case = report["case"]
    path = out_dir / f"{case}{SEG_SUFFIX}"
    path.unlink(missing_ok=True)
    series = series_in_folder(source_folder)
    layers, names = [], []
    if series.repair:
        note = f"no DICOM SEG: the series was put on a regular grid when read ({series.repair})"
    else:
        datasets = reference_datasets(series.files, path)
        grid = series_grid(datasets, path)
        vertebrae = _on_grid(out_dir / report["files"]["labels"], grid, path)
        codes = labels.sort_anatomically(int(c) for c in np.unique(vertebrae) if c)
        if codes:
            lut = np.zeros(256, dtype=np.uint8)
            lut[codes] = np.arange(1, len(codes) + 1)
            layers.append(lut[vertebrae])
            names += [f"{labels.name(c)} vertebra" for c in codes]
        del vertebrae
        if report["files"].get("lesions"):
            lesion = _on_grid(out_dir / report["files"]["lesions"], grid, path, binary=True)
            if lesion.any():
                lesion *= len(names) + 1  # in place: one segment for every lesion voxel
                layers.append(lesion)
                names.append(LESION_SEGMENT)
            del lesion
        note = None if layers else "no DICOM SEG: no vertebra and no lesion found"
    if layers:
        seed = hashlib.sha1(str(datasets[0].SeriesInstanceUID).encode())
        for layer in layers:
            seed.update(memoryview(np.ascontiguousarray(layer)).cast("B"))
        write_layered_seg(layers, names, datasets, path, seed.hexdigest(),
                          series_description="VertebraFormer vertebrae and lesions")
        report = {**report, "files": {**report["files"], "dicom_seg": path.name}}
    else:
        report = {**report, "notes": [*report.get("notes", []), note]}
    write_text_atomic(out_dir / f"{case}.json", json.dumps(report, indent=1))
    return report


def seg_pending(report: dict) -> bool:
    """True when a finished case's report has neither its SEG nor the note why there is none (``--continue``)."""
    return "dicom_seg" not in report.get("files", {}) and not any(
        str(n).startswith("no DICOM SEG") for n in report.get("notes", []))


def _on_grid(file: Path, grid: sitk.Image, path: Path, binary: bool = False) -> np.ndarray:
    """A written label map as a uint8 (frames, rows, cols) array on the series' grid; with ``binary`` 1 wherever it
    is not 0 (a lesion map's instance ids may exceed 255)."""
    image = read_label(file)
    if orientation(image) != orientation(grid):
        image = reorient(image, orientation(grid))
    problem = grid_mismatch(image, grid)
    if problem:
        raise ValueError(f"{path}: {file.name} is not on the DICOM series' grid ({problem})")
    array = sitk.GetArrayFromImage(image)
    if binary:
        return (array > 0).view(np.uint8)
    if array.max(initial=0) > 255:
        raise ValueError(f"{path}: {file.name} holds values above 255")
    return array.astype(np.uint8, copy=False)
