"""``vertebraformer determine-postprocessing``: choose a model's post-processing values on its cross-validation cases
and write them to ``postprocessing.json`` in the model folder (as nnU-Net's ``nnUNetv2_determine_postprocessing``;
a copy goes to ``crossval_results_folds_<folds>/``, the folder nnU-Net's ``nnUNetv2_export_model_to_zip`` carries).

Cases: every validation case of the chosen cross-validation folds, predicted by its fold's network
(``validation_cases``). Scores, with the evaluation's own rules (``evaluation.metrics.identification``,
``evaluation.border``, ``evaluation.lesion_metrics``), on the model grid where numbering and lesion detection run:

* numbering parameters: the VerSe identification rate pooled over the cases (hits / whole reference vertebrae;
  centroids from the reference and the predicted masks alike, ``centroids.body_centroids``); per case, its hits;
* lesion parameters (``lesion_validation``): the candidate values by the mean of the pooled lesion AP over every
  candidate at 3D IoU 0.1 and 0.3 over the lesion-annotated cases, the threshold (which changes no ranking) by the
  F1 score of the written lesions; per case, its AP or F1 (a case without reference lesions: minus its false
  positives). The candidates are judged on the case's CT inside the network's vertebrae, as ``predict`` judges
  them, so the threshold is chosen on the peaks ``predict`` compares with it.

Search: coordinate-wise, one pass, parameters in the order of ``postprocessing.Postprocessing`` (instances, decoder,
lesions), each over its few ``candidates`` with the others at their current values. A candidate replaces the
current value only when it is better by a margin (:data:`MARGIN`, one point) on the pooled score *and* on enough
cases: it must win on more cases than it loses with a one-sided sign test p <= :data:`ALPHA` (0.05), so at least
five cases must improve and none get worse before anything changes. Why: the defaults were chosen on phantoms with
care and a handful of validation cases is noisy; the sign test keeps one lucky case from moving a value, and the
margin keeps a tie-level gain on many cases from doing so. Among the candidates that pass, the best pooled score
wins. The file records every parameter, every candidate's scores, the decision and why, and the cases used.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .. import labels
from ..atomic import write_text_atomic
from ..centroids import body_centroids
from ..evaluation.border import apply_border_rule
from ..evaluation.metrics import identification
from . import postprocessing as PP
from .grid_probabilities import GridProbabilities
from .lesion_validation import LESION_IOUS, LesionScorer, criterion, pooled_score
from .numbering import decode_instances, ordered_instances
from .postprocessing import Postprocessing
from .validation_cases import ValidationCase, collect_validation_cases, iterate, whole_vertebrae

__all__ = ["MARGIN", "ALPHA", "LESION_IOUS", "choose", "search", "determine_postprocessing", "write_postprocessing"]

MARGIN = 0.01
ALPHA = 0.05


# ------------------------------------------------------------------------------------------------ per case
def _centroids(codes: np.ndarray, spacing) -> Dict[int, np.ndarray]:
    """Body centroids (mm) of a VerSe-coded model-grid array in its own frame (index x spacing)."""
    image = sitk.GetImageFromArray(codes.astype(np.uint8, copy=False))
    image.SetSpacing([float(s) for s in spacing[::-1]])
    return body_centroids(image)


class _CaseScorer:
    """Scores of one case for any parameter values; instances are cached for the decoder's parameters."""

    def __init__(self, case: ValidationCase, probs: Mapping[str, np.ndarray]):
        self.case, self.probs = case, probs
        self._instances: Dict[tuple, object] = {}
        self._grid: Optional[GridProbabilities] = None
        self._reference_ctd = None
        self._lesions: Optional[LesionScorer] = None

    def numbering(self, params: Postprocessing) -> Tuple[int, int]:
        """(hits, whole reference vertebrae) of the identification at ``params``."""
        case = self.case
        key = tuple(getattr(params, n) for n in PP.INSTANCE_NAMES)  # the decoder's values reuse the instances
        if key not in self._instances:
            axis, sign = case.superior
            if self._grid is None:  # reduced once per case, with the disc head (the cut is one of the parameters)
                self._grid = GridProbabilities.from_dense({h: a for h, a in self.probs.items() if h != "lesion"})
            self._instances[key] = ordered_instances(self._grid, case.spacing, axis, sign, None, params, hu=case.hu,
                                                     lateral_axis=case.lateral, ct=case.ct)
        predicted = labels.training_to_verse(decode_instances(self._instances[key], params).labels)
        scored = apply_border_rule(case.reference, case.ignore, predicted, case.superior[0])
        if self._reference_ctd is None:
            self._reference_ctd = _centroids(case.reference, case.spacing)
        pred_ctd = {c: p for c, p in _centroids(predicted, case.spacing).items() if c not in scored.not_scored}
        result = identification(self._reference_ctd, pred_ctd)
        return int(result["hits"]), int(result["n_reference"])

    def _vertebrae(self) -> Optional[np.ndarray]:
        """The network's vertebrae on the model grid (argmax of the segmentation head, not background): where the
        lesion candidates are judged on the CT and assigned a vertebra."""
        seg = self.probs.get("seg")
        return None if seg is None else np.argmax(seg, axis=0) > 0

    def lesions(self, params: Postprocessing) -> Optional[dict]:
        """``lesion_metrics.case_detection`` at ``params`` (None: the case annotates no lesions)."""
        if self.case.lesions is None or "lesion" not in self.probs:
            return None
        if self._lesions is None:
            self._lesions = LesionScorer(self.probs["lesion"][0], self.case.lesions, self.case.spacing, self.case.hu,
                                         self._vertebrae())
        return self._lesions.record(params)


