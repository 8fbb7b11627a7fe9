"""The files ``vertebraformer predict`` writes per case, on the input's own grid and orientation (DESIGN.md 7).

``write_case_outputs`` writes, each file atomically:

- ``<case>.nii.gz``: the vertebra label map in VerSe codes (uint8), with the CT's exact size, spacing, origin and
  direction;
- ``<case>_lesion.nii.gz``: lesion instance ids 0..n, the ids of ``<case>.json`` ``lesions[].id`` (not written
  when the model has no lesion head);
- ``<case>_lesion_candidates.nii.gz``: every lesion candidate, ids 0..N, those of ``lesion_candidates[].id`` (the
  lesions keep their ids; ``lesions``: candidates, threshold and ids), what the evaluation ranks for the lesion AP;
- ``<case>_ctd.json``: vertebral-body centroids in VerSe's centroid format (direction entry, then label/X/Y/Z as
  voxel indices of the CT in its own axis codes);
- ``<case>_preview.png``: sagittal and coronal pictures (``preview=True``);
- ``<case>.json``: the case report, **last** (with ``numbering``: what the levels rest on, and ``quality``: the
  case's flag ok / warning / fail and its reasons, ``quality.py``). Its presence marks a finished case:
  ``predict --continue`` skips a case whose ``<case>.json`` exists. So the old report is removed before anything
  else is rewritten, and a run that dies part-way leaves no report and the case runs again.

World coordinates in the report are LPS millimetres (ITK/DICOM physical space), like everywhere in the project.
Memory: never a float copy of the whole grid; statistics (volume, mean HU, centroids) work inside each label's
bounding box (scipy.ndimage.find_objects), lesion candidates work inside their own boxes.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import labels
from ..atomic import write_text_atomic
from ..centroids import axcodes, body_centroids, write_verse_ctd
from ..evaluation.references import CANDIDATES_TAG, PRED_SUFFIX
from ..image_io import read_notes, write_image
from .lesion_contrast import METAL_FRACTION, METAL_HU
from .lesions import SCORE_DEFINITIONS, found_lesions, uint_for, written_lesions
from .postprocessing import Resolved, resolve
from .preview import write_colour_table, write_preview
from .quality import assess

__all__ = ["write_case_outputs", "case_files", "write_colour_table", "numbering_info"]


def case_files(out_dir, case: str) -> Dict[str, Path]:
    """The paths of one case's outputs; ``report`` is the one that marks the case finished."""
    out = Path(out_dir)
    return {"labels": out / f"{case}.nii.gz", "lesions": out / f"{case}_lesion.nii.gz",
            "lesion_candidates": out / f"{case}{CANDIDATES_TAG}{PRED_SUFFIX}", "centroids": out / f"{case}_ctd.json",
            "preview": out / f"{case}_preview.png", "report": out / f"{case}.json",
            "dicom_seg": out / f"{case}_seg.dcm"}


def numbering_info(numbering) -> Tuple[Dict[int, float], List[str]]:
    """(confidence per VerSe code, notes) from what the numbering step hands over: a mapping
    ``{code: {"confidence": c} or c, ..., "notes": [...]}`` (codes may be strings, as after JSON), an object with
    ``instances`` (dicts with code and confidence) and ``notes`` (a NumberingResult), or None."""
    if numbering is None:
        return {}, []
    if hasattr(numbering, "instances"):
        return ({int(i["code"]): float(i["confidence"]) for i in numbering.instances if i.get("code")},
                [str(n) for n in getattr(numbering, "notes", [])])
    confidence, notes = {}, []
    for key, value in numbering.items():
        if key == "notes":
            notes = [str(n) for n in value]
        elif key == "levels":  # {"levels": {code: ...}, "notes": [...]} nests the same thing one level down
            confidence.update(numbering_info(value)[0])
        else:
            confidence[int(key)] = float(value["confidence"] if isinstance(value, Mapping) else value)
    return confidence, notes


