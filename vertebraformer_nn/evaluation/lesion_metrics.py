"""Lesion detection metrics: pure functions on instance maps and ranked predictions.

* Reference instances are the connected components (26-connectivity, cc3d) of the binary reference lesion map;
  predicted instances are the ids of the predicted instance map (``<case>_lesion.nii.gz``), each with a score.
* Overlap is the 3D IoU of two instance masks. Predictions are taken in descending score (ties: lower id
  first) and each is matched greedily to the still unmatched reference instance of highest IoU, when that
  IoU is at least the threshold (0.1 and 0.3 by default): a true positive; otherwise a false positive.
  Unmatched reference instances are false negatives.
* precision = TP / predicted instances, recall = TP / reference instances (NaN when the denominator is 0);
  average precision = area under the precision-recall curve of the ranked predictions with all-points
  interpolation (PASCAL VOC 2010+: precision made monotone from the right, summed over the recall steps; not
  COCO's 101-point sampling), NaN without reference instances. Reference lesions that no prediction matches add
  recall steps of precision 0.
* Two lists per case (:func:`case_detection`): the written lesions (``<case>_lesion.nii.gz``, the operating point
  at the model's threshold) give TP/FP/FN, precision and recall; every candidate (``<case>_lesion_candidates.nii.gz``
  with the scores of ``lesion_candidates[]``, down to the lowest probability the predictor kept) gives the AP, over
  the whole precision-recall curve. A prediction without candidates is ranked by its written lesions alone
  (``ranking``: "lesions"), as a tool that writes only a lesion map has nothing else.
* Pooled over cases: every case's ranked predictions merged by score, reference counts summed. The pooled
  functions take per-case weights (patient multiplicities of a bootstrap resample) so one call evaluates many
  resamples at once; a case taken k times counts as k copies of itself.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import cc3d
import numpy as np

CONNECTIVITY = 26
DEFAULT_THRESHOLDS = (0.1, 0.3)


def reference_instances(lesion_map: np.ndarray) -> np.ndarray:
    """Instance ids 1..n of the connected components of ``lesion_map > 0`` (26-connectivity)."""
    binary = np.ascontiguousarray(np.asarray(lesion_map) > 0, dtype=np.uint8)
    return cc3d.connected_components(binary, connectivity=CONNECTIVITY)


def instance_ious(ref_instances: np.ndarray, pred_instances: np.ndarray):
    """(reference ids, predicted ids, IoU matrix [n_ref, n_pred]) of two instance maps on one grid."""
    ref, pred = np.asarray(ref_instances), np.asarray(pred_instances)
    if ref.shape != pred.shape:
        raise ValueError(f"reference lesion shape {ref.shape} and prediction shape {pred.shape} differ")
    ref_ids, ref_sizes = np.unique(ref[ref > 0], return_counts=True)
    pred_ids, pred_sizes = np.unique(pred[pred > 0], return_counts=True)
    iou = np.zeros((len(ref_ids), len(pred_ids)))
    both = (ref > 0) & (pred > 0)
    if both.any():
        pairs, inter = np.unique(np.stack([ref[both], pred[both]]).astype(np.int64), axis=1, return_counts=True)
        i, j = np.searchsorted(ref_ids, pairs[0]), np.searchsorted(pred_ids, pairs[1])
        iou[i, j] = inter / (ref_sizes[i] + pred_sizes[j] - inter)
    return ref_ids, pred_ids, iou


def rank(scores: Sequence[float]) -> np.ndarray:
    """Order of predictions by descending score; ties keep their given order."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")


def greedy_match(iou: np.ndarray, order: Sequence[int], threshold: float) -> np.ndarray:
    """For each prediction in ``order``: the index of the reference instance it matches, or -1."""
    iou = np.asarray(iou, dtype=float)
    free = np.ones(iou.shape[0], dtype=bool)
    matched = np.full(len(order), -1)
    for k, j in enumerate(order):
        candidates = np.where(free & (iou[:, j] >= threshold), iou[:, j], -1.0)
        if candidates.size and candidates.max() >= 0:
            i = int(np.argmax(candidates))
            matched[k], free[i] = i, False
    return matched


