"""Lesion scores of validation cases for ``determine-postprocessing`` (``postprocessing_search``): a case's lesion
record at any post-processing values, and the pooled criteria the search compares values by.

* The candidate values (floor, smoothing, split ratio, extent, score, smallest volume) change which candidates
  exist and how they rank: they are compared by the **lesion AP** over every candidate (the evaluation's
  ``lesion_metrics.case_detection``), the mean of the pooled AP at IoU 0.1 and 0.3; per case, its AP.
* ``lesion_threshold`` changes only which candidates are written, never the ranking, so the AP cannot see it: it is
  compared by the **F1 score** of the written lesions (2 TP / (2 TP + FP + FN), pooled over the cases), mean over
  IoU 0.1 and 0.3; per case, its F1.
* A case without reference lesions scores minus its false positives (written lesions for F1, candidates for AP).

Everything runs on the model grid, as the rest of the search; the candidates of a case are found once per set of
candidate values (the threshold and the score reuse them). Given the CT and a vertebra map, the candidates are judged
on it as ``predict`` judges them (``lesions.judged_candidates``: ``lesion_ct_contrast``, ``lesion_ct_band_mm``), so
the threshold is chosen on the weighted peaks that ``predict`` compares with it; ``predict`` judges on the input's
own grid, the search on the model grid.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..evaluation import lesion_metrics
from .lesion_candidates import find_candidates
from .lesions import judged_candidates, number_candidates, written_lesions
from .postprocessing import Postprocessing

#: 3D IoU thresholds of the lesion criteria (the evaluation's)
LESION_IOUS = lesion_metrics.DEFAULT_THRESHOLDS
#: the post-processing fields that change which candidates exist (the others: their order, which are written)
CANDIDATE_NAMES = ("lesion_candidate_floor", "lesion_smoothing_mm", "lesion_split_ratio", "lesion_extent_fraction",
                   "lesion_min_volume_mm3")
#: the post-processing fields that judge the candidates on the CT (fixed export steps, not searched)
CT_NAMES = ("lesion_ct_contrast", "lesion_ct_band_mm")
#: the fields compared by the F1 score of the written lesions instead of the AP
OPERATING_POINT_NAMES = ("lesion_threshold",)


class LesionScorer:
    """One validation case's lesion records at any post-processing values (its candidates cached)."""

    def __init__(self, probability: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                 hu: Optional[np.ndarray] = None, vertebrae: Optional[np.ndarray] = None):
        """``hu``: the CT on the model grid; ``vertebrae``: the predicted vertebrae (any label map, 0 =
        background) on it; without both the candidates are not judged on the CT."""
        self.probability, self.spacing = probability, spacing
        self.hu, self.vertebrae = hu, vertebrae
        self.reference = lesion_metrics.reference_instances(reference)
        self._candidates: Dict[tuple, list] = {}

    def record(self, params: Postprocessing) -> dict:
        """``lesion_metrics.case_detection`` of the case at ``params``."""
        # the judged set is the first MAX_CANDIDATES by lesion_score, so the score is part of the key
        key = tuple(getattr(params, n) for n in CANDIDATE_NAMES + CT_NAMES + ("lesion_score",))
        if key not in self._candidates:
            found = find_candidates(self.probability, self.spacing, params)
            self._candidates[key] = judged_candidates(found, self.probability, self.hu, self.vertebrae, self.spacing,
                                                      params)
        candidate_map, rows = number_candidates(self._candidates[key], self.probability.shape, self.vertebrae,
                                                self.spacing, params)
        lesion_map, lesions = written_lesions(candidate_map, rows)
        return lesion_metrics.case_detection(self.reference, lesion_map, {r["id"]: r["score"] for r in lesions},
                                             candidate_map, {r["id"]: r["score"] for r in rows}, LESION_IOUS)


def criterion(name: str) -> str:
    """What the search compares values of the lesion field ``name`` by: "lesion AP" or "lesion F1"."""
    return "lesion F1" if name in OPERATING_POINT_NAMES else "lesion AP"


def pooled_score(name: str, per_case: Sequence[Optional[dict]]) -> Tuple[float, List[float]]:
    """(pooled score, per-case scores) of the lesion records of the cases for field ``name`` (module docstring)."""
    cases = [c for c in per_case if c is not None]
    if not cases:
        return float("nan"), []
    return (f1_score if name in OPERATING_POINT_NAMES else ap_score)(cases)


def ap_score(cases: Sequence[dict]) -> Tuple[float, List[float]]:
    pooled = []
    for iou in LESION_IOUS:
        tp, owner, n_ref = lesion_metrics.pooled_inputs(cases, iou, ranking=True)
        pooled.append(float(lesion_metrics.pooled_detection(tp, owner, n_ref)["ap"]))
    per = []
    for c in cases:
        aps = [c["thresholds"][lesion_metrics.threshold_key(t)]["ap"] for t in LESION_IOUS]
        per.append(float(np.mean(aps)) if c["n_reference"] else -float(c.get("n_candidates", c["n_predicted"])))
    return float(np.mean(pooled)), per


def f1_score(cases: Sequence[dict]) -> Tuple[float, List[float]]:
    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    pooled, per = [], []
    for iou in LESION_IOUS:
        counts = [c["thresholds"][lesion_metrics.threshold_key(iou)] for c in cases]
        pooled.append(f1(*(sum(e[k] for e in counts) for k in ("tp", "fp", "fn"))))
    for c in cases:
        entries = [c["thresholds"][lesion_metrics.threshold_key(t)] for t in LESION_IOUS]
        per.append(float(np.mean([f1(e["tp"], e["fp"], e["fn"]) for e in entries])) if c["n_reference"]
                   else -float(c["n_predicted"]))
    return float(np.mean(pooled)), per
