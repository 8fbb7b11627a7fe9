"""Segmentation and numbering metrics: pure functions, numpy arrays and centroid dicts in, dicts out.

Segmentation (label maps of VerSe codes on one grid, ``spacing`` in mm per array axis):

* Dice per vertebra over every code present in the reference *or* the prediction: a vertebra absent from one
  of the two scores 0 (a missed or an invented vertebra is an error). The case's Dice is the mean over those
  vertebrae; a case with no vertebra in either map has none (NaN).
* HD95 per vertebra: the 95th percentile of the symmetric surface distances (both directions pooled, as
  MedPy's ``hd95``), in mm. Surfaces are the mask voxels with a 6-neighbour outside the mask; distances come
  from a Euclidean distance transform in physical spacing. A vertebra present in only one map has no finite
  HD95 (``inf``): it is left out of the case mean and counted in ``hd95_undefined``.
* binary spine Dice: every vertebra label against background.

Numbering (centroids as ``{VerSe code: world point in mm}``; any common physical frame, LPS here, so the image
orientation never matters):

* identification (VerSe): a reference vertebra is *hit* when the prediction has a centroid with the same code,
  that centroid is the closest predicted centroid to the reference one (``rule="closest_prediction"``, the
  definition of DESIGN.md section 8 and the VerSe Tasks pages) and it lies within ``radius_mm`` (20 mm,
  inclusive). A code missing from the prediction is a miss. ``rule="verse_code"`` reproduces the official
  ``get_hits`` of ``anjany/verse`` instead: only codes present in both count as candidates, and the test is
  that the *reference* centroid closest to the predicted one carries its code.
* localisation distance: mean distance between reference and predicted centroids of the same code, over the
  reference vertebrae that have one (hit or not).
* all correct: the case has at least one reference vertebra, every one is hit, and the prediction names no code
  that the reference lacks.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from .. import labels

ID_RADIUS_MM = 20.0
ID_RULES = ("closest_prediction", "verse_code")
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def _check_same_shape(ref: np.ndarray, pred: np.ndarray) -> None:
    if ref.shape != pred.shape:
        raise ValueError(f"reference shape {ref.shape} and prediction shape {pred.shape} differ")


def overlap_counts(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Voxel counts ``C[r, p]`` of reference label r against predicted label p (C[0, 0] left at 0: background
    agreement is never needed, and skipping it keeps a large CT cheap)."""
    ref, pred = np.asarray(ref), np.asarray(pred)
    _check_same_shape(ref, pred)
    if (ref.size and min(int(ref.min()), int(pred.min())) < 0):
        raise ValueError("label maps hold negative values")
    n = int(max(ref.max(initial=0), pred.max(initial=0))) + 1
    either = (ref > 0) | (pred > 0)
    pairs = ref[either].astype(np.int64) * n + pred[either].astype(np.int64)
    return np.bincount(pairs, minlength=n * n).reshape(n, n)


def dice_from_counts(tp: float, fp: float, fn: float, empty: float = float("nan")) -> float:
    """The project's one Dice: 2tp / (2tp + fp + fn) from voxel (or any) counts; ``empty`` when there is nothing to
    score (no positive in prediction or reference): NaN by default, VerSe's ``compute_dice`` uses 1.0."""
    den = 2 * tp + fp + fn
    return float(2 * tp / den) if den > 0 else float(empty)


def dice_per_label(ref: np.ndarray, pred: np.ndarray) -> Dict[int, float]:
    """{label: Dice} for every non-zero label present in ``ref`` or ``pred`` (0 when absent from one)."""
    counts = overlap_counts(ref, pred)
    hits, in_ref, in_pred = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    return {c: dice_from_counts(hits[c], in_pred[c] - hits[c], in_ref[c] - hits[c])
            for c in range(1, len(in_ref)) if in_ref[c] + in_pred[c]}


