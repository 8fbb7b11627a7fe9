"""Lesion candidates from the lesion head's probability map: every peak down to a low probability, its extent and
its scores, whatever the threshold (issue 15 part 2: a fixed cut at 0.5 left a weak head with no instance at all,
and AP was computed over those alone).

Pure numpy/scipy/scikit-image/cc3d: arrays in any axis order, ``spacing`` in mm per array axis. The values are the
post-processing fields ``lesion_*`` (``postprocessing.Postprocessing`` documents each default):

1. the voxels with probability >= ``lesion_candidate_floor`` fall into 26-connected components (cc3d); each
   component is worked on inside its bounding box only. A component larger than :data:`MAX_COMPONENT_ML` is no
   lesion's extent but a head unsure over a whole region: its floor is raised (doubling) until each piece fits,
   and a piece still too large at the highest floor is one candidate, not searched for peaks (steps 2-3), so a weak
   head costs no more than a trained one;
2. peaks: the maxima of the log probability (Gaussian-smoothed with ``lesion_smoothing_mm``, if set) whose dynamic
   is at least ``-log(lesion_split_ratio)`` (``skimage.morphology.h_maxima``): a peak stands on its own when the
   saddle towards any higher peak lies below ``lesion_split_ratio`` x its height; in log space the rule is relative,
   so a weak head's scaled-down map splits like a confident one's. A component always holds at least one peak;
3. basins: a watershed of the component from its peaks (``skimage.segmentation.watershed``, 26-connected), so two
   touching lesions with a valley between them are two candidates;
4. extent: the voxels of a basin whose probability is at least ``lesion_extent_fraction`` x its peak (and at
   least the floor), the piece connected to the peak voxel; candidates smaller than ``lesion_min_volume_mm3`` are
   dropped;
5. scores of each candidate: ``max`` (its peak probability), ``mean`` (mean probability over the extent),
   ``integrated`` (probability summed over the extent, mm3); ``lesion_score`` says which ranks them.

Memory: one boolean mask and one 32-bit component map of the full grid while the components are found, then the
candidates' masks inside their own bounding boxes (lesions are small; so is a component of a trained head's map).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import cc3d
import numpy as np
from scipy import ndimage

from .postprocessing import DEFAULTS, LESION_SCORES, Postprocessing

#: what each ``lesion_score`` means, written into reports
SCORE_DEFINITIONS = {
    "max": "peak lesion probability of the candidate",
    "mean": "mean lesion probability over the candidate's extent",
    "integrated": "lesion probability summed over the candidate's extent, in mm3 (an expected volume)",
}
assert set(SCORE_DEFINITIONS) == set(LESION_SCORES)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One candidate: its extent as a mask inside ``box`` (slices of the full grid), its statistics."""

    box: Tuple[slice, ...]
    mask: np.ndarray
    peak: float
    mean: float
    integrated_mm3: float
    voxels: int
    volume_mm3: float
    centre_index: Tuple[float, ...]
    #: judged on the CT (lesion_contrast.py): mean HU minus the bone's around it (None: not judged or no bone
    #: around it), the factor on its score and peak, whether it lies on metal
    contrast_hu: Optional[float] = None
    ct_factor: float = 1.0
    on_metal: bool = False

    def score(self, kind: str) -> float:
        """The candidate's ``lesion_score`` of that kind (:data:`SCORE_DEFINITIONS`), times its CT factor."""
        return self.ct_factor * {"max": self.peak, "mean": self.mean, "integrated": self.integrated_mm3}[kind]

    @property
    def weighted_peak(self) -> float:
        """The peak times the CT factor: what ``lesion_threshold`` compares."""
        return self.ct_factor * self.peak

    def bbox_index(self) -> List[List[int]]:
        """[first, last] voxel index of the extent per array axis, inclusive (``box`` is its tight box)."""
        return [[s.start, s.stop - 1] for s in self.box]


