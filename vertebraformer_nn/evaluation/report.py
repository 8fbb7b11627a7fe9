"""The evaluation reports: JSON with everything (settings, definitions, per case, per group), and a markdown
summary with one table per task (segmentation, numbering, lesions), a row per domain, in-domain / cross-domain
rows when a domain was held out, and an overall row."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..atomic import write_text_atomic

DEFINITIONS = {
    "dice": "per vertebra over every VerSe code in the reference or the prediction (0 when absent from one), "
            "averaged per case",
    "hd95_mm": "95th percentile of the pooled symmetric surface distances, physical spacing; averaged per case over "
               "vertebrae present in both maps (the others have no finite HD95 and are listed in hd95_undefined); a "
               "case with no such vertebra (e.g. a missing prediction) has no HD95 and is counted in n_undefined",
    "binary_dice": "every vertebra label against background",
    "id_rate": "VerSe identification: a reference vertebra is hit when the predicted centroid with its code is the "
               "closest predicted centroid to it and lies within the radius (20 mm); a code missing from the "
               "prediction is a miss; world (LPS mm) coordinates; per case hits / reference vertebrae",
    "id_rate_pooled": "hits / reference vertebrae over all cases of the group (VerSe's test-set id.rate)",
    "localisation_mm": "mean distance between reference and predicted centroids of the same code, per case",
    "all_correct": "fraction of cases in which every reference vertebra is hit and the prediction names no code "
                   "that the reference lacks",
    "lesions": "reference instances = 26-connected components of the reference lesion map; predictions ranked by "
               "score, matched greedily (highest IoU among unmatched references, IoU >= threshold); precision = "
               "TP / written lesions and recall = TP / reference lesions at the model's threshold (the operating "
               "point); AP = all-points interpolated (VOC 2010+) area under the precision-recall curve of every "
               "lesion candidate ranked by score (<case>_lesion_candidates.nii.gz; the written lesions where a "
               "prediction has no candidates), candidate recall = the recall of all candidates (the most any "
               "threshold reaches); pooled over the group's lesion-annotated cases (per_case: means of per-case "
               "values); cases without lesion annotation are left out",
    "intervals": "95% BCa bootstrap interval of the statistic, resampling patients (a patient's cases together)",
    "failed_cases": "a missing or unusable prediction is scored as an empty one (Dice 0, nothing identified or "
                    "detected) unless missing predictions are skipped",
    "border_rule": "vertebrae cut by the field of view (the reference's ignore region: a raw dataset's ignore label, "
                   "255 in a folder of VerSe-coded maps) are not scored: their voxels are left out of Dice, HD95 and "
                   "the binary spine Dice; a predicted vertebra more than half inside the ignore region, or touching "
                   "the head/foot border and overlapping the ignore region at least as much as whole reference "
                   "vertebrae, is neither an extra nor a miss (border.predicted_not_scored per case); only whole "
                   "reference vertebrae count in the identification rate",
}


def _clean(obj):
    """JSON-ready: numpy scalars to Python, NaN and infinity to null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(report: dict) -> str:
    return json.dumps(_clean({**report, "definitions": DEFINITIONS}), indent=1, allow_nan=False)


def write_json(report: dict, path) -> Path:
    return write_text_atomic(path, to_json(report) + "\n")


def write_markdown(report: dict, path) -> Path:
    return write_text_atomic(path, markdown(report))


def write_reports(report: dict, json_path, markdown_path=None) -> Tuple[Path, Path]:
    """The JSON report and its markdown summary (default: beside it, ``.md``): what ``vertebraformer evaluate``
    writes."""
    json_path = Path(json_path)
    markdown_path = Path(markdown_path) if markdown_path else json_path.with_suffix(".md")
    return write_json(report, json_path), write_markdown(report, markdown_path)


def _estimate(est: Optional[dict], percent: bool) -> str:
    if not est or est.get("value") is None:
        return "–"
    scale, digits = (100.0, 1) if percent else (1.0, 2)
    text = f"{est['value'] * scale:.{digits}f}"
    if est.get("ci"):
        lo, hi = est["ci"]
        text += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    return text