def binary_dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Dice of ``ref > 0`` against ``pred > 0``; 1.0 when both are empty (VerSe's ``compute_dice`` convention)."""
    counts = overlap_counts(ref, pred)
    both = counts[1:, 1:].sum()
    return dice_from_counts(both, counts[0, 1:].sum(), counts[1:, 0].sum(), empty=1.0)


def _surface(mask: np.ndarray) -> np.ndarray:
    # The crop is padded with background, so voxels on the crop (or image) border count as surface.
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_NEIGHBOURS)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]):
    """(distances from each surface voxel of ``a`` to the surface of ``b``, and from ``b`` to ``a``), in mm.
    Both masks must be non-empty. Works on the bounding box of ``a | b`` only: the nearest surface voxel of the
    other mask always lies inside it."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    _check_same_shape(a, b)
    (box,) = ndimage.find_objects((a | b).astype(np.uint8))
    a, b = np.pad(a[box], 1), np.pad(b[box], 1)
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return to_b[sa], to_a[sb]


def hd95(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile Hausdorff distance (mm) between two masks: ``inf`` when exactly one is empty, NaN when
    both are."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not (has_a or has_b):
        return math.nan
    if not (has_a and has_b):
        return math.inf
    d_ab, d_ba = surface_distances(a, b, spacing)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))


def _finite_mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def segmentation_metrics(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> dict:
    """Per-vertebra Dice and HD95 of two VerSe-coded maps (one grid; ``spacing`` per array axis, mm), the case
    means and the binary spine Dice. JSON-ready: an undefined HD95 is ``None``."""
    ref, pred = np.asarray(ref), np.asarray(pred)
    dice = dice_per_label(ref, pred)
    ref_boxes = ndimage.find_objects(ref.astype(np.int32, copy=False))
    pred_boxes = ndimage.find_objects(pred.astype(np.int32, copy=False))

    def box(boxes, code):
        return boxes[code - 1] if code <= len(boxes) else None

    per_vertebra, undefined = {}, []
    for code in labels.sort_head_to_foot(dice):
        in_ref, in_pred = box(ref_boxes, code) is not None, box(pred_boxes, code) is not None
        distance = None
        if in_ref and in_pred:
            union = tuple(slice(min(r.start, p.start), max(r.stop, p.stop))
                          for r, p in zip(box(ref_boxes, code), box(pred_boxes, code)))
            distance = hd95(ref[union] == code, pred[union] == code, spacing)
        else:
            undefined.append(_name(code))
        per_vertebra[_name(code)] = {"code": int(code), "dice": float(dice[code]), "hd95_mm": distance,
                                     "in_reference": in_ref, "in_prediction": in_pred}
    return {
        "dice": _finite_mean(v["dice"] for v in per_vertebra.values()),
        "hd95_mm": _finite_mean(v["hd95_mm"] for v in per_vertebra.values()),
        "binary_dice": binary_dice(ref, pred),
        "hd95_undefined": undefined,
        "per_vertebra": per_vertebra,
    }


def _name(code: int) -> str:
    try:
        return labels.name(code)
    except KeyError:
        return str(code)


# --- numbering ---------------------------------------------------------------------------------------------------

def _points(centroids: Mapping[int, Sequence[float]]) -> Dict[int, np.ndarray]:
    out = {}
    for code, point in centroids.items():
        p = np.asarray(point, dtype=float).reshape(-1)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"centroid of code {code} is not a finite 3D point: {point!r}")
        out[int(code)] = p
    return out


def identification(reference: Mapping[int, Sequence[float]], prediction: Mapping[int, Sequence[float]],
                   radius_mm: float = ID_RADIUS_MM, rule: str = "closest_prediction") -> dict:
    """VerSe identification of one case (see the module docstring for the rules). Returns hits, the number of
    reference vertebrae, ``id_rate`` (None without reference vertebrae), ``mean_distance_mm`` (None when no code
    is shared), ``all_correct``, ``missing`` and ``extra`` codes, and a per-vertebra table keyed by name."""
    if rule not in ID_RULES:
        raise ValueError(f"unknown identification rule {rule!r} (one of {', '.join(ID_RULES)})")
    ref, pred = _points(reference), _points(prediction)
    ref_codes = labels.sort_head_to_foot(ref)
    pred_codes = list(pred)
    pred_xyz = np.array([pred[c] for c in pred_codes]).reshape(-1, 3)
    shared = [c for c in ref_codes if c in pred]
    shared_ref_xyz = np.array([ref[c] for c in shared]).reshape(-1, 3)

    per_vertebra, hits, distances = {}, 0, []
    for code in ref_codes:
        entry = {"code": code, "hit": False, "distance_mm": None, "nearest_prediction": None}
        if pred_codes:
            nearest = pred_codes[int(np.argmin(np.linalg.norm(pred_xyz - ref[code], axis=1)))]
            entry["nearest_prediction"] = _name(nearest)
        if code in pred:
            d = float(np.linalg.norm(pred[code] - ref[code]))
            distances.append(d)
            entry["distance_mm"] = d
            if rule == "closest_prediction":
                closest = d <= float(np.linalg.norm(pred_xyz - ref[code], axis=1).min()) + 1e-9
            else:  # official get_hits: the shared reference centroid nearest to the prediction carries its code
                closest = d <= float(np.linalg.norm(shared_ref_xyz - pred[code], axis=1).min()) + 1e-9
            entry["hit"] = bool(closest and d <= radius_mm)
        hits += entry["hit"]
        per_vertebra[_name(code)] = entry
    extra = [_name(c) for c in labels.sort_head_to_foot([c for c in pred_codes if c not in ref])]
    missing = [_name(c) for c in ref_codes if c not in pred]
    n = len(ref_codes)
    return {
        "hits": hits,
        "n_reference": n,
        "n_predicted": len(pred_codes),
        "id_rate": hits / n if n else None,
        "mean_distance_mm": float(np.mean(distances)) if distances else None,
        "all_correct": bool(hits == n and not extra) if n else None,
        "missing": missing,
        "extra": extra,
        "per_vertebra": per_vertebra,
    }