def write_case_outputs(out_dir, case: str, ct: sitk.Image, vertebrae: np.ndarray, lesion_prob: Optional[np.ndarray],
                       numbering=None, *, preview: bool = True, source: Optional[str] = None,
                       postprocessing: Optional[Resolved] = None, bone_edge: Optional[dict] = None,
                       centroid_labels: Optional[np.ndarray] = None) -> dict:
    """Write one case's outputs into ``out_dir`` (see the module docstring) and return the report written to
    ``<case>.json``.

    ``ct``: the input CT (HU) on its own grid; ``vertebrae``: VerSe codes (uint8) in SimpleITK array order (z, y, x)
    of ``ct``; ``lesion_prob``: lesion probabilities on the same grid, or None for a model without a lesion head;
    ``numbering``: per-code confidences and notes (see :func:`numbering_info`); ``source``: the input's path, kept
    in the report; ``postprocessing``: the post-processing values used, with their sources (the lesion threshold
    and minimum volume apply here; default: the documented defaults), recorded in the report; ``bone_edge``: what
    moving the boundaries onto the bone did (``bone_boundary.snap_to_bone``), recorded as it is;
    ``centroid_labels``: the label map (same codes and grid) the body centroids are estimated on, default
    ``vertebrae``: export passes the labels before the bone edge, as the centroid estimate (the vertebra's deepest
    core) moves with its surface: on phantoms the snapped masks' L5 centroids moved 10-33 mm and 7 of 71 cases lost
    a hit, while the snap moves no vertebra.
    """
    files = case_files(out_dir, case)
    vertebrae, boxes = _checked_vertebrae(vertebrae, ct, case)
    if lesion_prob is not None and np.shape(lesion_prob) != vertebrae.shape:
        raise ValueError(f"case {case}: lesion probabilities {np.shape(lesion_prob)} do not match the CT array "
                         f"{vertebrae.shape}")
    # The report marks a finished case: drop the old one first, so a crash below never leaves it beside new files.
    files["report"].unlink(missing_ok=True)
    confidence, notes = numbering_info(numbering)
    notes = [*read_notes(ct), *notes]  # what reading the input repaired (gantry tilt, a missing slice)
    postprocessing = postprocessing or resolve()
    notes += list(postprocessing.notes)
    pp = postprocessing.values

    label_image = sitk.GetImageFromArray(vertebrae)
    label_image.CopyInformation(ct)
    write_image(label_image, files["labels"])
    if centroid_labels is None:
        centroids_mm = body_centroids(label_image)
    else:
        centroid_image = sitk.GetImageFromArray(np.asarray(centroid_labels, dtype=np.uint8))
        centroid_image.CopyInformation(ct)
        centroids_mm = {c: xyz for c, xyz in body_centroids(centroid_image).items()
                        if c <= len(boxes) and boxes[c - 1] is not None}
    del label_image
    write_verse_ctd(files["centroids"], centroids_mm, ct)
    vertebra_rows = _vertebra_rows(ct, vertebrae, boxes, centroids_mm, confidence)

    instance_map, lesion_rows, candidate_rows = None, [], []
    if lesion_prob is None:
        files["lesions"].unlink(missing_ok=True)
        files["lesion_candidates"].unlink(missing_ok=True)
        notes.append("the model has no lesion head: no lesion map written")
    else:
        instance_map, candidate_rows, found = _write_lesions(files, ct, lesion_prob, vertebrae, pp)
        if found > len(candidate_rows):
            notes.append(f"{found} lesion candidates found, the {len(candidate_rows)} ranked first kept: the lesion "
                         "head is unsure over a wide region")
        lesion_rows = [r for r in candidate_rows if r["lesion"]]
        on_metal = sum(r["on_metal"] for r in candidate_rows)
        if on_metal:  # an implant in the field: say why the head's answers there are not lesions
            notes.append(f"{on_metal} lesion candidate(s) lie on metal (at least {METAL_FRACTION:.0%} of their "
                         f"voxels at {METAL_HU:g} HU or more: an implant, not a lesion)"
                         + (": ranked last, not written" if pp.lesion_ct_contrast else ""))

    if vertebra_rows:
        first, last = vertebra_rows[0]["name"], vertebra_rows[-1]["name"]
        notes.append(f"field of view: {first} to {last} ({len(vertebra_rows)} vertebrae)")
    else:
        first = last = None
        notes.append("no vertebra found")
    if preview:
        write_preview(files["preview"], ct, vertebrae, instance_map, centroids_mm=centroids_mm,
                      title=f"{case}: {first or '-'} to {last or '-'}, {len(lesion_rows)} lesion(s)")
    else:
        files["preview"].unlink(missing_ok=True)

    report = {
        "case": case,
        "source": None if source is None else str(source),
        "image": {"size": list(ct.GetSize()), "spacing": [float(v) for v in ct.GetSpacing()],
                  "origin": [float(v) for v in ct.GetOrigin()], "direction": [float(v) for v in ct.GetDirection()],
                  "axcodes": axcodes(ct)},
        "coordinates": "LPS world mm",
        "field_of_view": {"first": first, "last": last},
        "vertebrae": vertebra_rows,
        "lesion_score": SCORE_DEFINITIONS[pp.lesion_score] + (
            ", times its CT factor (ct_factor: min(1, |contrast_hu| / the SD of the bone around it))"
            if pp.lesion_ct_contrast else ""),
        "lesion_threshold": pp.lesion_threshold,
        "lesions": lesion_rows,
        "lesion_candidates": candidate_rows,
        "postprocessing": postprocessing.report(),
        "numbering": dict(getattr(numbering, "report", None) or {}),  # anchors, coarse stage, margin, count bound
        "bone_edge": bone_edge,
        "quality": getattr(numbering, "quality", None) or assess(vertebra_rows, anchors_looked_for=False),
        "notes": notes,
        "files": {k: p.name for k, p in files.items() if k not in ("report", "dicom_seg") and p.exists()},
    }
    write_text_atomic(files["report"], json.dumps(report, indent=1))
    return report


