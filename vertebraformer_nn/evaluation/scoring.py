"""Scoring one case: its reference and prediction read, the border rule applied (``border``), every metric.

Prediction folder (the predictor's output): ``<case>.nii.gz`` (VerSe codes), ``<case>_lesion.nii.gz`` (lesion
instance ids), ``<case>_lesion_candidates.nii.gz`` (every candidate, optional: without it the AP ranks the written
lesions only, noted), ``<case>_ctd.json`` (else centroids are computed from the predicted mask, noted) and
``<case>.json`` (``lesions[]`` and ``lesion_candidates[]``: ``id``, ``score``). Every file must lie on the
reference grid. A case whose reference has no centroids gets them from its reference mask
(``centroids.body_centroids``); the record says so. An expected case without a prediction, or whose prediction
cannot be used (unreadable, another grid, unknown codes), is scored as an empty prediction (Dice 0, no vertebra
identified, no lesion found) and listed as a failure.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .. import centroids, image_io, labels
from ..geometry import superior_axis
from . import lesion_metrics, metrics
from .border import apply_border_rule
from .references import (CANDIDATES_TAG, CTD_TAG, IGNORE_VALUE, LESION_TAG, PRED_SUFFIX, ReferenceCase,
                         present_values, reference_codes, verse_codes)


def _read_on_grid(path: Path, grid: Optional[sitk.Image], what: str) -> sitk.Image:
    image = image_io.read_label(path)
    problem = image_io.grid_mismatch(grid, image) if grid is not None else None
    if problem:
        raise image_io.ImageReadError(f"{path}: {what} is not on the reference grid ({problem})")
    return image


def _scores(path: Path, notes: List[str], key: str = "lesions") -> Dict[int, float]:
    """{id: score} of the prediction's ``<case>.json`` list ``key`` (``lesions`` or ``lesion_candidates``)."""
    if not path.is_file():
        notes.append(f"{path.name} missing: predicted lesions ranked without scores (all 0)")
        return {}
    try:
        entries = json.loads(path.read_text()).get(key) or []
        return {int(e["id"]): float(e["score"]) for e in entries}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise image_io.ImageReadError(f"{path}: no readable {key}[].id/score ({e})") from None


def _with_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def evaluate_case(rc: ReferenceCase, pred_dir: Path, *, code_lut: Optional[np.ndarray] = None,
                  ignore_value: Optional[int] = IGNORE_VALUE,
                  thresholds: Sequence[float] = lesion_metrics.DEFAULT_THRESHOLDS,
                  id_radius_mm: float = metrics.ID_RADIUS_MM, id_rule: str = "closest_prediction") -> dict:
    """Every metric of one case. ``code_lut``/``ignore_value``: how the reference's label values read (the
    ``Reference``'s). A prediction that is missing or unusable scores as an empty one; its problem is listed and
    ``status`` is "missing" or "failed". A reference that cannot be read gives status "reference_error" and no
    metrics. ``border`` says what the border rule left out."""
    record = {"case": rc.case, "domain": rc.domain, "subject": rc.subject or rc.case, "split": rc.split,
              "status": "ok", "problems": [], "notes": []}
    problems = record["problems"]
    try:
        ref_img = image_io.read_label(rc.labels)
        ref, ignore = reference_codes(sitk.GetArrayFromImage(ref_img), code_lut, ignore_value, rc.labels)
    except image_io.ImageReadError as e:
        record.update(status="reference_error", problems=[str(e)])
        return record
    ref_lesions = None
    if rc.lesion_annotated:
        try:
            ref_lesions = lesion_metrics.reference_instances(sitk.GetArrayFromImage(
                _read_on_grid(rc.lesions, ref_img, "reference lesion map")))
        except image_io.ImageReadError as e:
            problems.append(f"{e} (case left out of the lesion metrics)")
    ref_ctd, ref_ctd_source = _reference_centroids(rc, ref, ref_img, problems)

    seg_path = pred_dir / (rc.case + PRED_SUFFIX)
    pred, pred_img = np.zeros_like(ref), None
    if not seg_path.is_file():
        record["status"] = "missing"
        problems.append(f"{seg_path}: no prediction")
    else:
        try:
            pred_img = _read_on_grid(seg_path, ref_img, "predicted label map")
            pred = verse_codes(sitk.GetArrayFromImage(pred_img), None, seg_path)
        except image_io.ImageReadError as e:
            problems.append(str(e))
            pred_img = None

    spacing = ref_img.GetSpacing()[::-1]  # array axes are (z, y, x)
    scored = apply_border_rule(ref, ignore, pred, superior_axis(ref_img.GetDirection())[0])
    record["segmentation"] = metrics.segmentation_metrics(scored.reference, scored.prediction, spacing)

    pred_ctd, pred_ctd_source = {}, "none (no usable prediction)"
    if pred_img is not None:
        pred_ctd, pred_ctd_source = _predicted_centroids(pred_dir / (rc.case + CTD_TAG), pred, pred_img, record)
    whole = set(present_values(scored.reference).tolist())
    cut = sorted(c for c in ref_ctd if scored.ignore_voxels and c not in whole)
    ref_ctd = {c: p for c, p in ref_ctd.items() if c not in cut}
    pred_ctd = {c: p for c, p in pred_ctd.items() if c not in scored.not_scored}
    record["border"] = {"ignore_voxels": scored.ignore_voxels, "predicted_not_scored": _names(scored.not_scored),
                        "reference_centroids_dropped": _names(cut)}
    numbering = metrics.identification(ref_ctd, pred_ctd, id_radius_mm, id_rule)
    numbering.update(reference_centroids=ref_ctd_source, predicted_centroids=pred_ctd_source)
    record["numbering"] = numbering

    record["lesions"] = None
    if ref_lesions is not None:
        pred_lesions, scores, candidates = np.zeros_like(ref_lesions), {}, None
        if record["status"] != "missing":
            found, scores = _predicted_lesions(pred_dir, rc.case, ref_img, record)
            pred_lesions = pred_lesions if found is None else found
            candidates = _predicted_candidates(pred_dir, rc.case, ref_img, record) if found is not None else None
        record["lesions"] = lesion_metrics.case_detection(ref_lesions, pred_lesions, scores, *(candidates or ()),
                                                          thresholds=thresholds)
    if problems and record["status"] == "ok":
        record["status"] = "failed"
    return record


