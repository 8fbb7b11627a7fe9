"""Lesions from the lesion head's probability map: the candidates (``lesion_candidates``), which of them are written
as lesions, their ids, their vertebra (``lesion_levels``) and the two maps.

* Every candidate (down to ``lesion_candidate_floor``) gets a score (``lesion_score``) and is listed in
  ``<case>.json`` ``lesion_candidates[]``; its extent is drawn in ``<case>_lesion_candidates.nii.gz``. The
  evaluation ranks them all, so the lesion AP covers the whole precision-recall curve.
* Given the CT, each candidate is judged on it (``lesion_contrast``): its contrast against the bone around it
  scales its score and peak, and its extent follows the contrast.
* A candidate whose peak probability (times that factor) exceeds ``lesion_threshold`` is a lesion:
  ``<case>_lesion.nii.gz`` and ``lesions[]`` (the written map uses the chosen threshold; each lesion keeps its
  candidate's extent), when it is a spinal one: given a vertebra map with a vertebra, inside a vertebra or within
  ``lesion_levels.NEAREST_SEARCH_MM`` of one (a weak head's bright spots on a real abdomen CT's hip implant stay
  candidates).
* Ids: the lesions first, by descending score (ties: larger volume, then position), 1..n; then the other
  candidates in the same order, n+1..N. A lesion has the same id in both maps and both lists, and the lesion map is
  the candidate map with the ids above n cleared.
* At most :data:`MAX_CANDIDATES` are kept, the first in that order: a weak head's map found 36,610 candidates
  (419 lesions) on a 512x512x600 CT, whose rows and world boxes cost minutes and made a report nobody reads.

Pure numpy/scipy: arrays in any axis order, ``spacing`` in mm per array axis. Memory: the candidates' masks inside
their boxes, one 32-bit candidate map of the full grid; the lesion map is a copy in the smallest unsigned type.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .lesion_candidates import SCORE_DEFINITIONS, Candidate, check_inputs, find_candidates
from .lesion_contrast import judge_on_ct
from .lesion_levels import lesion_levels
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["SCORE_DEFINITIONS", "MAX_CANDIDATES", "find_lesions", "found_lesions", "judged_candidates",
           "number_candidates", "written_lesions", "uint_for"]


#: the most candidates kept per case (module docstring); a trained head's map holds a few dozen
MAX_CANDIDATES = 1000


def find_lesions(lesion_prob: np.ndarray, vertebrae: Optional[np.ndarray], spacing: Sequence[float],
                 params: Postprocessing = DEFAULTS) -> Tuple[np.ndarray, List[dict]]:
    """(candidate map int32 with ids 0..N, one row per candidate in id order) of a lesion probability map; see
    :func:`number_candidates` for the rows. ``vertebrae``: VerSe-coded vertebra map on the same grid, or None."""
    return found_lesions(lesion_prob, vertebrae, spacing, params)[:2]


def found_lesions(lesion_prob: np.ndarray, vertebrae: Optional[np.ndarray], spacing: Sequence[float],
                  params: Postprocessing = DEFAULTS,
                  hu: Optional[np.ndarray] = None) -> Tuple[np.ndarray, List[dict], int]:
    """:func:`find_lesions` and the number of candidates found before :data:`MAX_CANDIDATES` applied. ``hu``: the
    CT on the same grid, to judge the candidates on it (``lesion_contrast``; ``lesion_ct_contrast`` and
    ``lesion_ct_band_mm``)."""
    prob, _ = check_inputs(lesion_prob, spacing)
    for name, other in (("vertebra map", vertebrae), ("CT", hu)):
        if other is not None and np.shape(other) != prob.shape:
            raise ValueError(f"{name} {np.shape(other)} and lesion probabilities {prob.shape} differ in shape")
    found = find_candidates(prob, spacing, params)
    judged = judged_candidates(found, prob, hu, vertebrae, spacing, params)
    return (*number_candidates(judged, prob.shape, vertebrae, spacing, params), len(found))


def judged_candidates(found: Sequence[Candidate], prob: np.ndarray, hu: Optional[np.ndarray],
                      vertebrae: Optional[np.ndarray], spacing: Sequence[float],
                      params: Postprocessing = DEFAULTS) -> List[Candidate]:
    """``found`` judged on the CT (``lesion_contrast``) when ``hu`` and ``vertebrae`` are given and
    ``lesion_ct_contrast`` or ``lesion_ct_band_mm`` asks for it; else as they are. ``predict`` and
    ``determine-postprocessing`` both judge here, so a threshold chosen on validation cases means what predict
    compares."""
    if hu is None or vertebrae is None or not (params.lesion_ct_contrast or params.lesion_ct_band_mm):
        return list(found)
    # the first MAX_CANDIDATES by the head's own score: a weak head's tens of thousands are not judged
    found = sorted(found, key=lambda c: (-c.score(params.lesion_score), -c.voxels, c.centre_index))
    return judge_on_ct(found[:MAX_CANDIDATES], prob, hu, vertebrae, spacing, params.lesion_ct_band_mm,
                       weigh=bool(params.lesion_ct_contrast))


def number_candidates(candidates: Sequence[Candidate], shape: Sequence[int], vertebrae: Optional[np.ndarray],
                      spacing: Sequence[float], params: Postprocessing = DEFAULTS,
                      limit: int = MAX_CANDIDATES) -> Tuple[np.ndarray, List[dict]]:
    """Ids, lesion flags, levels and the candidate map of the first ``limit`` of ``candidates`` in id order
    (module docstring).

    Rows: id, lesion (peak times the CT factor above ``lesion_threshold`` and spinal: written as a lesion), score
    (``lesion_score`` times the CT factor), peak, CT factor, contrast (HU) and on_metal (``lesion_contrast``), mean
    and integrated (mm3) probability, volume_mm3, voxels, centre_index (centre of the extent, array axes),
    bbox_index ([first, last] per array axis, inclusive), level_code and level_name (0 and None outside every
    vertebra), levels (every vertebra it touches, with its fraction) and nearest (the nearest vertebra of a lesion
    outside every vertebra); see ``lesion_levels``."""
    kind = params.lesion_score
    # the levels of the candidates above the threshold first: whether they are spinal decides the ids
    where = {id(c): lesion_levels(vertebrae, c.box, c.mask, spacing)
             for c in candidates if c.weighted_peak > params.lesion_threshold}
    # nearness to the spine can only be judged where a vertebra was found
    judged = vertebrae is not None and bool(np.any(vertebrae))
    lesion = {key for key, at in where.items() if not judged or at["level_code"] or at["nearest"]}

    def order(c: Candidate):
        return (id(c) not in lesion, -c.score(kind), -c.voxels, c.centre_index)

    candidate_map = np.zeros(tuple(shape), dtype=np.int32)
    rows = []
    for new_id, c in enumerate(sorted(candidates, key=order)[:limit], start=1):
        candidate_map[c.box][c.mask] = new_id
        rows.append({
            "id": new_id,
            "lesion": id(c) in lesion,
            "score": round(c.score(kind), 4),
            "peak": round(c.peak, 4),
            "ct_factor": round(c.ct_factor, 4),
            "contrast_hu": None if c.contrast_hu is None else round(c.contrast_hu, 1),
            "on_metal": c.on_metal,
            "mean": round(c.mean, 4),
            "integrated_mm3": round(c.integrated_mm3, 3),
            "volume_mm3": round(c.volume_mm3, 3),
            "voxels": c.voxels,
            "centre_index": [round(v, 3) for v in c.centre_index],
            "bbox_index": c.bbox_index(),
            **(where[id(c)] if id(c) in where else lesion_levels(vertebrae, c.box, c.mask, spacing)),
        })
    return candidate_map, rows


def written_lesions(candidate_map: np.ndarray, rows: Sequence[dict]) -> Tuple[np.ndarray, List[dict]]:
    """(lesion map in the smallest unsigned type, the lesions' rows): the candidates flagged as lesions, which hold
    the first ids (module docstring); each is copied inside its own box."""
    lesions = [r for r in rows if r["lesion"]]
    if any(r["id"] != k for k, r in enumerate(lesions, start=1)):
        raise ValueError("the lesions must hold the first candidate ids (number_candidates numbers them so)")
    lesion_map = np.zeros(candidate_map.shape, dtype=uint_for(len(lesions)))
    for r in lesions:
        box = tuple(slice(first, last + 1) for first, last in r["bbox_index"])
        lesion_map[box][candidate_map[box] == r["id"]] = r["id"]
    return lesion_map, lesions


def uint_for(n: int) -> type:
    """The smallest unsigned type holding ids 0..n (smaller files)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{n} instances do not fit an unsigned 32-bit map")
