"""The joint level decoder of vertebra numbering (DESIGN.md section 7, numbering step 4): pure numpy.

Given one vector of level log-probabilities per vertebra instance, ordered head to foot, and the distances between
consecutive instances, :func:`decode_levels` labels the whole sequence at once (Viterbi over instances x the 26
levels of ``labels.ANATOMICAL_ORDER``): increasing levels, consecutive unless the distance between two instances
says vertebrae are missing, T13 only between T12 and L1, L6 only after L5, both transitional levels behind a prior;
two consecutive instances far closer than their level's pitch may share it (pieces of one vertebra, behind a
prior). Confidence = posterior marginal of the chosen level (forward-backward over the same lattice). Priors and
gap statistics are fields of ``postprocessing.Postprocessing`` (documented there).

Besides the instances' own evidence, the lattice takes a unary log-prior per instance and level (``unary``: the
anatomical anchors, ``anchors.anchor_log_prior``) and, when the distances are known in mm, an anatomical floor on
them (``level_anatomy``): two instances closer than ``min_pitch_fraction`` of the typical distance of the levels
they would get are penalised. How sure the result is: the margin between the best and the second-best labelling
(list Viterbi keeping the two best paths into every state) and the best labelling's posterior probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from scipy.special import logsumexp

from .. import labels as L
from .level_anatomy import PITCH_MM, min_distances
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["NUM_LEVELS", "Decoding", "gap_ratios", "decode_levels"]

NUM_LEVELS = len(L.ANATOMICAL_ORDER)  # 26 decoder states, state s = training label s + 1
_TRANSITIONAL = np.array([n in ("T13", "L6") for n in L.ANATOMICAL_ORDER])


def _skip_counts() -> np.ndarray:
    """k[s, t] = non-transitional levels strictly between s and t (a jump s -> t misses k vertebrae); -1 where
    t <= s (no duplicates, no going back). Passing over T13 (T12 -> L1) misses nothing."""
    cum = np.cumsum(~_TRANSITIONAL)
    s, t = np.meshgrid(np.arange(NUM_LEVELS), np.arange(NUM_LEVELS), indexing="ij")
    k = cum[np.maximum(t - 1, 0)] - cum[s]
    return np.where(t > s, k, -1)


_SKIPS = _skip_counts()


@dataclass
class Decoding:
    """Output of :func:`decode_levels`; ``levels`` index ``labels.ANATOMICAL_ORDER``."""

    levels: np.ndarray  # (K,) int
    confidence: np.ndarray  # (K,) posterior marginal of the chosen level
    skips: List[Tuple[int, int]]  # (i, k): k levels skipped between instance i and i + 1
    score: float  # log score of the decoded path
    notes: List[str] = field(default_factory=list)
    second: Optional[np.ndarray] = None  # (K,) the second-best labelling (None: there is none)
    margin: float = math.inf  # score of the best minus that of the second-best labelling (nats)
    path_probability: float = 1.0  # posterior probability of the decoded labelling
    dropped: Tuple[int, int] = (0, 0)  # instances left out at the head and at the foot end (not vertebrae)


def gap_ratios(gaps_mm, window: int = DEFAULTS.gap_window) -> np.ndarray:
    """Each gap divided by the median of up to ``window`` gaps on each side of it (itself excluded): ~1
    between neighbours, ~k+1 where k vertebrae are missing. 1 where there is no other gap to compare with."""
    gaps = np.asarray(gaps_mm, dtype=np.float64).reshape(-1)
    ratios = np.ones(len(gaps))
    for i, g in enumerate(gaps):
        others = np.concatenate([gaps[max(0, i - window):i], gaps[i + 1:i + 1 + window]])
        if len(others) and np.median(others) > 0:
            ratios[i] = g / np.median(others)
    return ratios


def _transition_scores(ratio: float, skip_log_prior: float, gap_log_sigma: float, skip_tolerance: float,
                       max_skip: int, double: bool = False) -> np.ndarray:
    """(26, 26) log score of level s at one instance followed by level t at the next, given the gap ratio;
    ``double``: one of the two instances may hold two vertebrae, so one level may be skipped whatever the gap."""
    ratio = max(ratio, 1e-3)
    per_skip = np.full(max_skip + 1, -np.inf)
    for k in range(max_skip + 1):
        if k == 0 or ratio >= k + 1 - skip_tolerance or (double and k == 1):
            per_skip[k] = k * skip_log_prior - math.log(ratio / (k + 1)) ** 2 / (2 * gap_log_sigma ** 2)
    valid = (_SKIPS >= 0) & (_SKIPS <= max_skip)
    scores = np.full((NUM_LEVELS, NUM_LEVELS), -np.inf)
    scores[valid] = per_skip[_SKIPS[valid]]
    return scores


def _pitch_scores(gap_mm: float, fraction: float, log_sigma: float) -> np.ndarray:
    """(26, 26) log penalty of level s followed by level t at ``gap_mm``: 0 when the gap is at least ``fraction`` x
    their typical distance, else -log(floor / gap)^2 / (2 log_sigma^2); 0 everywhere when ``fraction`` is 0."""
    if fraction <= 0:
        return np.zeros((NUM_LEVELS, NUM_LEVELS))
    floor = min_distances(fraction)
    with np.errstate(invalid="ignore", divide="ignore"):
        short = np.log(floor / max(gap_mm, 1e-3))
    return np.where(np.isfinite(short) & (short > 0), -short ** 2 / (2 * log_sigma ** 2), 0.0)


def _shared_level_scores(gap_mm: float, height_mm: float, prior: float, max_pitch: float,
                         max_height: float) -> np.ndarray:
    """(26, 26) log score of two consecutive instances both at level s (pieces of one vertebra): ``log(prior)`` on
    the diagonal where ``gap_mm`` is below ``max_pitch`` x the level's typical pitch or ``height_mm`` (their
    head-foot distance) below ``max_height`` x it, -inf elsewhere."""
    scores = np.full((NUM_LEVELS, NUM_LEVELS), -np.inf)
    if prior > 0:
        near = (gap_mm < max_pitch * PITCH_MM) | (height_mm < max_height * PITCH_MM)
        np.fill_diagonal(scores, np.where(near, math.log(prior), -np.inf))
    return scores


def _two_best(emis: np.ndarray, trans: List[np.ndarray]):
    """List Viterbi: the best and second-best paths (levels, score) through the lattice; the second is None when
    no other path has a finite score."""
    k_count = len(emis)
    delta = np.stack([emis[0], np.full(NUM_LEVELS, -np.inf)])  # (rank, state)
    back = np.zeros((k_count, 2, NUM_LEVELS, 2), dtype=np.int64)  # [i, rank, state] -> (previous state, rank)
    for i, t in enumerate(trans, start=1):
        cand = (delta[:, :, None] + t[None]).reshape(2 * NUM_LEVELS, NUM_LEVELS)  # (rank * 26 + s, t)
        top = np.argsort(-cand, axis=0, kind="stable")[:2]  # (2, t)
        delta = np.take_along_axis(cand, top, axis=0) + emis[i][None]
        back[i] = np.stack([top % NUM_LEVELS, top // NUM_LEVELS], axis=-1)
    final = np.argsort(-delta.ravel(), kind="stable")[:2]

    def trace(flat: int) -> np.ndarray:
        rank, state = divmod(int(flat), NUM_LEVELS)
        path = np.zeros(k_count, dtype=np.int64)
        path[-1] = state
        for i in range(k_count - 1, 0, -1):
            state, rank = back[i, rank, state]
            path[i - 1] = state
        return path

    best, second = final
    score2 = float(delta.ravel()[second])
    return (trace(best), float(delta.ravel()[best]),
            trace(second) if np.isfinite(score2) else None, score2)


def decode_levels(log_probs, gaps_mm=None, params: Postprocessing = DEFAULTS, unary=None,
                  droppable: Tuple[bool, bool] = (True, True), double=None, heights_mm=None) -> Decoding:
    """Jointly decode the levels of K instances ordered head to foot.

    Args:
        log_probs: (K, 26) level log-probabilities per instance (columns = ``labels.ANATOMICAL_ORDER``).
        gaps_mm: (K-1,) distances between consecutive instance centres; None = all equal (no skips).
        heights_mm: (K-1,) the head-foot parts of those distances; None = the distances themselves.

    Score of a labelling = sum of the instances' log-probabilities + log ``params.transitional_prior`` per
    T13/L6 + per boundary, for k skipped levels, ``k * log(skip_prior) - log(r / (k+1))^2 / (2 gap_log_sigma^2)``
    where r is the gap's ratio to its neighbours (:func:`gap_ratios`, ``gap_window``); k >= 1 (at most
    ``max_skip``) is allowed only when ``r >= k + 1 - skip_tolerance``. Levels increase head to foot (one repeats
    only on pieces of one vertebra, below); T12 -> L1 and T12 -> T13 -> L1 are both consecutive; L6 can only follow
    L5 (or a skip past it). The sequence may start and end anywhere (partial field of view). With ``gaps_mm`` given,
    two consecutive instances closer than ``shared_level_max_pitch`` x the typical pitch of a level, or with
    ``heights_mm`` at one height (less than ``shared_level_max_height`` x it: pieces side by side, C1's ring in two
    halves, lie a vertebra's width apart across) may both take it, at log ``params.shared_level_prior``
    (:func:`_shared_level_scores`): pieces of one vertebra that the instance steps left apart, which would otherwise
    each take a level and shift every level below them. Viterbi gives the labelling; forward-backward over the same
    lattice gives each instance's posterior probability of its chosen level (``confidence``).

    ``unary``: (K, 26) log-priors added to the evidence (anchors). With ``gaps_mm`` given, a gap shorter than
    ``min_pitch_fraction`` x the typical distance of the two levels costs ``log(floor / gap)^2 / (2
    gap_log_sigma^2)`` (:func:`_pitch_scores`). ``second``, ``margin``, ``path_probability``: the second-best
    labelling, how much less likely it is (nats), and the posterior probability of the decoded one.

    With ``params.end_drop_cost`` > 0 the first and the last instance may each be *not a vertebra of the sequence*
    (a piece of skull above C1, of sacrum below L5, that the instance steps kept): each left out costs that many
    nats plus the strength of any anchor on it (an anchor says it is a vertebra). The lattice is then a mixture
    of the four ways to keep the sequence (nothing, the first, the last, both left out); ``dropped`` says which
    won, ``levels`` and ``confidence`` are the kept instances', and ``second``, ``margin`` and
    ``path_probability`` compare across all four. ``droppable``: whether the first and the last instance may be
    left out at all (``numbering`` allows it only for pieces small beside the others).

    ``double``: (K,) bool, instances that may hold two vertebrae (two fused that no cut separated, ``numbering``:
    far larger than their neighbours); next to one, one level may be skipped whatever the gap ratio says.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] != NUM_LEVELS:
        raise ValueError(f"log_probs must be (K, {NUM_LEVELS}), got shape {lp.shape}")
    k_count = lp.shape[0]
    gaps = np.ones(max(k_count - 1, 0)) if gaps_mm is None else np.asarray(gaps_mm, dtype=np.float64).reshape(-1)
    if len(gaps) != max(k_count - 1, 0):
        raise ValueError(f"gaps_mm must hold K-1 = {max(k_count - 1, 0)} distances, got {len(gaps)}")
    if k_count > NUM_LEVELS:
        raise ValueError(f"cannot number {k_count} instances without duplicates: there are {NUM_LEVELS} levels")
    if k_count == 0:
        return Decoding(np.zeros(0, dtype=np.int64), np.zeros(0), [], 0.0, [])
    emis = lp + np.where(_TRANSITIONAL, params.transitional_log_prior, 0.0)
    if unary is not None:
        unary = np.asarray(unary, dtype=np.float64)
        if unary.shape != lp.shape:
            raise ValueError(f"unary must be (K, {NUM_LEVELS}) like log_probs, got shape {unary.shape}")
        emis = emis + unary
    # an anchor's strength = what its instance loses on every level it does not allow: all of them, when left out
    anchored = np.zeros(k_count) if unary is None else -unary.min(axis=1)
    pitch = params.min_pitch_fraction if gaps_mm is not None else 0.0
    shared = params.shared_level_prior if gaps_mm is not None else 0.0
    double = np.zeros(k_count, bool) if double is None else np.asarray(double, bool).reshape(-1)
    if len(double) != k_count:
        raise ValueError(f"double must hold K = {k_count} flags, got {len(double)}")
    double_gap = double[:-1] | double[1:]
    heights = gaps if heights_mm is None else np.abs(np.asarray(heights_mm, dtype=np.float64).reshape(-1))
    if len(heights) != len(gaps):
        raise ValueError(f"heights_mm must hold K-1 = {len(gaps)} distances like gaps_mm, got {len(heights)}")
    options = []
    for head, foot in _end_drops(k_count, droppable if params.end_drop_cost > 0 else (False, False)):
        keep = slice(head, k_count - foot)
        cost = sum(params.end_drop_cost + anchored[i] for i in (*range(head), *range(k_count - foot, k_count)))
        between = slice(head, k_count - 1 - foot)
        options.append(_Lattice(emis[keep], gaps[between], params, pitch, shared, (head, foot), cost,
                                double_gap[between], heights[between]))
    log_z = logsumexp([o.log_z - o.cost for o in options])
    ranked = sorted([(o.best_score - o.cost, 0, n) for n, o in enumerate(options)] +
                    [(o.second_score - o.cost, 1, n) for n, o in enumerate(options) if o.second is not None],
                    key=lambda t: -t[0])
    (best_score, _, b), runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    won = options[b]
    if runner_up is None:
        second, margin = None, math.inf
    else:
        o = options[runner_up[2]]
        second, margin = (o.path if runner_up[1] == 0 else o.second), best_score - runner_up[0]
    share = math.exp(min(won.log_z - won.cost - log_z, 0.0))  # the posterior of leaving out what it left out
    confidence = np.clip(won.confidence * share, 0.0, 1.0)
    notes = _decoding_notes(won.path, confidence, won.skips, won.gaps, won.ratios, params.skip_tolerance,
                            won.double_gap, won.heights)
    return Decoding(won.path, confidence, won.skips, best_score, notes, second, margin,
                    float(np.exp(min(best_score - log_z, 0.0))), won.dropped)