def detection_curve(tp_ranked, n_reference, weights=None) -> Dict[str, np.ndarray]:
    """Precision, recall and all-points average precision of ranked predictions.

    ``tp_ranked`` (n,): true-positive flags in rank order. ``weights``: None, or (B, n) copies of each
    prediction (bootstrap multiplicities) with ``n_reference`` of shape (B,). A prediction taken w times is w
    adjacent copies; their recall steps all get the precision after the last copy (it is the highest of them),
    so the weighted sum equals the AP of the expanded list. Returns arrays of shape (B,) (or 0-d)."""
    tp = np.asarray(tp_ranked, dtype=float)
    w = np.ones((1, tp.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    n_ref = np.atleast_1d(np.asarray(n_reference, dtype=float))
    wtp = w * tp
    count, hits = np.cumsum(w, axis=-1), np.cumsum(wtp, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision_at = np.where(count > 0, hits / np.maximum(count, 1e-300), 0.0)
        envelope = np.flip(np.maximum.accumulate(np.flip(precision_at, -1), axis=-1), -1)
        total_tp, total_pred = wtp.sum(-1), w.sum(-1)
        out = {
            "precision": np.where(total_pred > 0, total_tp / np.maximum(total_pred, 1e-300), np.nan),
            "recall": np.where(n_ref > 0, total_tp / np.maximum(n_ref, 1e-300), np.nan),
            "ap": np.where(n_ref > 0, (wtp * envelope).sum(-1) / np.maximum(n_ref, 1e-300), np.nan),
        }
    return {k: (v[0] if weights is None else v) for k, v in out.items()}


def _value(x) -> Optional[float]:
    x = float(x)
    return None if np.isnan(x) else x


def case_lesion_metrics(ref_instances: np.ndarray, pred_instances: np.ndarray, scores: Mapping[int, float],
                        thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict:
    """Detection metrics of one case at each IoU threshold. ``scores``: {predicted id: score}; an id without a
    score ranks as 0. JSON-ready: the ranked predictions (id, score, best IoU) and, per threshold, TP flags in
    that rank order (what pooling needs), counts, precision, recall, AP (None when undefined)."""
    ref_ids, pred_ids, iou = instance_ious(ref_instances, pred_instances)
    pred_scores = [float(scores.get(int(i), 0.0)) for i in pred_ids]
    order = rank(pred_scores)
    ranked = [{"id": int(pred_ids[j]), "score": pred_scores[j],
               "best_iou": float(iou[:, j].max()) if len(ref_ids) else 0.0} for j in order]
    per_threshold = {}
    for t in thresholds:
        matched = greedy_match(iou, order, float(t))
        tp = matched >= 0
        curve = detection_curve(tp, len(ref_ids))
        per_threshold[threshold_key(t)] = {
            "tp": int(tp.sum()), "fp": int((~tp).sum()), "fn": int(len(ref_ids) - tp.sum()),
            "precision": _value(curve["precision"]), "recall": _value(curve["recall"]), "ap": _value(curve["ap"]),
            "tp_ranked": [bool(v) for v in tp],
        }
    return {"n_reference": int(len(ref_ids)), "n_predicted": int(len(pred_ids)), "ranked_predictions": ranked,
            "thresholds": per_threshold}


def case_detection(ref_instances: np.ndarray, lesions: np.ndarray, lesion_scores: Mapping[int, float],
                   candidates: Optional[np.ndarray] = None, candidate_scores: Optional[Mapping[int, float]] = None,
                   thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict:
    """One case's lesion record (module docstring): :func:`case_lesion_metrics` of the written ``lesions`` (the
    operating point), its ``ap`` replaced by the AP over every candidate when ``candidates`` (an instance map with
    ``candidate_scores``) are given; their ranking is kept under ``candidates`` for pooling, with the candidates'
    recall (the most any threshold could reach) per IoU threshold as ``candidate_recall``."""
    record = case_lesion_metrics(ref_instances, lesions, lesion_scores, thresholds)
    record["ranking"] = "lesions"
    if candidates is None:
        return record
    ranked = case_lesion_metrics(ref_instances, candidates, candidate_scores or {}, thresholds)
    record.update(ranking="candidates", n_candidates=ranked["n_predicted"],
                  candidates={"ranked_predictions": ranked["ranked_predictions"],
                              "thresholds": {k: {"tp_ranked": v["tp_ranked"]}
                                             for k, v in ranked["thresholds"].items()}})
    for key, entry in record["thresholds"].items():
        entry.update(ap=ranked["thresholds"][key]["ap"], candidate_recall=ranked["thresholds"][key]["recall"])
    return record


def threshold_key(threshold: float) -> str:
    """The JSON key of an IoU threshold: '0.1', '0.3'."""
    return f"{float(threshold):g}"


def pooled_inputs(cases: Sequence[dict], threshold: float, ranking: bool = False):
    """From per-case records of :func:`case_detection` (or :func:`case_lesion_metrics`): (TP flags of all
    predictions merged by descending score, the case index of each, reference count per case), ready for
    :func:`pooled_detection`. The written lesions, or with ``ranking`` the candidates where a case has them (the
    lists the AP is computed over)."""
    key = threshold_key(threshold)
    scores, tps, owner = [], [], []
    for k, case in enumerate(cases):
        listed = case.get("candidates", case) if ranking else case
        scores += [p["score"] for p in listed["ranked_predictions"]]
        tps += listed["thresholds"][key]["tp_ranked"]
        owner += [k] * len(listed["ranked_predictions"])
    order = rank(scores)  # stable: within one score, case order then rank order
    n_ref = np.array([c["n_reference"] for c in cases], dtype=float)
    return np.asarray(tps, dtype=bool)[order], np.asarray(owner, dtype=int)[order], n_ref


def pooled_detection(tp_items: np.ndarray, case_of_item: np.ndarray, n_reference: np.ndarray,
                     case_weights: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Pooled precision, recall and AP; ``case_weights`` (B, n_cases) evaluates B resamples at once."""
    if case_weights is None:
        return detection_curve(tp_items, n_reference.sum())
    w = np.atleast_2d(case_weights)
    return detection_curve(tp_items, w @ n_reference, weights=w[:, case_of_item])
