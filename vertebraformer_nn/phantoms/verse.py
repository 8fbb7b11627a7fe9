"""VerSe writer: the subject-based release layout (docs/source_layouts.md, "VerSe").

rawdata/ and derivatives/ per release folder; NIfTI as VerSe ships it (qform_code 1, sform_code 0, the
scanner's orientation, some masks float64), VerSe-format centroid files of vertebral-body centroids, vertebrae
cut by the head/foot border left unlabelled, and fracture_grades.csv (Genant grades) at the root.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .. import labels
from ..atomic import atomic_path
from ..centroids import write_verse_ctd
from .case import Case
from .grid import Grid

#: VerSe leaves partially visible vertebrae at the head/foot border unlabelled.
DROP_PARTIAL = True


def nifti_affine(grid: Grid) -> np.ndarray:
    """RAS affine of a grid given in LPS (ITK) terms."""
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ grid.matrix
    aff[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(grid.origin)
    return aff


def write_qform_nifti(array_kji: np.ndarray, grid: Grid, path: Path) -> Path:
    """Write a (k, j, i) array as NIfTI with only the qform set (code 1) and the sform zeroed (code 0), atomically.
    SimpleITK cannot write this: it always sets the sform."""
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(array_kji, (2, 1, 0))), None)
    img.set_qform(nifti_affine(grid), code=1)
    img.set_sform(None, code=0)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path, suffix=".nii.gz") as tmp:  # nibabel compresses by the suffix
        img.to_filename(str(tmp))
    return path


def stem(case: Case) -> str:
    return case.plan.case_id  # sub-verse501 or sub-verse501_split-verse601


def write_case(root: Path, case: Case) -> Path:
    """Write one series; returns the CT path."""
    rel = root / case.plan.extra["release"]
    sub = f"sub-{case.plan.extra['subject']}"
    ct_path = write_qform_nifti(case.ct, case.grid, rel / "rawdata" / sub / f"{stem(case)}_ct.nii.gz")
    dtype = np.float64 if case.plan.extra.get("mask_dtype") == "float64" else np.uint8
    mask = case.label_image(drop_partial=DROP_PARTIAL)
    write_qform_nifti(sitk.GetArrayFromImage(mask).astype(dtype), case.grid,
                      rel / "derivatives" / sub / f"{stem(case)}_seg-vert_msk.nii.gz")
    write_verse_ctd(rel / "derivatives" / sub / f"{stem(case)}_seg-subreg_ctd.json", case.centroids(drop_partial=DROP_PARTIAL), mask)
    return ct_path


def write_fracture_grades(root: Path, cases: List[Case]) -> Path:
    """subject,label,grade,type for every vertebra labelled in any series of a subject (grade 0 = no fracture)."""
    rows: Dict[tuple, tuple] = {}
    for case in cases:
        frac = {v.code: (v.fracture_grade, v.fracture_kind) for v in case.subject.vertebrae}
        for code in case.labelled_codes(DROP_PARTIAL):
            grade, kind = frac.get(code, (0, ""))
            rows[(case.plan.extra["subject"], code)] = (grade, kind if grade else "")
    order = {c: i for i, c in enumerate(labels.ANATOMICAL_ORDER_CODES)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", "label", "grade", "type"])
    for (subject, code), (grade, kind) in sorted(rows.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        w.writerow([subject, code, grade, kind])
    path = root / "fracture_grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())
    return path
