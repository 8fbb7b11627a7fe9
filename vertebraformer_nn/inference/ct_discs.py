"""Instances cut and joined at the discs the CT shows (numbering, after the instance repairs; pure numpy / scipy).

The model grid blurs a 4 mm thoracic disc away between its endplates (3.5 mm voxels for the built-in model), so an
instance may hold one and a half or two bodies, or half of one, and every level below it shifts. The input CT of a
chest at 2 mm slices shows every disc. Here the discs are read from the input CT (:class:`InputCT` samples it at
points given on the model grid) along the spine's own axis, and the instances' bodies are made to end at them:

1. :func:`body_curve`: a curve through the vertebral bodies: per slab across the head-foot axis, the centre of the
   front part of the spine (:data:`FRONT_FRACTION` of its front-back extent, within :data:`LATERAL_MM` of its
   left-right middle), smoothed along the spine and sampled every :data:`STEP_MM`.
2. :func:`profile`: the CT averaged over a disc of :data:`PROFILE_RADIUS_MM` perpendicular to the curve at every
   sample: trabecular bone is dim, each endplate a narrow bright peak, a disc a dip between two of them (or, where
   the slices blur it, one peak).
3. :func:`endplate_score`: what of the profile is narrower than :data:`TOPHAT_MM` (a white top-hat: a body's
   broad changes of density go, the endplates stay), smoothed so that the two endplates of a thin disc are one peak;
   :func:`pitch_mm`: the period of the score; :func:`find_discs`: its peaks of at least ``min_score`` HU, at least
   :data:`MIN_PITCH_FRACTION` of the pitch apart.
4. :func:`regular`: the discs are used when at least :data:`MIN_DISCS` of them lie evenly spaced. Where they do not
   all (a thoracolumbar spine: lumbar gaps at the foot; a body's middle taken for a disc; a disc missed), only
   :func:`regular_runs` of them are, stretches of at least :data:`RUN_MIN_DISCS` evenly spaced discs, dark
   between two bright endplates (:func:`disc_contrast`, at least :data:`RUN_MIN_CONTRAST_HU` in the median, and
   the discs at either end at least :data:`RUN_END_MIN_CONTRAST_HU` each: :func:`dark_ended`); elsewhere the
   network's instances stay.
5. :func:`recut`: each instance's body voxels (within :data:`BODY_RADIUS_MM` of the curve) fall between two discs;
   an instance whose body lies in two or more such segments, each at least ``min_part`` of it, is cut there (its
   other voxels join the nearest part); touching instances whose bodies lie mostly in one segment between two discs
   of a run, no taller than :data:`MERGE_MAX_PITCH` times the runs' median distance, become one.

Left alone (:func:`unreadable`): inputs sampled more coarsely than :data:`MAX_SPACING_MM` along the head-foot axis,
or than :data:`THIN_SPACING_MM` (two samples per thoracic disc) where their noise is above
:data:`THICK_MAX_NOISE_HU`; and discs more than :data:`MAX_PITCH_MM` apart (lumbar discs are 8-15 mm thick: their
two endplates are two peaks, and the reading takes either one, or a bright band in a body's middle, for the disc).
A spine whose pitch is lumbar as a whole is read only in runs, of thinner discs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage, signal
from scipy.spatial import cKDTree

from .anchors import noise_sd
from .disc_split import assign_to_parts
from .instance_repair import touching
from .instances import occupied_box

__all__ = ["InputCT", "THIN_SPACING_MM", "MAX_SPACING_MM", "THICK_MAX_NOISE_HU", "unreadable", "body_curve",
           "profile", "endplate_score", "pitch_mm", "find_discs", "regular", "regular_runs", "dark_ended", "recut",
           "cut_at_ct_discs"]

#: input slices up to this far apart along the head-foot axis show a 4 mm thoracic disc in two samples at least
THIN_SPACING_MM = 2.5
#: ... up to this far apart, one sample of it and the endplates' partial volume on either side: enough where the
#: noise is low (47 readings of 25 quiet phantoms at 3 mm, by two protocol runs' models and the built-in model: 9
#: gain levels, none loses; the real CT unchanged; benchmarks/results/thick_slice_discs_2026-12-07/); never farther
MAX_SPACING_MM = 3.0
#: the noise (HU, :func:`anchors.noise_sd` of every :data:`NOISE_STRIDE`-th sample along the input's first axis)
#: above which slices thicker than :data:`THIN_SPACING_MM` are not read: the low-dose phantoms measure 31-39 HU, and
#: read at 3 mm 2 of their 12 lost levels and 1 gained (the other styles and example_ct: 12-25 HU)
THICK_MAX_NOISE_HU = 28.0
#: a quarter of the samples measure the noise within 4 HU of all of them (the phantoms), at a quarter of the cost
NOISE_STRIDE = 4
#: the front part of the spine's front-back extent in a slab that is body (a thoracic body is 40 % of the depth from
#: its front to the spinous process's tip)
FRONT_FRACTION = 0.35
#: half-width (mm) of the spine's middle that the curve follows (a body is 25-50 mm wide; ribs and transverse
#: processes lie farther out)
LATERAL_MM = 10.0
#: smoothing (mm, Gaussian sigma) of the curve along the spine
CURVE_SMOOTH_MM = 7.0
#: sampling step (mm) along the curve
STEP_MM = 0.5
#: radius (mm) of the disc the profile averages over: inside the smallest body's cortex
PROFILE_RADIUS_MM = 7.0
#: features of the profile narrower than this (mm) are endplates; a body's density changes are broader
TOPHAT_MM = 7.0
#: the pitch (distance between discs) is sought between these (mm): cervical 15-18, lumbar 35-40
PITCH_RANGE_MM = (12.0, 45.0)
#: a peak of the score's autocorrelation at a shorter lag is the pitch when it reaches this fraction of the highest
#: (at twice the pitch the discs line up again, and may correlate a little better over a curve with a bright end)
HARMONIC_FRACTION = 0.8
#: smoothing (mm, Gaussian sigma) that makes one peak of a thin disc's two endplates
SCORE_SMOOTH_MM = 3.0
#: two discs are at least this fraction of the pitch apart
MIN_PITCH_FRACTION = 0.6
#: the discs found are used only when at least this many, ...
MIN_DISCS = 3
#: ... each distance between consecutive ones within these multiples of their median (the pitch changes by <~20 %
#: from one vertebra to the next)
REGULAR_RANGE = (0.75, 1.35)
#: where the discs are not all evenly spaced, a stretch of at least this many consecutive ones that are is used ...
RUN_MIN_DISCS = 4
#: ... each gap between them within these multiples of the gap before it (thoracic gaps grow 18 -> 28 mm over 11
#: vertebrae, T12/L1 -> L1/L2 by about a fifth)
RUN_NEIGHBOUR_RANGE = (0.8, 1.25)
#: ... and the profile's dip at them at least this deep (HU, median over the run's discs; :func:`disc_contrast`): a
#: lumbar spine's endplates and bright body middles can lie evenly at half its pitch, with no dark disc between two
#: bright endplates (median 0-39 HU in the unseen-style phantoms' such runs; 81-218 in the demo's thoracic runs)
RUN_MIN_CONTRAST_HU = 50.0
#: ... and a run's end discs at least this dark (HU, each; :func:`dark_ended`): a demo model's run on an unseen
#: phantom went on into two bodies' middles at 0 and 15 HU and cut a T12 in two; 50 would also trim true discs of
#: the built-in model's runs (benchmarks/results/run_ends_2026-12-06/)
RUN_END_MIN_CONTRAST_HU = 25.0
#: :func:`disc_contrast` looks for the disc's darkest value within this (mm) of it, ...
DISC_HALF_MM = 1.5
#: ... and for the endplates between these distances (mm) on either side
FLANK_MM = (1.5, 8.0)
#: voxels within this (mm) of the curve are body: they decide in which segment an instance lies
BODY_RADIUS_MM = 15.0
#: instances are joined only in a segment at most this times the median distance between the discs found (a disc
#: missed makes a segment of two bodies, about twice it)
MERGE_MAX_PITCH = 1.25
#: thin discs only: where the discs are farther apart (mm, the lumbar spine: 33-40) they are 8-15 mm thick, their
#: two endplates two peaks, and the reading picks either, or a body's middle (verse014 and phantoms, ct_discs record);
#: a spine whose pitch is more is never read whole, only in runs whose own median is at most this
MAX_PITCH_MM = 28.0


@dataclass(frozen=True)
class InputCT:
    """The input CT seen from the model grid: sampled at input resolution at points given in model mm."""

    array: np.ndarray  # HU, input axis order (z, y, x); a view is enough
    input_spacing: Tuple[float, float, float]  # mm per input axis
    model_axis: Tuple[int, int, int]  # per input axis, the model axis that feeds it
    inverse: Tuple[Tuple[np.ndarray, np.ndarray], ...]  # per input axis: (model coordinates ascending, input index)
    model_spacing: Tuple[float, float, float]  # mm per model axis
    front: Tuple[int, int]  # model axis closest to front-back, +1 when its index grows towards the back
    origin: Tuple[int, int, int] = (0, 0, 0)  # the input index of array[0, 0, 0] (a crop of the input)

    @classmethod
    def from_grid(cls, array: np.ndarray, input_spacing: Sequence[float], grid, model_spacing: Sequence[float],
                  front: Tuple[int, int]) -> "InputCT":
        """``grid``: the ``grid_map.GridMap`` between the input (``array``) and the model grid."""
        inverse = []
        for a in range(3):
            coords = np.asarray(grid.coords[a], dtype=np.float64)
            valid = np.flatnonzero(np.isfinite(coords))
            order = np.argsort(coords[valid], kind="stable")
            inverse.append((coords[valid][order], valid[order].astype(np.float64)))
        return cls(array, tuple(float(s) for s in input_spacing), tuple(int(m) for m in grid.model_axis),
                   tuple(inverse), tuple(float(s) for s in model_spacing), (int(front[0]), int(front[1])))

    def cropped(self, window: Sequence[slice]) -> "InputCT":
        """The same CT held only inside ``window`` (input index ranges, within this one's array): a copy, so that
        the whole image can be let go; samples outside it take its nearest edge."""
        starts = tuple(int(w.start or 0) for w in window)
        return replace(self, array=np.array(self.array[tuple(window)]),
                       origin=tuple(o + s for o, s in zip(self.origin, starts)))

    def head_foot_spacing(self, si_axis: int) -> float:
        """mm between the input's samples along the model's head-foot axis."""
        return self.input_spacing[self.model_axis.index(si_axis)]

    def sample(self, points_mm: np.ndarray) -> np.ndarray:
        """HU (float32) at ``points_mm`` ((n, 3) model mm), linear between input voxels, the nearest edge outside."""
        model = np.asarray(points_mm, dtype=np.float64) / np.asarray(self.model_spacing)
        index = np.stack([np.interp(model[:, self.model_axis[a]], *self.inverse[a]) - self.origin[a]
                          for a in range(3)])
        return ndimage.map_coordinates(self.array, index, order=1, mode="nearest").astype(np.float32)


def unreadable(ct: InputCT, si_axis: int) -> Optional[str]:
    """Why the CT's slices cannot show its discs (None when they can): more than :data:`MAX_SPACING_MM` apart along
    the spine, or more than :data:`THIN_SPACING_MM` with noise above :data:`THICK_MAX_NOISE_HU` (a thin disc's one
    sample then drowns in it); the noise is measured only for such slices."""
    step = ct.head_foot_spacing(si_axis)
    if step > MAX_SPACING_MM:
        return f"its slices are {step:g} mm apart along the spine (more than {MAX_SPACING_MM:g})"
    if step > THIN_SPACING_MM:
        noise = noise_sd(ct.array[::NOISE_STRIDE])
        if noise > THICK_MAX_NOISE_HU:
            return (f"its slices are {step:g} mm apart along the spine and its noise {noise:.0f} HU (more than "
                    f"{THICK_MAX_NOISE_HU:g} where the slices are more than {THIN_SPACING_MM:g} mm apart)")
    return None


def body_curve(instance_map: np.ndarray, spacing, si_axis: int, front: Tuple[int, int]) -> Optional[np.ndarray]:
    """(n, 3) points in model mm every :data:`STEP_MM` along the curve through the bodies (module docstring), from
    the lowest index along ``si_axis`` to the highest; None when fewer than three slabs hold spine."""
    sp = np.asarray(spacing, dtype=np.float64)
    box = occupied_box(instance_map)
    if box is None:
        return None
    front_axis, back_sign = front
    lateral = ({0, 1, 2} - {si_axis, front_axis}).pop()
    fg = instance_map[box] > 0
    lo = np.array([b.start for b in box], dtype=np.float64)
    centres = []
    for row in range(fg.shape[si_axis]):
        pts = np.argwhere(np.take(fg, row, axis=si_axis))  # (k, 2): the two other axes in order
        if len(pts) < 3:
            continue
        other = [a for a in range(3) if a != si_axis]
        pts = pts + lo[other]
        lat, fr = pts[:, other.index(lateral)], pts[:, other.index(front_axis)]
        near = np.abs(lat - np.median(lat)) * sp[lateral] <= LATERAL_MM
        if near.sum() < 3:  # pieces left and right of an empty middle: no body in this slab
            continue
        lat, fr = lat[near], fr[near]
        depth = fr * back_sign  # grows towards the back
        body = depth <= depth.min() + FRONT_FRACTION * (depth.max() - depth.min())
        centre = np.zeros(3)
        centre[si_axis], centre[lateral], centre[front_axis] = row + lo[si_axis], lat[body].mean(), fr[body].mean()
        centres.append(centre * sp)
    if len(centres) < 3:
        return None
    centres = np.asarray(centres)
    sigma = CURVE_SMOOTH_MM / sp[si_axis]
    smooth = np.stack([ndimage.gaussian_filter1d(centres[:, a], sigma, mode="nearest") for a in range(3)], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(smooth, axis=0), axis=1))])
    at = np.arange(0.0, arc[-1] + 1e-9, STEP_MM)
    return np.stack([np.interp(at, arc, smooth[:, a]) for a in range(3)], axis=1)


def profile(ct: InputCT, curve: np.ndarray, radius_mm: float = PROFILE_RADIUS_MM) -> np.ndarray:
    """Mean HU over a disc of ``radius_mm`` perpendicular to the curve at each of its points."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    helper = np.where(np.abs(tangent[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    u = np.cross(tangent, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(tangent, u)
    radii = np.arange(1.0, radius_mm + 1e-9, 1.0)
    angles = np.linspace(0.0, 2 * np.pi, 12, endpoint=False)
    r, a = [x.ravel() for x in np.meshgrid(radii, angles)]
    offsets = (r * np.cos(a))[None, :, None] * u[:, None, :] + (r * np.sin(a))[None, :, None] * v[:, None, :]
    points = np.concatenate([curve[:, None, :], curve[:, None, :] + offsets], axis=1)  # the centre and the rings
    return ct.sample(points.reshape(-1, 3)).reshape(len(curve), -1).mean(axis=1)


def endplate_score(values: np.ndarray) -> np.ndarray:
    """HU by which the profile rises in features narrower than :data:`TOPHAT_MM` (a white top-hat: a body's broad
    changes of density go, the endplates stay), smoothed so that the two endplates of a thin disc make one peak."""
    values = np.asarray(values, dtype=np.float64)
    size = max(3, int(round(TOPHAT_MM / STEP_MM)) | 1)
    tophat = values - ndimage.grey_opening(values, size=size, mode="nearest")
    return ndimage.gaussian_filter1d(tophat, SCORE_SMOOTH_MM / STEP_MM, mode="nearest")


def pitch_mm(score: np.ndarray) -> Optional[float]:
    """The distance between discs: the shortest lag within :data:`PITCH_RANGE_MM` where the score's autocorrelation
    has a peak of at least :data:`HARMONIC_FRACTION` x its highest value (a period repeats at twice and three times
    itself, and those may correlate a little more: the chest series' 24 mm against 45 mm, the range's end); the
    highest value when no peak lies inside the range; None when the curve is too short to hold two periods."""
    lo, hi = (int(round(x / STEP_MM)) for x in PITCH_RANGE_MM)
    centred = np.asarray(score, dtype=np.float64) - np.mean(score)
    if len(centred) < 2 * lo:
        return None
    hi = min(hi, len(centred) // 2)
    corr = np.array([np.dot(centred[:-lag], centred[lag:]) / (len(centred) - lag) for lag in range(lo, hi + 1)])
    peaks, _ = signal.find_peaks(corr)
    strong = peaks[corr[peaks] >= HARMONIC_FRACTION * corr.max()] if corr.max() > 0 else peaks[:0]
    best = int(strong[0]) if len(strong) else int(np.argmax(corr))
    return float((lo + best) * STEP_MM)


def find_discs(score: np.ndarray, pitch: float, min_score: float) -> np.ndarray:
    """Indices (along the curve) of the discs: the score's peaks of at least ``min_score`` HU, at least
    :data:`MIN_PITCH_FRACTION` x ``pitch`` mm apart."""
    distance = max(1, int(round(MIN_PITCH_FRACTION * pitch / STEP_MM)))
    peaks, _ = signal.find_peaks(np.asarray(score, dtype=np.float64), height=min_score, distance=distance)
    return peaks


def regular(discs: np.ndarray, pitch: float) -> bool:
    """Whether the discs found make a spine: at least :data:`MIN_DISCS` of them, every distance between consecutive
    ones within :data:`REGULAR_RANGE` x their median and that median within it x ``pitch``. A body's middle taken for
    a disc, or a disc missed, breaks it; then only :func:`regular_runs` are used."""
    if len(discs) < MIN_DISCS:
        return False
    gaps = np.diff(np.asarray(discs, dtype=np.float64)) * STEP_MM
    median = float(np.median(gaps))
    lo, hi = REGULAR_RANGE
    return bool(np.all((gaps >= lo * median) & (gaps <= hi * median)) and lo * pitch <= median <= hi * pitch)


def regular_runs(discs: np.ndarray, pitch: float) -> List[np.ndarray]:
    """The stretches of the spine where the discs found are evenly spaced, when all of them together are not (a
    thoracolumbar spine: lumbar gaps at the foot, a body's bright middle taken for a disc, a disc missed): runs of at
    least :data:`RUN_MIN_DISCS` consecutive discs whose every gap is within :data:`RUN_NEIGHBOUR_RANGE` x the gap
    next to it (the pitch changes slowly along a spine; a false disc makes a short gap beside a long one), whose
    median gap is within :data:`REGULAR_RANGE` x ``pitch`` and at most :data:`MAX_PITCH_MM`. Longest first, never
    sharing more than an end disc; each as an array of disc indices (along the curve), foot to head."""
    discs = np.asarray(discs)
    gaps = np.diff(discs.astype(np.float64)) * STEP_MM
    lo, hi = RUN_NEIGHBOUR_RANGE
    smooth = np.concatenate([[True], (gaps[1:] >= lo * gaps[:-1]) & (gaps[1:] <= hi * gaps[:-1])])
    candidates = []
    for first in range(len(discs)):
        for last in range(first + RUN_MIN_DISCS - 1, len(discs)):
            if not np.all(smooth[first + 1:last]):  # gap k (discs k, k+1) against gap k-1
                break
            median = float(np.median(gaps[first:last]))
            if REGULAR_RANGE[0] * pitch <= median <= min(REGULAR_RANGE[1] * pitch, MAX_PITCH_MM):
                candidates.append((first, last))
    runs, taken = [], np.zeros(len(discs), bool)
    for first, last in sorted(candidates, key=lambda r: (r[0] - r[1], r[0])):
        if not taken[first + 1:last].any():  # an end disc may be another run's end too
            runs.append(discs[first:last + 1])
            taken[first:last + 1] = True
    return sorted(runs, key=lambda r: r[0])


def disc_contrast(values: np.ndarray, discs: np.ndarray) -> np.ndarray:
    """Per disc (indices into the profile ``values``), HU by which the profile's lowest value within
    :data:`DISC_HALF_MM` of it lies below the darker of its two flanks (each flank's highest value between
    :data:`FLANK_MM` away): a disc is darker than the endplates either side of it; NaN at the curve's ends."""
    values = np.asarray(values, dtype=np.float64)
    half = int(round(DISC_HALF_MM / STEP_MM))
    near, far = (int(round(x / STEP_MM)) for x in FLANK_MM)
    out = np.full(len(discs), np.nan)
    for k, d in enumerate(np.asarray(discs, dtype=int)):
        if d - far >= 0 and d + far < len(values):
            flank = min(values[d - far:d - near + 1].max(), values[d + near:d + far + 1].max())
            out[k] = flank - values[d - half:d + half + 1].min()
    return out


def dark_ended(values: np.ndarray, run: np.ndarray) -> np.ndarray:
    """``run`` without the discs at either end that are not darker than their endplates by
    :data:`RUN_END_MIN_CONTRAST_HU` (:func:`disc_contrast`; one at the curve's end, NaN, stays): evenly spaced peaks
    may go on past the last discs into bodies' bright middles, at the run's pitch by chance."""
    weak = disc_contrast(values, run) < RUN_END_MIN_CONTRAST_HU  # NaN compares False: kept
    first, last = 0, len(run)
    while first < last and weak[first]:
        first += 1
    while last > first and weak[last - 1]:
        last -= 1
    return np.asarray(run)[first:last]


def recut(instance_map: np.ndarray, spacing, curve: np.ndarray, runs: Sequence[np.ndarray],
          min_part: float) -> Tuple[np.ndarray, List[str]]:
    """(instance map, notes): instances cut at the discs and joined between them (module docstring, step 5);
    ``runs``: evenly spaced runs of discs (indices into ``curve``, foot to head); instances are joined only between
    two discs of one run; a cut part gets a new id."""
    sp = np.asarray(spacing, dtype=np.float64)
    box = occupied_box(instance_map)
    discs = np.unique(np.concatenate([np.asarray(r) for r in runs])) if len(runs) else np.zeros(0, np.int64)
    if box is None or not len(discs):
        return instance_map, []
    out = instance_map.copy()
    region = out[box]
    coords = np.argwhere(region > 0)
    lo = np.array([b.start for b in box])
    distance, nearest = cKDTree(curve).query((coords + lo) * sp)
    body = distance <= BODY_RADIUS_MM
    segment = np.searchsorted(np.asarray(discs), nearest)  # segment k lies between discs k-1 and k
    ids = region[tuple(coords.T)]
    next_id = int(instance_map.max(initial=0)) + 1
    cuts = []
    for i in np.unique(ids):
        mine = ids == i
        own = segment[mine & body]
        if not len(own):
            continue
        counts = np.bincount(own)
        big = np.flatnonzero(counts >= min_part * len(own))
        if len(big) < 2:
            continue
        seeds = np.zeros(region.shape, np.int32)
        at = mine & body & np.isin(segment, big)
        seeds[tuple(coords[at].T)] = segment[at] + 1
        next_id = assign_to_parts(region, region == i, seeds, big + 1, int(i), next_id, sp)
        cuts.append(len(big))
    notes = [f"cut {len(cuts)} instance(s) at discs the CT shows, into {sum(cuts)} vertebrae"] if cuts else []
    within = np.zeros(len(discs) + 1, bool)  # segment k lies between two discs of one run
    for run in runs:
        within[np.searchsorted(discs, run[1:])] = True
    gaps = np.concatenate([np.diff(np.asarray(r, dtype=np.float64)) for r in runs])
    joined = _join_within_segments(region, coords, body, segment, discs, within, float(np.median(gaps)) * STEP_MM)
    if joined:
        notes.append(f"joined {joined} instance(s) to a neighbour whose body lies between the same two discs the CT "
                     "shows: pieces of one vertebra")
    return out, notes


def _join_within_segments(region: np.ndarray, coords: np.ndarray, body: np.ndarray, segment: np.ndarray,
                          discs: np.ndarray, within: np.ndarray, spacing_mm: float) -> int:
    """Touching instances whose bodies lie mostly in one segment (one marked ``within``: between two discs of a run)
    at most :data:`MERGE_MAX_PITCH` x ``spacing_mm`` (the runs' median distance) long become one (in place); returns
    how many were joined to another."""
    ids = region[tuple(coords.T)]
    edges = np.concatenate([[0], np.asarray(discs), [np.iinfo(np.int64).max]])
    home = {}
    for i in np.unique(ids):
        own = segment[(ids == i) & body]
        if not len(own):
            continue
        k = int(np.bincount(own).argmax())
        if np.mean(own == k) < 0.5 or not within[k]:
            continue
        if (edges[k + 1] - edges[k]) * STEP_MM <= MERGE_MAX_PITCH * spacing_mm:
            home[int(i)] = k
    joined = 0
    by_segment = {}
    for i, k in sorted(home.items()):
        by_segment.setdefault(k, []).append(i)
    for k, members in by_segment.items():
        keep = members[0]
        for other in members[1:]:
            if touching(region, keep, other, faces_only=True):
                region[region == other] = keep
                joined += 1
    return joined


def cut_at_ct_discs(instance_map: np.ndarray, spacing, si_axis: int, ct: Optional[InputCT], min_score: float,
                    min_part: float) -> Tuple[np.ndarray, List[str], dict]:
    """Steps 1-5 (module docstring): (instance map, notes, what was found: curve length, pitch, disc positions in mm
    along the curve, and ``used`` when all of them were evenly spaced and cut the instances, or ``runs_mm`` when
    only such runs did). Nothing changes without a CT, with ``min_score`` 0, on thick slices or a short spine, or on
    a grid too oblique to tell front from head."""
    found = {}
    if ct is None or min_score <= 0 or ct.front[0] == si_axis:
        return instance_map, [], found
    reason = unreadable(ct, si_axis)
    if reason:
        return instance_map, [f"discs not read from the CT: {reason}"], found
    curve = body_curve(instance_map, spacing, si_axis, ct.front)
    if curve is None:
        return instance_map, [], found
    values = profile(ct, curve)
    score = endplate_score(values)
    pitch = pitch_mm(score)
    if pitch is None:
        return instance_map, [], found
    lumbar = pitch > MAX_PITCH_MM
    discs = find_discs(score, pitch, min_score)
    found = {"curve_mm": round(len(curve) * STEP_MM, 1), "pitch_mm": pitch,
             "discs_mm": [round(float(d) * STEP_MM, 1) for d in discs]}
    if len(discs) < MIN_DISCS:
        return instance_map, [f"{len(discs)} disc(s) read from the CT along the spine, too few to tell their "
                              f"spacing: instances left as they are"], found
    if not lumbar and regular(discs, pitch):
        found["used"] = True  # every disc: the whole spine in view has a thoracic pitch
        out, notes = recut(instance_map, spacing, curve, [discs], min_part)
        return out, notes, found
    runs = [r for r in (dark_ended(values, run) for run in regular_runs(discs, pitch))
            if len(r) >= RUN_MIN_DISCS and np.nanmedian(disc_contrast(values, r)) >= RUN_MIN_CONTRAST_HU]
    if not runs and lumbar:
        return instance_map, [f"discs not read from the CT: they lie {pitch:g} mm apart along the spine (more than "
                              f"{MAX_PITCH_MM:g}: thick lumbar discs)"], found
    if not runs:
        return instance_map, [f"{len(discs)} discs read from the CT along the spine, not evenly spaced (pitch "
                              f"{pitch:g} mm): instances left as they are"], found
    found["runs_mm"] = [[round(float(d) * STEP_MM, 1) for d in run] for run in runs]
    out, notes = recut(instance_map, spacing, curve, runs, min_part)
    return out, [f"{len(discs)} discs read from the CT along the spine, not all evenly spaced (pitch {pitch:g} mm): "
                 f"used {len(np.unique(np.concatenate(runs)))} in {len(runs)} evenly spaced run(s)"] + notes, found
