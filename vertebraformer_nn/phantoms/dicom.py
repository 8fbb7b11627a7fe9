"""DICOM cohort writer (docs/source_layouts.md, "DICOM cohort"), modelled on a metastasis cohort such as TCIA
Spine-Mets-CT-SEG: per patient one study with an axial bone-kernel CT series, in some studies also a localizer
and/or a thicker soft-tissue reconstruction (which the reader must pass over), file names shuffled in some
series; annotations as NIfTI label files, a DICOM SEG or an RTSTRUCT; and ROOT/mapping.json.

Annotations cover every visible vertebra (partial ones included) and every lesion.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

from .. import labels
from ..dicom_annotations import write_rtstruct, write_seg
from ..image_io import write_image
from .case import Case
from .dicom_writer import write_dicom_series
from .grid import Grid
from .plan import rng_for
from .scanner import acquire
from .styles import ALL_STYLES

LESION_SEGMENT = "Lesion {kind}"
VERTEBRA_SEGMENT = "{name} vertebra"


def _uid(seed: int, *parts) -> str:
    return generate_uid(entropy_srcs=["MultiSpine-Sim", str(seed), *map(str, parts)])


def bone_series_folder(case: Case) -> str:
    return f"series2_bone_{case.params.slice_mm:.1f}mm"


def write_case(root: Path, case: Case, seed: int) -> Path:
    """Write one patient's study and annotation; returns the bone series folder (the one a reader must choose)."""
    pid = case.plan.case_id
    extra = case.plan.extra
    study = root / pid / extra["study"]
    study_uid, for_uid = _uid(seed, pid, "study"), _uid(seed, pid, "frame-of-reference")
    common = dict(patient_id=pid, patient_name=f"SIM^{pid.upper()}", study_instance_uid=study_uid,
                  frame_of_reference_uid=for_uid, seed=seed)
    style = ALL_STYLES[case.params.style]
    folder = study / bone_series_folder(case)
    files = write_dicom_series(case.ct_image(), folder, series_instance_uid=_uid(seed, pid, "bone"), series_number=2,
                               series_description=f"SPINE BONE {case.params.slice_mm:.1f}mm",
                               convolution_kernel=style.kernel, slice_thickness=case.params.thickness_mm,
                               shuffle_file_names=bool(extra.get("shuffle")), **common)
    if extra.get("localizer"):
        write_dicom_series(localizer(case), study / "series1_localizer", series_instance_uid=_uid(seed, pid, "localizer"),
                           series_number=1, series_description="TOPOGRAM", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                           **common)
    if extra.get("soft_series"):
        image, thick = soft_reconstruction(case, seed)
        write_dicom_series(image, study / f"series3_soft_{thick:.1f}mm", series_instance_uid=_uid(seed, pid, "soft"),
                           series_number=3, series_description=f"ABDOMEN SOFT {thick:.1f}mm", convolution_kernel="B30f",
                           slice_thickness=thick, **common)
    _write_annotation(root, case, files)
    return folder


def _masks(case: Case) -> Dict[str, sitk.Image]:
    vert, les = case.rendered.vertebrae, case.rendered.lesions
    masks = {VERTEBRA_SEGMENT.format(name=labels.name(c)): case.grid.image((vert == c).astype(np.uint8))
             for c in case.rendered.levels}
    for kind in ("lytic", "blastic"):
        ids = [l["id"] for l in case.rendered.lesion_info if l["type"] == kind]
        if ids:
            masks[LESION_SEGMENT.format(kind=kind)] = case.grid.image(np.isin(les, ids).astype(np.uint8))
    return masks


def _write_annotation(root: Path, case: Case, files: List[Path]) -> None:
    pid, kind = case.plan.case_id, case.plan.extra["annotation"]
    if kind == "nifti":
        write_image(case.label_image(), root / pid / "labels" / "vertebrae.nii.gz")
        write_image(case.lesion_image(), root / pid / "labels" / "lesions.nii.gz")
    elif kind == "seg":
        write_seg(_masks(case), files, root / pid / "seg" / "segmentation.dcm")
    elif kind == "rtstruct":
        write_rtstruct(_masks(case), files, root / pid / "rtstruct" / "rtstruct.dcm")
    else:
        raise ValueError(f"unknown annotation kind {kind!r}")


