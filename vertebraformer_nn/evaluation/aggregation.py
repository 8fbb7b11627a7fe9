"""Aggregation of per-case evaluation records: group means and pooled rates with patient-level BCa intervals, per
domain and in-domain vs cross-domain."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from . import bootstrap, lesion_metrics


def _values(records, task, key):
    out = []
    for r in records:
        v = r[task][key]
        out.append(None if v is None else float(v))
    return out


def summarise(records: Sequence[dict], thresholds: Sequence[float], **boot) -> dict:
    """Group summary: means of per-case values (and pooled rates) with patient-level BCa intervals.
    ``boot``: n_resamples, confidence, seed."""
    units = [r["subject"] for r in records]
    seg = {k: bootstrap.mean_interval(_values(records, "segmentation", k), units, **boot)
           for k in ("dice", "hd95_mm", "binary_dice")}
    num = {"id_rate": bootstrap.mean_interval(_values(records, "numbering", "id_rate"), units, **boot),
           "id_rate_pooled": bootstrap.ratio_interval(_values(records, "numbering", "hits"),
                                                      _values(records, "numbering", "n_reference"), units, **boot),
           "localisation_mm": bootstrap.mean_interval(_values(records, "numbering", "mean_distance_mm"), units, **boot),
           "all_correct": bootstrap.mean_interval(_values(records, "numbering", "all_correct"), units, **boot)}
    return {"n_cases": len(records), "n_patients": len(set(units)), "segmentation": seg, "numbering": num,
            "lesions": _summarise_lesions([r for r in records if r.get("lesions")], thresholds, **boot)}


def _summarise_lesions(records: Sequence[dict], thresholds: Sequence[float], **boot) -> Optional[dict]:
    if not records:
        return None
    cases = [r["lesions"] for r in records]
    unit_of_case, n_units = bootstrap.unit_index([r["subject"] for r in records])
    out = {"n_cases": len(records), "n_patients": n_units,
           "n_reference": sum(c["n_reference"] for c in cases), "n_predicted": sum(c["n_predicted"] for c in cases),
           "n_candidates": sum(c.get("n_candidates", c["n_predicted"]) for c in cases),
           "ap_ranking": sorted({c.get("ranking", "lesions") for c in cases})}
    for t in thresholds:
        key = lesion_metrics.threshold_key(t)
        entry = {}
        # precision and recall at the operating point (the written lesions); the AP, and the recall any threshold
        # could reach, over the candidates
        for name, metric, ranking in (("precision", "precision", False), ("recall", "recall", False),
                                      ("ap", "ap", True), ("candidate_recall", "recall", True)):
            tp, owner, n_ref = lesion_metrics.pooled_inputs(cases, t, ranking=ranking)

            def statistic(w, metric=metric, tp=tp, owner=owner, n_ref=n_ref):
                return lesion_metrics.pooled_detection(tp, owner, n_ref, w[:, unit_of_case])[metric]
            entry[name] = bootstrap.bootstrap_interval(statistic, n_units, size_hint=len(tp), **boot)
            entry[name]["n_cases"] = len(records)
        units = [r["subject"] for r in records]
        entry["per_case"] = {m: bootstrap.mean_interval([c["thresholds"][key][m] for c in cases], units, **boot)
                             for m in ("precision", "recall", "ap")}
        out[key] = entry
    return out


def group_records(records: Sequence[dict], held_out_domain: Optional[str]) -> Dict[str, List[dict]]:
    """{"overall": all, "domain:<d>": per domain (when domains are known), "in_domain"/"cross_domain" when a
    domain was held out}."""
    groups: Dict[str, List[dict]] = {"overall": list(records)}
    if any(r["domain"] for r in records):  # a plain label folder knows no domains: the overall row says it all
        for r in records:
            groups.setdefault(f"domain:{r['domain'] or 'unknown'}", []).append(r)
    if held_out_domain:
        groups["in_domain"] = [r for r in records if r["domain"] != held_out_domain]
        groups["cross_domain"] = [r for r in records if r["domain"] == held_out_domain]
    return {k: v for k, v in groups.items() if v}