def check_inputs(prob: np.ndarray, spacing: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(the probabilities as an array, the spacing as floats) after checking them; ValueError naming the problem."""
    prob = np.asarray(prob)
    if prob.ndim != 3:
        raise ValueError(f"lesion probabilities must be a 3D array, got shape {prob.shape}")
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing must be three positive numbers (mm per array axis), got {spacing.tolist()}")
    return prob, spacing


def connected(mask: np.ndarray) -> np.ndarray:
    """26-connected components (uint32 ids) of a boolean mask, read as uint8 without a copy: cc3d 4.1 mislabels
    some thin arrays (e.g. one row [1, 0, 1]) on its ``binary_image`` path and when given booleans."""
    return cc3d.connected_components(mask.view(np.uint8), connectivity=26, out_dtype=np.uint32)


#: the largest component (ml) searched for peaks. Spinal lesions sit in or beside one vertebra (30-60 ml each); a
#: 1-epoch model's map above the floor almost everywhere made one component of ~100 M voxels on a 512x512x600 CT,
#: whose peak search ran past 10 minutes and 11 GB.
MAX_COMPONENT_ML = 200.0


def find_candidates(lesion_prob: np.ndarray, spacing: Sequence[float],
                    params: Postprocessing = DEFAULTS) -> List[Candidate]:
    """Every lesion candidate of a probability map (module docstring), in no particular order."""
    prob, spacing = check_inputs(lesion_prob, spacing)
    sigma = params.lesion_smoothing_mm / spacing  # voxels per axis
    margin = np.ceil(3 * sigma).astype(int)
    max_voxels = MAX_COMPONENT_ML * 1000.0 / float(np.prod(spacing))
    found = []
    for box, inside, search in bounded_components(prob, params.lesion_candidate_floor, max_voxels):
        if np.count_nonzero(inside) * float(np.prod(spacing)) < params.lesion_min_volume_mm3:
            continue  # every candidate lies inside its component: a briefly trained head's map has thousands
        if not search:
            found += _component_candidates(prob[box].astype(np.float32), None, inside, box, spacing, params)
            continue
        # the smoothing reads a margin around the component; everything else stays inside its box
        outer = tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, margin, prob.shape))
        inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
        local = prob[outer].astype(np.float32)
        landscape = ndimage.gaussian_filter(local, sigma) if params.lesion_smoothing_mm > 0 else local
        found += _component_candidates(prob[box].astype(np.float32), landscape[inner], inside, box, spacing, params)
    return found


def bounded_components(prob: np.ndarray, floor: float, max_voxels: float, box: Optional[Tuple[slice, ...]] = None,
                       within: Optional[np.ndarray] = None) -> Iterator[Tuple[Tuple[slice, ...], np.ndarray, bool]]:
    """(box, the component's mask inside it, whether to search it for peaks) of every 26-connected component of
    ``prob >= floor`` (inside ``box`` and its mask ``within``, when given). A component of more than ``max_voxels``
    is split by doubling its floor; one still larger once the floor would pass 1 comes whole, not to be searched."""
    region = prob if box is None else prob[box]
    mask = region >= floor
    if within is not None:
        mask &= within
    origin = [0] * prob.ndim if box is None else [s.start for s in box]
    components = connected(mask)
    del mask
    stats = cc3d.statistics(components)
    for c in range(1, len(stats["voxel_counts"])):
        sub = stats["bounding_boxes"][c]
        inside = components[sub] == c
        full = tuple(slice(o + s.start, o + s.stop) for o, s in zip(origin, sub))
        small = stats["voxel_counts"][c] <= max_voxels
        if small or floor * 2 >= 1.0:
            yield full, inside, small
        else:
            yield from bounded_components(prob, floor * 2, max_voxels, full, inside)


def _component_candidates(prob: np.ndarray, landscape: np.ndarray, inside: np.ndarray, box: Tuple[slice, ...],
                          spacing: np.ndarray, params: Postprocessing) -> List[Candidate]:
    """The candidates of one component (``inside``, within ``box``); ``landscape`` None: one candidate, no peak
    search (an oversized component, :func:`bounded_components`)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    basins = inside.astype(np.int32)
    if landscape is not None:
        depth = -math.log(params.lesion_split_ratio)
        log_floor = math.log(params.lesion_candidate_floor)
        # Outside the component lies far below it, so every component keeps its highest peak.
        log_map = np.where(inside, np.log(np.maximum(landscape, 1e-12)), log_floor - 2 * depth - 1.0)
        markers = connected(h_maxima(log_map, depth).astype(bool) & inside)
        if markers.max() > 1:
            basins = watershed(-log_map, markers, mask=inside, connectivity=3)
    voxel_mm3 = float(np.prod(spacing))
    out = []
    for label, sub in enumerate(ndimage.find_objects(basins), start=1):
        if sub is None:
            continue
        p = prob[sub]
        basin = basins[sub] == label
        peak_at = np.unravel_index(np.argmax(np.where(basin, p, -1.0)), p.shape)
        peak = float(p[peak_at])
        extent = basin & (p >= max(params.lesion_candidate_floor, params.lesion_extent_fraction * peak))
        pieces = connected(extent)
        extent = pieces == pieces[peak_at]
        voxels = int(extent.sum())
        if voxels * voxel_mm3 < params.lesion_min_volume_mm3:
            continue
        values = p[extent].astype(np.float64)
        tight = ndimage.find_objects(extent.astype(np.uint8))[0]
        offset = [s.start + t.start for s, t in zip(sub, tight)]
        centre = np.argwhere(extent).mean(axis=0) + [s.start for s in sub]
        out.append(Candidate(
            box=tuple(slice(b.start + o, b.start + o + (t.stop - t.start)) for b, o, t in zip(box, offset, tight)),
            mask=extent[tight], peak=peak, mean=float(values.mean()),
            integrated_mm3=float(values.sum() * voxel_mm3), voxels=voxels, volume_mm3=voxels * voxel_mm3,
            centre_index=tuple(float(b.start + v) for b, v in zip(box, centre))))
    return out
