"""What an adult spine looks like per level, as the numbering needs it (pure numpy): how far apart consecutive
vertebrae are and how large each is. One place for these facts; the decoder (``decoder.py``: a distance too short
for the levels it would span is penalised), the count bound (:func:`max_vertebrae_in`) and the quality flags
(``quality.py``: sizes and spacings implausible for their levels) read them from here.

Typical values, whole vertebrae (body and posterior elements), centroid to centroid, measured on the real manual
VerSe masks under ``shared/data/real`` (verse004 T9-L5, verse010 and verse014 L1-L5, gl003 C1-T5, gl017 C1-T4) and
TotalSegmentator's prediction on ``example_ct`` (T12-L5): pitch 17-22 mm in the neck, 23-27 mm in the upper and
24-34 mm in the lower thoracic spine, 27-36 mm in the lumbar spine; volumes 13-28 ml (C), 24-35 ml (T1-T5),
28-48 ml (T9-T12), 38-66 ml (L). The tables below take a middle value per level; every use allows a wide factor
around it (people differ in size by a factor ~1.3 per axis, so ~2 in volume), set in ``postprocessing.py``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import labels as L

__all__ = ["TYPICAL_PITCH_MM", "PITCH_MM", "TYPICAL_VOLUME_ML", "MIN_VOLUME_ML", "pitch_of", "expected_distance",
           "min_distances", "max_vertebrae_in", "typical_volumes"]

#: Distance (mm) from each level's centroid to the next level's, adult, in ``labels.ANATOMICAL_ORDER``.
TYPICAL_PITCH_MM = dict(zip(L.ANATOMICAL_ORDER, (
    19, 19, 18, 18, 18, 18, 20,  # C1..C7
    23, 24, 24, 25, 25, 26, 26, 27, 27, 28, 29, 30,  # T1..T12
    30,  # T13
    31, 32, 33, 33, 33,  # L1..L5
    33,  # L6
)))
#: Whole-vertebra volume (ml), adult, in ``labels.ANATOMICAL_ORDER``.
TYPICAL_VOLUME_ML = dict(zip(L.ANATOMICAL_ORDER, (
    18, 22, 16, 16, 17, 18, 22,  # C1..C7
    28, 28, 28, 29, 30, 31, 32, 33, 34, 36, 38, 42,  # T1..T12
    43,  # T13
    45, 50, 55, 57, 58,  # L1..L5
    58,  # L6
)))

#: The smallest whole vertebra (ml): the smallest typical level (C3) of a person half as large in volume.
MIN_VOLUME_ML = 0.5 * min(TYPICAL_VOLUME_ML.values())

#: :data:`TYPICAL_PITCH_MM` as an array over ``labels.ANATOMICAL_ORDER`` (read-only)
PITCH_MM = np.array([TYPICAL_PITCH_MM[n] for n in L.ANATOMICAL_ORDER], dtype=np.float64)
PITCH_MM.setflags(write=False)
_TRANSITIONAL = np.array([n in ("T13", "L6") for n in L.ANATOMICAL_ORDER])


def pitch_of(level: int) -> float:
    """Typical pitch (mm) below the level with index ``level`` of ``labels.ANATOMICAL_ORDER``."""
    return float(PITCH_MM[int(level)])


def _expected_matrix() -> np.ndarray:
    """e[s, t]: typical centroid distance from level s down to level t (t > s): the pitch of s, plus the pitch of
    every non-transitional level strictly between them (T12 -> L1 passes no T13; T12 -> T13 -> L1 visits it).
    NaN where t <= s."""
    n = len(PITCH_MM)
    between = np.where(_TRANSITIONAL, 0.0, PITCH_MM)
    cum = np.concatenate([[0.0], np.cumsum(between)])  # cum[k] = sum of between[:k]
    s, t = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    e = PITCH_MM[s] + cum[np.maximum(t, s + 1)] - cum[s + 1]
    return np.where(t > s, e, np.nan)


_EXPECTED = _expected_matrix()


def expected_distance(upper: int, lower: int) -> float:
    """Typical centroid distance (mm) between level indices ``upper`` and ``lower`` (``lower`` > ``upper``)."""
    if not lower > upper:
        raise ValueError(f"level {lower} is not below level {upper}")
    return float(_EXPECTED[int(upper), int(lower)])


def min_distances(fraction: float) -> np.ndarray:
    """(26, 26): ``fraction`` x the typical distance from level s down to level t; NaN where t <= s."""
    return fraction * _EXPECTED


def max_vertebrae_in(extent_mm: float, fraction: float) -> int:
    """The most vertebrae whose centroids fit in ``extent_mm`` along the spine when every pitch is ``fraction`` x
    typical: 1 + the longest run of consecutive pitches (anywhere from C1 to L6, transitional levels included,
    which only lengthens a run) summing to at most ``extent_mm``. ``fraction`` 0 = no bound (26)."""
    if fraction <= 0:
        return len(PITCH_MM)
    pitches = fraction * PITCH_MM[:-1]  # the pitch below each level but the last
    best = 0
    for start in range(len(pitches)):
        total, count = 0.0, 0
        for p in pitches[start:]:
            if total + p > extent_mm:
                break
            total, count = total + p, count + 1
        best = max(best, count)
    return min(best + 1, len(PITCH_MM))


def typical_volumes(levels: Sequence[int]) -> np.ndarray:
    """Typical volume (mm3) of each level index."""
    return np.array([TYPICAL_VOLUME_ML[L.ANATOMICAL_ORDER[int(s)]] * 1000.0 for s in levels])