def _checked_vertebrae(vertebrae: np.ndarray, ct: sitk.Image, case: str):
    """(the vertebra map as uint8, the bounding box of each value (find_objects)), after checking that it has the CT's
    array shape and holds VerSe codes only; a clear error otherwise."""
    vertebrae = np.asarray(vertebrae)
    expected = ct.GetSize()[::-1]
    if vertebrae.shape != expected:
        raise ValueError(f"case {case}: vertebra map has shape {vertebrae.shape}, the CT array {expected} (z, y, x)")
    if vertebrae.dtype != np.uint8:
        if vertebrae.size and (vertebrae.min() < 0 or vertebrae.max() > 255):
            raise ValueError(f"case {case}: vertebra map values outside 0-255 are not VerSe codes")
        vertebrae = vertebrae.astype(np.uint8)
    boxes = ndimage.find_objects(vertebrae)
    unknown = [c for c, box in enumerate(boxes, start=1) if box is not None and c not in labels.VERSE_NAME]
    if unknown:
        raise ValueError(f"case {case}: vertebra map holds values {unknown} that are not VerSe codes")
    return vertebrae, boxes


def _vertebra_rows(ct: sitk.Image, vertebrae: np.ndarray, boxes: Sequence,
                   centroids_mm: Mapping[int, Sequence[float]], confidence: Mapping[int, float]) -> List[dict]:
    """Per vertebra, head to foot: code, name, centroid_mm (body centroid), volume_ml, mean_hu, confidence."""
    hu = sitk.GetArrayViewFromImage(ct)
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    present = [c for c, box in enumerate(boxes, start=1) if box is not None]
    rows = []
    for code in labels.sort_head_to_foot(present):
        box = boxes[code - 1]
        inside = vertebrae[box] == code
        centroid = centroids_mm.get(code)
        rows.append({
            "code": code,
            "name": labels.name(code),
            "centroid_mm": None if centroid is None else [round(float(v), 2) for v in centroid],
            "volume_ml": round(int(inside.sum()) * voxel_ml, 3),
            "mean_hu": round(float(hu[box][inside].mean(dtype=np.float64)), 1),
            "confidence": None if code not in confidence else round(float(confidence[code]), 4),
        })
    return rows


def _write_lesions(files: Mapping[str, Path], ct: sitk.Image, lesion_prob: np.ndarray, vertebrae: np.ndarray,
                   pp) -> Tuple[np.ndarray, List[dict], int]:
    """Write the candidate and lesion maps (``lesions``); returns (the lesion map, a report row per candidate kept,
    how many were found)."""
    candidate_map, candidates, found = found_lesions(lesion_prob, vertebrae, ct.GetSpacing()[::-1], pp,
                                                     hu=sitk.GetArrayViewFromImage(ct))
    lesion_map, _ = written_lesions(candidate_map, candidates)
    for key, array in (("lesion_candidates", candidate_map.astype(uint_for(len(candidates)))),
                       ("lesions", lesion_map)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(ct)
        write_image(image, files[key])
        del image, array
    del candidate_map
    return lesion_map, [_lesion_row(ct, c) for c in candidates], found


def _lesion_row(ct: sitk.Image, inst: dict) -> dict:
    """A lesion candidate of ``lesions.number_candidates`` (array indices) in world terms: centre and bounding box in
    LPS mm, its vertebra (VerSe code and name), every vertebra it touches, the nearest one when it touches none."""
    def world(kji):
        return np.array(ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji[::-1]]))

    # The box the lesion's voxels occupy: from the outer edge of its first voxel to that of its last, per axis.
    edges = [(lo - 0.5, hi + 0.5) for lo, hi in inst["bbox_index"]]
    corners = np.array([world(c) for c in itertools.product(*edges)])
    return {
        "id": inst["id"],
        "lesion": inst["lesion"],
        "level": inst["level_name"],
        "level_code": inst["level_code"],
        "levels": inst["levels"],
        "nearest_vertebra": inst["nearest"],
        "centre_mm": [round(float(v), 2) for v in world(inst["centre_index"])],
        "bbox_mm": {"min": [round(float(v), 2) for v in corners.min(axis=0)],
                    "max": [round(float(v), 2) for v in corners.max(axis=0)]},
        "volume_ml": round(inst["volume_mm3"] / 1000.0, 4),
        "score": inst["score"],
        "peak_probability": inst["peak"],
        "contrast_hu": inst["contrast_hu"],
        "ct_factor": inst["ct_factor"],
        "on_metal": inst["on_metal"],
    }