def _end_drops(k_count: int, droppable: Tuple[bool, bool]) -> List[Tuple[int, int]]:
    """(head, foot): how many instances each end leaves out; at least one instance is kept."""
    return [(h, f) for h in range(1 + bool(droppable[0])) for f in range(1 + bool(droppable[1])) if h + f < k_count]


class _Lattice:
    """One sequence of instances decoded: the best and second-best paths and the posterior marginals."""

    def __init__(self, emis: np.ndarray, gaps: np.ndarray, params: Postprocessing, pitch: float, shared: float,
                 dropped: Tuple[int, int], cost: float, double_gap: np.ndarray, heights: np.ndarray):
        self.gaps, self.heights, self.dropped, self.cost, self.double_gap = gaps, heights, dropped, cost, double_gap
        self.ratios = gap_ratios(gaps, params.gap_window)
        trans = [np.maximum(_transition_scores(r, params.skip_log_prior, params.gap_log_sigma, params.skip_tolerance,
                                               params.max_skip, bool(d))
                            + _pitch_scores(g, pitch, params.gap_log_sigma),
                            _shared_level_scores(g, h, shared, params.shared_level_max_pitch,
                                                 params.shared_level_max_height))
                 for r, g, d, h in zip(self.ratios, gaps, double_gap, heights)]
        self.path, self.best_score, self.second, self.second_score = _two_best(emis, trans)
        k_count = len(emis)
        alpha = np.zeros((k_count, NUM_LEVELS))
        beta = np.zeros((k_count, NUM_LEVELS))
        alpha[0] = emis[0]
        for i, t in enumerate(trans, start=1):
            alpha[i] = logsumexp(alpha[i - 1][:, None] + t, axis=0) + emis[i]
        for i in range(k_count - 2, -1, -1):
            beta[i] = logsumexp(trans[i] + (emis[i + 1] + beta[i + 1])[None, :], axis=1)
        self.log_z = float(logsumexp(alpha[-1]))
        at = np.arange(k_count), self.path
        self.confidence = np.exp(alpha[at] + beta[at] - self.log_z)
        self.skips = [(i, int(_SKIPS[self.path[i], self.path[i + 1]])) for i in range(k_count - 1)
                      if _SKIPS[self.path[i], self.path[i + 1]] > 0]


