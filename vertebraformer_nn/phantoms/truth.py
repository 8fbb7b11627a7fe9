"""Complete ground truth beside the sources (evaluation only): every vertebra (partial ones too), lesion
instances and vertebral-body centroids on each source image's own grid, and the index entry of each case
(docs/source_layouts.md, "MultiSpine-Sim extras")."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from .. import labels
from ..centroids import write_verse_ctd
from ..image_io import write_image
from .case import Case
from .styles import ALL_STYLES

# What each source's own files annotate (the truth always has everything).
ANNOTATED = {
    "verse": {"vertebrae": True, "partial_vertebrae": False, "centroids": True, "lesions": False, "fracture_grades": True},
    "ctspine1k": {"vertebrae": True, "partial_vertebrae": True, "centroids": False, "lesions": False, "fracture_grades": False},
    "spineweb": {"vertebrae": True, "partial_vertebrae": True, "centroids": False, "lesions": False, "fracture_grades": False},
    "dicom": {"vertebrae": True, "partial_vertebrae": True, "centroids": False, "lesions": True, "fracture_grades": False},
}
NOTHING = {"vertebrae": False, "partial_vertebrae": False, "centroids": False, "lesions": False, "fracture_grades": False}


def truth_paths(case: Case) -> Dict[str, str]:
    base = f"ground_truth/{case.plan.source}/{case.plan.case_id}"
    return {"vertebrae": f"{base}_vert.nii.gz", "lesions": f"{base}_lesion.nii.gz", "centroids": f"{base}_ctd.json"}


def write_truth(out: Path, case: Case) -> Dict[str, str]:
    paths = truth_paths(case)
    vert = case.label_image()
    write_image(vert, out / paths["vertebrae"])
    write_image(case.lesion_image(), out / paths["lesions"])
    write_verse_ctd(out / paths["centroids"], case.rendered.centroids, vert)
    return paths


def annotated(case: Case) -> Dict[str, bool]:
    ann = dict(ANNOTATED.get(case.plan.source, NOTHING))
    if case.plan.source == "spineweb" and case.plan.extra.get("centroid_only"):
        ann.update(vertebrae=False, partial_vertebrae=False, centroids=True)
    return ann


def _split(case: Case) -> Optional[str]:
    if case.plan.source == "verse":
        return case.plan.extra["release"].replace("dataset-verse20", "")
    if case.plan.source == "ctspine1k":
        return case.plan.extra["split"]
    return None


def index_entry(case: Case, image_rel: str, truth: Dict[str, str]) -> dict:
    r, p, g = case.rendered, case.params, case.grid
    present = set(r.levels)
    fractures = [{"vertebra": c, "grade": grade, "type": kind} for c, grade, kind in case.subject.fractures if c in present]
    lesions = [{k: les[k] for k in ("id", "type", "vertebra", "site", "centre_mm", "voxels")} for les in r.lesion_info]
    entry = {
        "source": case.plan.source,
        "case_id": case.plan.case_id,
        "case": f"{case.plan.source}_{case.plan.case_id}",
        "subject": case.subject_id,
        "image": image_rel,
        "style": p.style,
        "fov": p.fov,
        "levels": list(r.levels),
        "partial": list(r.partial),
        "transitional": case.subject.transitional,
        "lesions": lesions,
        "fractures": fractures,
        "metal": bool(r.metal.any()) if r.metal is not None else False,
        "annotated": annotated(case),
        "split": _split(case),
        "duplicate_of": case.plan.extra.get("duplicate_of"),
        "scan": {
            "orientation": g.axcodes,
            "size": list(g.size),
            "spacing": [round(s, 4) for s in g.spacing],
            "slice_thickness_mm": round(p.thickness_mm, 3),
            "noise_sd": round(p.noise_sd, 2),
            "hu_offset": round(p.hu_offset, 2),
            "hu_slope": round(p.hu_slope, 4),
            "kernel": ALL_STYLES[p.style].kernel,
            "contrast": p.contrast.phase + ("+oral" if p.contrast.oral_hu is not None else ""),
            "randomised": list(p.wide),
        },
        "centroids_mm": {str(c): [round(float(v), 3) for v in r.centroids[c]] for c in labels.sort_anatomically(r.centroids)},
        "truth": truth,
    }
    return entry
