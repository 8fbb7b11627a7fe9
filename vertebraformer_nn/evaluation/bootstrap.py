"""Patient-level 95% BCa bootstrap intervals (the paper's statistic: 10,000 resamples of patients).

Every statistic is written as a function of *patient weights*: ``W`` of shape (B, n_patients) holds how often
each patient occurs in each of B resamples, and the statistic returns B values. The point estimate is the
statistic at all-ones weights, so a mean over cases stays the plain mean over cases even when one patient has
several cases (their cases travel together in every resample). ``scipy.stats.bootstrap(method="BCa")``
resamples patient indices; the indices are turned into weights, which lets one vectorised call evaluate a
whole batch of resamples.

Degenerate input never raises: with fewer than 2 patients, or when every resample gives the same value, the
interval is (estimate, estimate) with a note; when BCa is undefined because the statistic is undefined in some
resamples (e.g. a pooled recall where a resample holds no reference lesion), the interval is the percentile
interval of the resamples where it is defined, with a note saying so.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Hashable, Optional, Sequence

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 10_000
CONFIDENCE = 0.95
# Elements of the largest (batch x patients or batch x predictions) array held per vectorised call.
_BATCH_ELEMENTS = 4_000_000

WeightStatistic = Callable[[np.ndarray], np.ndarray]


def weights_from_indices(indices: np.ndarray, n_units: int) -> np.ndarray:
    """(m, k) resampled unit indices -> (m, n_units) multiplicities."""
    indices = np.asarray(indices, dtype=np.int64)
    m = indices.shape[0]
    flat = (indices + n_units * np.arange(m)[:, None]).ravel()
    return np.bincount(flat, minlength=m * n_units).reshape(m, n_units).astype(float)


def _finite(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def bootstrap_interval(statistic: WeightStatistic, n_units: int, *, n_resamples: int = DEFAULT_RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0, size_hint: int = 0) -> dict:
    """Estimate and BCa interval of ``statistic`` (patient weights (B, n_units) -> (B,)).

    Returns {"value", "ci": [low, high] or None, "n_patients", "method", "note"}; ``size_hint``: the width of
    the largest array the statistic builds per resample (sizes the batches)."""
    value = _finite(np.asarray(statistic(np.ones((1, n_units))), dtype=float).reshape(-1)[0]) if n_units else None
    out = {"value": value, "ci": None, "n_patients": int(n_units), "method": "BCa", "note": None}
    if value is None:
        out.update(method=None, note="undefined: no case with a value")
    elif n_resamples <= 0:
        out.update(method=None, note="no bootstrap requested")
    elif n_units < 2:
        out.update(ci=[value, value], method="degenerate", note="fewer than 2 patients: interval collapsed to the estimate")
    else:
        out.update(_bca(statistic, n_units, n_resamples, confidence, seed, max(size_hint, n_units), value))
    return out


def _bca(statistic, n_units, n_resamples, confidence, seed, size, value) -> dict:
    def on_indices(indices, axis=-1):
        indices = np.moveaxis(np.asarray(indices), axis, -1)
        lead = indices.shape[:-1]
        flat = indices.reshape(-1, indices.shape[-1])
        return np.asarray(statistic(weights_from_indices(flat, n_units)), dtype=float).reshape(lead)

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # scipy warns on degenerate distributions; handled below
        res = stats.bootstrap((np.arange(n_units),), on_indices, n_resamples=n_resamples, vectorized=True,
                              method="BCa", confidence_level=confidence, rng=np.random.default_rng(seed),
                              batch=max(1, min(n_resamples, _BATCH_ELEMENTS // size)))
    low, high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
    if low is not None and high is not None:
        return {"ci": [low, high]}
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    defined = dist[np.isfinite(dist)]
    if defined.size == 0 or np.ptp(defined) == 0:
        return {"ci": [value, value], "method": "degenerate",
                "note": "the resampled values do not vary: interval collapsed to the estimate"}
    alpha = (1 - confidence) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return {"ci": [float(low), float(high)], "method": "percentile",
            "note": f"BCa undefined; percentile interval of the {defined.size / dist.size:.0%} of resamples where "
                    "the statistic is defined"}


def unit_index(units: Sequence[Hashable]):
    """(unit index of each case, number of units), units numbered in order of first appearance."""
    names = list(dict.fromkeys(units))
    where = {u: i for i, u in enumerate(names)}
    return np.array([where[u] for u in units], dtype=np.int64), len(names)


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float], units: Sequence[Hashable],
                   **kwargs) -> dict:
    """Sum of numerators over sum of denominators (cases of the same unit resampled together), with its
    interval: a pooled rate such as VerSe's identification rate (hits / reference vertebrae)."""
    idx, n_units = unit_index(units)
    num = np.bincount(idx, weights=np.asarray(numerators, dtype=float), minlength=n_units)
    den = np.bincount(idx, weights=np.asarray(denominators, dtype=float), minlength=n_units)

    def statistic(w):
        top, bottom = w @ num, w @ den
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)

    out = bootstrap_interval(statistic, n_units, **kwargs)
    out["n_cases"] = len(idx)
    return out


def mean_interval(values: Sequence[Optional[float]], units: Sequence[Hashable], **kwargs) -> dict:
    """Mean over cases of per-case values (None / NaN values left out, and counted out of ``n_cases``), with a
    patient-level interval. ``units``: the patient of each case."""
    keep = [k for k, v in enumerate(values) if v is not None and math.isfinite(float(v))]
    out = ratio_interval([float(values[k]) for k in keep], [1.0] * len(keep), [units[k] for k in keep], **kwargs)
    out["n_undefined"] = len(values) - len(keep)
    return out