def _predicted_lesions(pred_dir: Path, case: str, ref_img: sitk.Image, record: dict):
    """(instance map, {id: score}); an unusable map counts as no lesion found, unusable scores as all 0."""
    path = pred_dir / (case + LESION_TAG + PRED_SUFFIX)
    try:
        if not path.is_file():
            raise image_io.ImageReadError(f"{path}: no predicted lesion map")
        instances = sitk.GetArrayFromImage(_read_on_grid(path, ref_img, "predicted lesion map"))
    except image_io.ImageReadError as e:
        record["problems"].append(f"{e} (no lesion counted as found)")
        return None, {}
    try:
        scores = _scores(pred_dir / (case + ".json"), record["notes"])
    except image_io.ImageReadError as e:
        record["problems"].append(f"{e} (predicted lesions ranked without scores)")
        scores = {}
    _note_unscored(instances, scores, record["notes"])
    return instances, scores


def _predicted_candidates(pred_dir: Path, case: str, ref_img: sitk.Image, record: dict):
    """(candidate map, {id: score}) of ``<case>_lesion_candidates.nii.gz`` and ``lesion_candidates[]``, or None
    (noted: the AP then ranks the written lesions only)."""
    path = pred_dir / (case + CANDIDATES_TAG + PRED_SUFFIX)
    if not path.is_file():
        record["notes"].append(f"no {path.name}: the lesion AP ranks the written lesions only")
        return None
    try:
        candidates = sitk.GetArrayFromImage(_read_on_grid(path, ref_img, "predicted lesion candidate map"))
        scores = _scores(pred_dir / (case + ".json"), [], "lesion_candidates")
    except image_io.ImageReadError as e:
        record["problems"].append(f"{e} (the lesion AP ranks the written lesions only)")
        return None
    _note_unscored(candidates, scores, record["notes"], "lesion candidate")
    return candidates, scores


def _note_unscored(instances: np.ndarray, scores: Mapping[int, float], notes: List[str],
                   what: str = "lesion") -> None:
    ids = {int(v) for v in present_values(instances) if v > 0}
    unscored, absent = sorted(ids - set(scores)), sorted(set(scores) - ids)
    if scores and unscored:
        notes.append(f"predicted {what} ids without a score (ranked last): {unscored}")
    if absent:
        notes.append(f"scored {what} ids absent from the {what} map (ignored): {absent}")


def _reference_centroids(rc: ReferenceCase, ref: np.ndarray, ref_img: sitk.Image, problems: List[str]):
    if rc.centroids_mm:
        return rc.centroids_mm, rc.centroid_source
    if rc.ctd is not None:
        try:
            return centroids.read_verse_ctd(rc.ctd, ref_img), f"reference centroid file {rc.ctd.name}"
        except ValueError as e:
            problems.append(f"{e}; reference centroids computed from the reference mask instead")
    return (centroids.body_centroids(_with_array(ref, ref_img)),
            "computed from the reference mask (centroids.body_centroids)")


def _predicted_centroids(ctd_path: Path, pred: np.ndarray, pred_img: sitk.Image, record: dict):
    if ctd_path.is_file():
        try:
            return centroids.read_verse_ctd(ctd_path, pred_img), f"prediction centroid file {ctd_path.name}"
        except ValueError as e:
            record["problems"].append(f"{e}; centroids computed from the predicted mask instead")
    else:
        record["notes"].append(f"{ctd_path.name} missing: predicted centroids computed from the predicted mask")
    return (centroids.body_centroids(_with_array(pred, pred_img)),
            "computed from the predicted mask (centroids.body_centroids)")


def _names(codes) -> List[str]:
    return [labels.name(c) if c in labels.VERSE_NAME else str(c) for c in labels.sort_head_to_foot(codes)]