def _decoding_notes(path, confidence, skips, gaps, ratios, skip_tolerance, double_gap, heights) -> List[str]:
    names = [L.ANATOMICAL_ORDER[s] for s in path]
    notes = [f"field of view starts at {names[0]} and ends at {names[-1]} ({len(set(names))} vertebrae)"]
    for i in np.flatnonzero(path[1:] == path[:-1]):
        height = f" ({heights[i]:.0f} mm in height)" if gaps[i] - heights[i] >= 0.5 else ""
        notes.append(f"two consecutive instances {gaps[i]:.0f} mm apart{height} both numbered {names[i]}: pieces of "
                     "one vertebra (shared_level_prior)")
    for i, k in skips:
        missing = [n for n in L.ANATOMICAL_ORDER[path[i] + 1:path[i + 1]] if n not in ("T13", "L6")]
        word = "level" if k == 1 else "levels"
        if k == 1 and double_gap[i] and ratios[i] < 2 - skip_tolerance:  # the gap alone would not allow it
            notes.append(f"level {missing[0]} skipped between {names[i]} and {names[i + 1]}, one of which is large "
                         f"enough to hold two vertebrae (gap {gaps[i]:.0f} mm, {ratios[i]:.1f} x the neighbouring "
                         f"spacing): it may hold {missing[0]} as well")
            continue
        notes.append(
            f"{word} {', '.join(missing)} skipped between {names[i]} and {names[i + 1]}: gap {gaps[i]:.0f} mm "
            f"({ratios[i]:.1f} x the neighbouring spacing) suggests {k} missing vertebra{'e' if k > 1 else ''}"
        )
    skipped_at = {i for i, _ in skips}
    for i, r in enumerate(ratios):
        if i not in skipped_at and r >= 2 - skip_tolerance:
            notes.append(
                f"gap {gaps[i]:.0f} mm ({r:.1f} x the neighbouring spacing) between {names[i]} and {names[i + 1]},"
                f" but the level evidence is consecutive: a vertebra there may be unsegmented"
            )
    for i, n in enumerate(names):
        if n == "T13":
            notes.append(f"T13 suspected (transitional: 13 thoracic vertebrae), confidence {confidence[i]:.2f}")
        elif n == "L6":
            notes.append(f"L6 suspected (transitional: 6 lumbar vertebrae), confidence {confidence[i]:.2f}")
    return notes