def annotation_entry(case: Case, seed: int) -> dict:
    pid, extra = case.plan.case_id, case.plan.extra
    entry = {"case": pid, "study": f"{pid}/{extra['study']}"}
    kind = extra["annotation"]
    if kind == "nifti":
        entry.update(vertebrae=f"{pid}/labels/vertebrae.nii.gz", lesions=f"{pid}/labels/lesions.nii.gz")
    elif kind == "seg":
        entry["segmentation"] = f"{pid}/seg/segmentation.dcm"
    else:
        # Name the series explicitly here, as a user would for a study whose series the rule might not pick.
        entry.update(rtstruct=f"{pid}/rtstruct/rtstruct.dcm", series_uid=_uid(seed, pid, "bone"))
    return entry


def write_mapping(root: Path, cases: List[Case], seed: int) -> Path:
    mapping = {
        "licence": "private",
        "label_values": {str(c): labels.name(c) for c in labels.ANATOMICAL_ORDER_CODES},
        "vertebra_segment": VERTEBRA_SEGMENT,
        "lesion_segments": ["*lesion*", "*metasta*", "*lytic*", "*blastic*"],
        "cases": [annotation_entry(c, seed) for c in cases],
    }
    path = root / "mapping.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mapping, indent=1) + "\n")
    return path


def localizer(case: Case) -> sitk.Image:
    """A coronal scout: the CT averaged front to back, stored as a 2-slice coronal image (a single-slice volume is
    not a 3D image for the series writer; real topograms come as one or two frames)."""
    lps = sitk.DICOMOrient(case.ct_image(), "LPS")
    arr = sitk.GetArrayFromImage(lps).astype(np.float32)  # (S, P, L)
    proj = np.clip(arr, -1000, None).mean(axis=1)  # (S, L)
    proj = proj[::-1]  # rows run head to foot
    img = sitk.GetImageFromArray(np.stack([proj, proj]).astype(np.int16))  # (2, S, L)
    sp = lps.GetSpacing()
    img.SetSpacing((sp[0], sp[2], 1.0))
    # columns -> left, rows -> inferior, slices -> posterior (right-handed: L x I = P)
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
    size = lps.GetSize()
    top = lps.TransformIndexToPhysicalPoint((0, size[1] // 2, size[2] - 1))
    img.SetOrigin(top)
    return img


def soft_reconstruction(case: Case, seed: int):
    """The same acquisition reconstructed with thick slices and a soft kernel: the ideal HU averaged over slabs of
    slices (the slab profile), then the scanner model with a smooth kernel and the lower noise of thick slices."""
    grid = case.grid
    if grid.head_foot_axis != 0:
        raise ValueError("the DICOM cohort's series are axial: the slice axis must run head-foot")
    f = max(2, int(np.ceil(4.9 / grid.spacing[2])))  # about 5 mm slabs
    n = grid.shape[0] // f
    hu = case.rendered.hu[: n * f].reshape(n, f, *grid.shape[1:]).mean(axis=1)
    d = np.array(grid.direction).reshape(3, 3)
    origin = np.asarray(grid.origin) + d[:, 2] * grid.spacing[2] * (f - 1) / 2.0
    thick = Grid((grid.size[0], grid.size[1], n), (grid.spacing[0], grid.spacing[1], grid.spacing[2] * f),
                 tuple(float(v) for v in origin), grid.direction, grid.axcodes)
    params = replace(case.params, slice_mm=thick.spacing[2], thickness_mm=thick.spacing[2], blur_mm=1.2, sharpen=0.0,
                     noise_sd=case.params.noise_sd / np.sqrt(f) * 0.6, noise_grain=1.3)
    ct = acquire(hu.astype(np.float32), thick, params, rng_for(seed, "soft", case.plan.key), None)
    return thick.image(ct), float(thick.spacing[2])