# ------------------------------------------------------------------------------------------------ pooled scores
def _numbering_score(per_case: Sequence[Tuple[int, int]]) -> Tuple[float, List[float]]:
    hits, total = sum(h for h, _ in per_case), sum(n for _, n in per_case)
    return (hits / total if total else float("nan")), [float(h) for h, _ in per_case]


# ------------------------------------------------------------------------------------------------ the rule
def sign_test(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips)."""
    from scipy.stats import binomtest

    n = wins + losses
    return 1.0 if n == 0 else float(binomtest(wins, n, 0.5, alternative="greater").pvalue)


def choose(current: float, scored: Mapping[float, Tuple[float, List[float]]]) -> Tuple[float, List[dict], str]:
    """The value to keep for one parameter (module docstring's rule): ``scored`` maps each candidate value (the
    current one included) to (pooled score, per-case scores). Returns (value, one row per candidate, why)."""
    base, base_cases = scored[current]
    rows, passing = [], []
    for value, (score, per_case) in scored.items():
        wins = sum(a > b for a, b in zip(per_case, base_cases))
        losses = sum(a < b for a, b in zip(per_case, base_cases))
        p = sign_test(wins, losses)
        ok = value != current and np.isfinite(score) and score >= base + MARGIN and p <= ALPHA
        rows.append({"value": value, "score": None if not np.isfinite(score) else round(score, 4), "wins": wins,
                     "losses": losses, "p_value": round(p, 4), "passes": bool(ok)})
        if ok:
            passing.append((score, value))
    if not passing:
        return current, rows, (f"kept: no candidate beat {PP.show(current)} by {MARGIN:g} on the pooled score with "
                               f"more cases improved than worsened (one-sided sign test p <= {ALPHA:g})")
    score, value = max(passing, key=lambda sv: sv[0])
    return value, rows, f"changed: {PP.show(value)} scores {score:.4f} against {base:.4f} for {PP.show(current)}"


def search(cases: Sequence[ValidationCase], names: Optional[Sequence[str]] = None,
           start: Postprocessing = PP.DEFAULTS, log: Callable[[str], None] = print) -> Tuple[Postprocessing, dict]:
    """The coordinate-wise search over ``names`` (default: every searched parameter) from ``start``: (the chosen
    values, the record of the search)."""
    names = [n for n in (names or PP.NAMES) if PP.candidates(n)]
    current, steps, notes = start, [], []
    annotated = [c for c in cases if c.lesions is not None]
    for name in names:
        lesion = name in PP.LESION_NAMES
        if lesion and not annotated:
            notes.append(f"{name}: no lesion-annotated validation case; kept {PP.show(getattr(current, name))}")
            continue
        trials = {}
        for v in sorted({*PP.candidates(name), getattr(current, name)}):
            try:
                trials[v] = replace(current, **{name: v})
            except PP.PostprocessingError as e:  # e.g. a candidate floor above the current threshold
                notes.append(f"{name} = {PP.show(v)} not tried with the other current values: {e}")
        per_value: Dict[float, list] = {v: [] for v in trials}
        t0 = time.perf_counter()
        for case, probs in iterate(annotated if lesion else cases):
            scorer = _CaseScorer(case, probs)
            for v, params in trials.items():
                per_value[v].append(scorer.lesions(params) if lesion else scorer.numbering(params))
        pooled = (lambda r: pooled_score(name, r)) if lesion else _numbering_score
        chosen, rows, why = choose(getattr(current, name), {v: pooled(r) for v, r in per_value.items()})
        log(f"  {name}: {why} ({time.perf_counter() - t0:.0f} s)")
        steps.append({"parameter": name, "criterion": criterion(name) if lesion else "identification rate",
                      "start": getattr(current, name), "candidates": rows, "chosen": chosen, "why": why})
        current = replace(current, **{name: chosen})
    return current, {"steps": steps, "notes": notes}


# ------------------------------------------------------------------------------------------------ the command
def determine_postprocessing(model_folder, folds: Sequence[int], *, device: Optional[str] = None,
                             checkpoint: str = "checkpoint_final.pth", parameters: Optional[Sequence[str]] = None,
                             recompute: bool = False, log: Callable[[str], None] = print) -> Path:
    """Choose and write ``<model_folder>/postprocessing.json`` (module docstring); returns its path. ValueError
    (or ``predictor.ModelError``) when it cannot run: folds without a checkpoint or splits entry, a
    leave-one-domain-out fold, no preprocessed data, unknown parameter names."""
    model_folder, folds = Path(model_folder), sorted(int(f) for f in folds)
    unknown = [n for n in parameters or () if n not in PP.NAMES or not PP.candidates(n)]
    if unknown:
        searched = [n for n in PP.NAMES if PP.candidates(n)]
        raise PP.PostprocessingError(f"not searched parameter(s) {', '.join(unknown)}; searched: "
                                     f"{', '.join(searched)}")
    log(f"vertebraformer determine-postprocessing: {model_folder}, folds {' '.join(map(str, folds))}")
    cases = collect_validation_cases(model_folder, folds, device=device, checkpoint=checkpoint, recompute=recompute,
                                     log=log)
    log(f"  {len(cases)} validation case(s); searching")
    chosen, record = search(cases, parameters, log=log)
    determined = {
        "command": "vertebraformer determine-postprocessing",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": str(model_folder), "folds": folds, "checkpoint": checkpoint,
        "cases": [{"case": c.name, "fold": c.fold, "whole_vertebrae": whole_vertebrae(c),
                   "lesion_annotated": c.lesions is not None} for c in cases],
        "rule": {"numbering": "VerSe identification rate pooled over the cases (model grid, border rule applied)",
                 "lesions": f"candidate values: mean lesion AP over every candidate at IoU "
                            f"{', '.join(map(str, LESION_IOUS))} pooled over the lesion-annotated cases; "
                            "threshold: F1 of the written lesions at the same IoUs",
                 "change": f"pooled score better by >= {MARGIN:g} and one-sided sign test over cases p <= {ALPHA:g}",
                 "search": "coordinate-wise, one pass, in the order of the parameters"},
        "changed": {n: getattr(chosen, n) for n in PP.NAMES if getattr(chosen, n) != getattr(PP.DEFAULTS, n)},
        **record,
    }
    path = write_postprocessing(model_folder, folds, chosen, determined)
    log(f"vertebraformer determine-postprocessing: {path} written ({len(determined['changed'])} value(s) changed "
        f"from the defaults; a copy in {PP.transport_folder(model_folder, folds).name}/ travels with "
        f"nnUNetv2_export_model_to_zip -f {' '.join(map(str, folds))})")
    return path


def write_postprocessing(model_folder, folds: Sequence[int], values: Postprocessing,
                         determined: Optional[dict] = None) -> Path:
    """``<model_folder>/postprocessing.json`` with ``values``, and its copy in ``crossval_results_folds_<folds>/``
    (``postprocessing.transport_folder``: what nnU-Net's model export carries); returns the first."""
    text = json.dumps(PP.file_content(values, determined), indent=1)
    path = write_text_atomic(Path(model_folder) / PP.FILE_NAME, text)
    transport = PP.transport_folder(model_folder, folds)
    transport.mkdir(exist_ok=True)
    write_text_atomic(transport / PP.FILE_NAME, text)
    return path
