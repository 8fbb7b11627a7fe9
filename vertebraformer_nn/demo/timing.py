"""How ``vertebraformer demo`` spends the minutes it is given (pure functions, no I/O).

Every step but training takes about as long whatever the budget, so training gets what is left after the
steps before it (measured) and an estimate of the steps after it (per-case costs below, measured with the
demo's phantoms on 2 CPU cores and kept on the safe side; a GPU predicts faster, so its estimate is smaller).
Two folds (and an ensemble) are trained only when each fold still gets at least ``MIN_FOLD_TRAIN_S``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

#: seconds per case of `vertebraformer predict` (reading, network, numbering, export, preview). Measured with the
#: demo's phantoms at the CPU preset on 2 cores: 1.0-1.6 s a case when idle, up to 10 s when others load them;
#: the estimate sits in between, since training adapts to what is left anyway
PREDICT_S_PER_CASE = {"cpu": 5.0, "cuda": 3.0}
#: seconds per `vertebraformer predict` call besides its cases (model loading)
PREDICT_CALL_S = {"cpu": 4.0, "cuda": 10.0}
ENSEMBLE_S_PER_CASE = 4.0
EVALUATE_S_PER_CASE = 1.0
EVALUATE_CALL_S = 3.0
REPORT_S = 2.0
#: a fold trains at least this long, or no second fold is trained
MIN_FOLD_TRAIN_S = {"cpu": 240.0, "cuda": 120.0}
#: training never gets less than this, even when the minutes asked for are already spent
MIN_TRAIN_S = 30.0


@dataclass(frozen=True)
class TrainingPlan:
    folds: int
    seconds_per_fold: float
    after_training_s: float  # the estimate of the steps after training
    reason: str


def after_training_seconds(device: str, n_validation: int, n_unseen: int, folds: int) -> float:
    """Estimated seconds of predict (+ ensemble), evaluate and report once ``folds`` folds are trained."""
    dev = "cuda" if device == "cuda" else "cpu"
    predicted = n_validation + n_unseen * folds
    calls = 1 + folds  # validation cases with fold 0, unseen cases with each fold
    seconds = predicted * PREDICT_S_PER_CASE[dev] + calls * PREDICT_CALL_S[dev]
    evaluated = n_validation + n_unseen * (2 if folds > 1 else 1)
    seconds += evaluated * EVALUATE_S_PER_CASE + (3 if folds > 1 else 2) * EVALUATE_CALL_S
    if folds > 1:
        seconds += n_unseen * ENSEMBLE_S_PER_CASE
    return seconds + REPORT_S


def plan_training(total_s: float, spent_s: float, device: str, n_validation: int, n_unseen: int,
                  max_folds: int = 2) -> TrainingPlan:
    """How many folds to train (1 or 2) and how long each, so the whole demo ends near ``total_s``."""
    dev = "cuda" if device == "cuda" else "cpu"
    for folds in range(max(1, int(max_folds)), 0, -1):
        after = after_training_seconds(dev, n_validation, n_unseen, folds)
        left = total_s - spent_s - after
        if folds == 1 or left / folds >= MIN_FOLD_TRAIN_S[dev]:
            per_fold = max(MIN_TRAIN_S, left / folds)
            if folds > 1:
                reason = f"{left:.0f} s of training time left: two folds of {per_fold:.0f} s"
            elif max_folds > 1:
                reason = (f"{max(0.0, left):.0f} s of training time left: one fold (a second fold needs at least "
                          f"{MIN_FOLD_TRAIN_S[dev]:.0f} s per fold; ask for more --minutes to get two and an ensemble)")
            else:
                reason = f"{max(0.0, left):.0f} s of training time left: one fold (--max-folds 1)"
            return TrainingPlan(folds, per_fold, after, reason)
    raise AssertionError("unreachable")


def second_fold_decision(total_s: float, spent_s: float, device: str, n_validation: int, n_unseen: int,
                         planned_folds: int, fold0_seconds: float, fixed_schedule: bool) -> Tuple[bool, float, str]:
    """After fold 0: (train fold 1?, its budget in seconds, why). A fixed-schedule trainer needs as long as fold 0
    took; the time-budgeted one needs ``MIN_FOLD_TRAIN_S`` and gets all that is left."""
    dev = "cuda" if device == "cuda" else "cpu"
    if planned_folds < 2:
        return False, 0.0, "one fold planned"
    left = total_s - spent_s - after_training_seconds(dev, n_validation, n_unseen, 2)
    need = fold0_seconds if fixed_schedule else MIN_FOLD_TRAIN_S[dev]
    if left >= need:
        return True, left, f"{left:.0f} s left for fold 1 (needs {need:.0f} s)"
    return False, 0.0, f"only {max(0.0, left):.0f} s left after fold 0, fold 1 needs {need:.0f} s: one fold, no ensemble"