def _group_rows(summary: dict):
    """(label, group summary) in table order: domains, in-domain, cross-domain, overall."""
    rows = [(name.split(":", 1)[1], s) for name, s in sorted(summary.items()) if name.startswith("domain:")]
    rows += [(label, summary[key]) for key, label in (("in_domain", "in-domain"), ("cross_domain", "cross-domain"))
             if key in summary]
    if "overall" in summary:
        rows.append(("**overall**", summary["overall"]))
    return rows


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(report: dict) -> str:
    s = report["settings"]
    rows = _group_rows(report["summary"])
    overall = report["summary"].get("overall", {})
    problems = f"{len(report['failures'])} with problems (listed below)" if report["failures"] else "none with problems"
    kind = s["reference_kind"].replace("_", " ")
    lines = ["# VertebraFormer-nn evaluation", "",
             f"Prediction `{s['prediction']}` against reference `{s['reference']}` ({kind}): "
             f"{overall.get('n_cases', 0)} case(s) of {overall.get('n_patients', 0)} patient(s) scored, {problems}."]
    if s.get("cases_from_splits") is not None:
        lines.append(f"Cases: validation cases of fold {s['cases_from_splits']} of splits_final.json.")
    if s.get("held_out_domain"):
        lines.append(f"Held-out domain: {s['held_out_domain']} (cross-domain); the other domains are in-domain.")
    b = s["bootstrap"]
    lines += ["", f"Each cell: estimate [{b['confidence']:.0%} BCa bootstrap interval; patients resampled, "
              f"{b['n_resamples']:,} resamples, seed {b['seed']}]; Dice, rates, precision, recall and AP in %.", ""]

    lines += ["## Segmentation", ""]
    lines += _table(["group", "cases", "Dice (%)", "HD95 (mm)", "binary spine Dice (%)"], [
        [label, str(g["n_cases"]), _estimate(g["segmentation"]["dice"], True),
         _estimate(g["segmentation"]["hd95_mm"], False), _estimate(g["segmentation"]["binary_dice"], True)]
        for label, g in rows])
    ident = s["identification"]
    lines += ["", "## Numbering", "",
              f"Identification radius {ident['radius_mm']:g} mm, rule `{ident['rule']}`; reference centroids: "
              + "; ".join(s["reference_centroids"]) + ".", ""]
    lines += _table(["group", "cases", "id rate (%)", "id rate, pooled (%)", "localisation (mm)",
                     "all vertebrae right (%)"], [
        [label, str(g["n_cases"]), _estimate(g["numbering"]["id_rate"], True),
         _estimate(g["numbering"]["id_rate_pooled"], True), _estimate(g["numbering"]["localisation_mm"], False),
         _estimate(g["numbering"]["all_correct"], True)] for label, g in rows])

    lines += ["", "## Lesions", ""]
    lesion_rows = []
    for label, g in rows:
        les = g.get("lesions")
        if not les:
            continue
        for t in s["lesion_iou_thresholds"]:
            e = les[f"{t:g}"]
            counts = f"{les['n_reference']} / {les['n_predicted']} / {les.get('n_candidates', les['n_predicted'])}"
            lesion_rows.append([label, str(les["n_cases"]), counts, f"{t:g}", _estimate(e["precision"], True),
                                _estimate(e["recall"], True), _estimate(e["ap"], True),
                                _estimate(e["candidate_recall"], True) if "candidate_recall" in e else "–"])
    if lesion_rows:
        lines += ["Lesion-annotated cases only; pooled over the group's cases.", ""]
        lines += _table(["group", "cases", "lesions (reference / written / candidates)", "IoU threshold",
                         "precision (%)", "recall (%)", "AP (%)", "candidate recall (%)"], lesion_rows)
    else:
        lines.append("No evaluated case has a lesion annotation.")

    if report["failures"]:
        lines += ["", "## Cases with problems", ""]
        lines += [f"- `{f['case']}` ({f['status']}): " + "; ".join(f["problems"]) for f in report["failures"]]
    notes = list(report.get("notes", []))
    if report.get("predictions_not_evaluated"):
        names = report["predictions_not_evaluated"]
        notes.append(f"{len(names)} prediction(s) not evaluated (not among the expected reference cases): "
                     + ", ".join(names[:10]) + (" ..." if len(names) > 10 else ""))
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Definitions", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()]
    return "\n".join(lines) + "\n"
