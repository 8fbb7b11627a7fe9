"""``vertebraformer evaluate``: a prediction folder against a reference, every case scored, aggregated per group.

The work is in rooms of their own: ``references`` (what the reference is and which cases), ``scoring`` (one case:
reading, the border rule, every metric), ``aggregation`` (group summaries with bootstrap intervals); this module
runs them in order and assembles the report.

Border rule (partial vertebrae; ``border``): vertebrae cut by the head or foot border of the field of view are
nnU-Net's ignore label in training (a raw dataset's ``labels['ignore']``; :data:`references.IGNORE_VALUE`, 255, in
a folder of VerSe-coded label maps), so evaluation does not score them either way. Their voxels are left out of
Dice, HD95 and the binary spine Dice; a predicted vertebra lying mostly in that ignore region, or touching the head
or foot border of the field of view where the reference ignores the vertebra there, is neither an extra nor a
miss; the identification rate counts only whole reference vertebrae.

Which cases: the validation cases of ``cases_from_splits``; otherwise every reference case of a plain folder, and
of a raw dataset every case of each of its splits that has at least one prediction. An expected case without a
prediction, or whose prediction cannot be used, is scored as an empty prediction and listed as a failure;
``skip_missing`` leaves cases without any prediction out of the means instead.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from . import bootstrap, lesion_metrics, metrics
from .aggregation import group_records, summarise
from .references import EvaluationError, PRED_SUFFIX, expected_cases, load_reference, predicted_cases, read_fold
from .scoring import evaluate_case

__all__ = ["EvaluationError", "evaluate", "exit_status"]


def evaluate(reference, prediction, *, cases_from_splits: Optional[int] = None, held_out_domain: Optional[str] = None,
             lesion_thresholds: Sequence[float] = lesion_metrics.DEFAULT_THRESHOLDS,
             n_resamples: int = bootstrap.DEFAULT_RESAMPLES, confidence: float = bootstrap.CONFIDENCE, seed: int = 0,
             id_radius_mm: float = metrics.ID_RADIUS_MM, id_rule: str = "closest_prediction",
             skip_missing: bool = False, progress: bool = False) -> dict:
    """Evaluate ``prediction`` (folder) against ``reference`` (raw dataset or label folder): the full report
    (settings, per-case records, group summaries, failures). Raises EvaluationError when nothing can run."""
    pred_dir = Path(prediction)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder does not exist")
    ref = load_reference(reference)
    predicted = predicted_cases(pred_dir)
    fold_cases, fold_domain = read_fold(ref, cases_from_splits) if cases_from_splits is not None else (None, None)
    notes = list(ref.notes)
    if held_out_domain and fold_domain and held_out_domain != fold_domain:
        notes.append(f"--held-out-domain {held_out_domain} overrides fold {cases_from_splits}'s {fold_domain}")
    held_out = held_out_domain or fold_domain
    expected = expected_cases(ref, predicted, fold_cases)
    if not expected or not set(expected) & set(predicted):
        raise EvaluationError(f"no case to evaluate: {pred_dir} holds no <case>{PRED_SUFFIX} of the "
                              f"{len(expected) or len(ref.cases)} expected reference case(s) in {ref.root}")

    records = []
    for k, case in enumerate(expected, 1):
        record = evaluate_case(ref.cases[case], pred_dir, code_lut=ref.code_lut, ignore_value=ref.ignore_value,
                               thresholds=lesion_thresholds, id_radius_mm=id_radius_mm, id_rule=id_rule)
        records.append(record)
        if progress:
            print(f"[{k}/{len(expected)}] {case}: {record['status']}", file=sys.stderr)

    scored = [r for r in records if r["status"] in ("ok", "failed") or (r["status"] == "missing" and not skip_missing)]
    boot = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    groups = group_records(scored, held_out)
    if held_out and f"domain:{held_out}" not in groups:
        notes.append(f"held-out domain {held_out!r}: no evaluated case has that domain")
    summary = {name: summarise(rs, lesion_thresholds, **boot) for name, rs in groups.items()}
    sources = sorted({r["numbering"]["reference_centroids"] for r in scored})
    return {
        "settings": {
            "reference": str(ref.root), "reference_kind": ref.kind, "prediction": str(pred_dir),
            "cases_from_splits": cases_from_splits, "held_out_domain": held_out,
            "lesion_iou_thresholds": [float(t) for t in lesion_thresholds],
            "identification": {"radius_mm": id_radius_mm, "rule": id_rule},
            "bootstrap": {**boot, "method": "BCa", "resampling_unit": "patient (case_info subject, else case)"},
            "missing_predictions": "left out of the means" if skip_missing else "scored as empty predictions",
            "reference_centroids": sources,
            "reference_ignore_value": ref.ignore_value,
        },
        "summary": summary,
        "cases": {r["case"]: r for r in records},
        "failures": [{"case": r["case"], "status": r["status"], "problems": r["problems"]}
                     for r in records if r["status"] != "ok"],
        "predictions_not_evaluated": sorted(set(predicted) - set(expected)),
        "notes": notes,
    }


def exit_status(report: dict) -> int:
    """0 when every expected case was evaluated cleanly, 1 when some failed or were missing."""
    return 1 if report["failures"] else 0
