"""Lesion candidates judged on the CT at the input's own resolution: their contrast against the trabecular bone
around them ranks them, and their extent follows that contrast.

The lesion head sees the scan on the model's grid (3.5 mm for the CPU preset) and answers for small bright and
small dark spots alike, inside bone or not. A spinal metastasis is visible on CT because it is denser (blastic) or
less dense (lytic) than the trabecular bone it replaces, so for each candidate (:func:`judge_on_ct`):

* **contrast**: the candidate's mean HU minus the median HU of the bone around it: the voxels of a predicted
  vertebra :data:`SHELL_MM` from its extent, below :data:`CORTEX_HU` (a ring holding cortex reads a lytic lesion
  as darker than the bone it sits in). With the spread of those voxels (their SD: noise and texture) it gives the
  candidate's factor ``min(1, |contrast| / SD)``: a candidate the CT cannot tell from its bone counts for little,
  one at least one SD away counts fully. Without bone around it (no vertebra within the shell) the factor is
  :data:`UNKNOWN_FACTOR`; on metal (:data:`METAL_FRACTION` of its voxels at :data:`METAL_HU` or above: a screw or
  an implant, not a lesion; the head answers to the phantoms' screws as to blastic lesions) it is 0. The
  candidate's score and the peak that decides whether it is written as a lesion are multiplied by the factor, so
  the written lesions stay the top of the ranking;
* **extent** (``band_mm`` > 0, and the contrast clear: at least :data:`CLEAR_SD` SD): within ``band_mm`` of the
  head's extent and inside a predicted vertebra, the voxels on the lesion's side of the half-way point between the
  bone's median and the candidate's mean (the CT smoothed by :data:`SMOOTHING_MM` against noise), connected to the
  part of the head's extent that lies on that side. The head's extent comes from the model's grid and is narrower
  or wider than the lesion; the lesion's own edge is where its density meets the bone's.

Candidates keep disjoint extents: where two grown extents meet, the one with the higher score keeps the voxels.
Pure numpy/scipy/cc3d on arrays in any axis order, ``spacing`` in mm per array axis; the work is inside each
candidate's box grown by the band and the shell.

Chosen on the built-in model's saved probabilities of 36 phantoms of unseen seeds and styles and checked on the
quick protocol's fine-tuned networks (benchmarks/results/lesion_contrast_2026-12-05/).
"""
from __future__ import annotations

import dataclasses
from typing import List, NamedTuple, Optional, Sequence, Tuple

import cc3d
import numpy as np
from scipy import ndimage

from .lesion_candidates import Candidate

__all__ = ["CORTEX_HU", "SHELL_MM", "CLEAR_SD", "UNKNOWN_FACTOR", "METAL_HU", "METAL_FRACTION", "bone_contrast",
           "judge_on_ct", "snapped_extent"]

#: trabecular bone stays below it; cortex (and blastic lesions) lie above
CORTEX_HU = 400.0
#: the bone a candidate is compared with lies this far (mm) from its extent: far enough to leave its blurred rim
#: out, near enough to be the same vertebra's bone
SHELL_MM = (2.0, 6.0)
#: fewer bone voxels than this around a candidate: its contrast is unknown
MIN_SHELL_VOXELS = 10
#: the factor of a candidate whose contrast is unknown: half-way between no contrast and a clear one
UNKNOWN_FACTOR = 0.5
#: the extent follows the CT only where the contrast is at least this many SD of the bone around it
CLEAR_SD = 1.0
#: Gaussian sigma (mm) of the CT in which the extent's edge is found
SMOOTHING_MM = 1.0
#: no bone, lesion or cortex reaches this HU; implants do (the phantoms' screws: 3000 HU, their densest blastic
#: lesion 1656 HU, cortex up to 1620 HU with the hushift style's calibration)
METAL_HU = 2000.0
#: a candidate with at least this fraction of its voxels at METAL_HU or above is the head's response to metal:
#: factor 0 (listed, ranked last), extent kept
METAL_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A candidate's mean HU minus its bone's median (``hu``), the bone's median and SD."""

    hu: float
    bone_hu: float
    bone_sd: float

    @property
    def factor(self) -> float:
        if self.bone_sd <= 0:
            return 1.0 if self.hu else 0.0
        return min(1.0, abs(self.hu) / self.bone_sd)

    @property
    def clear(self) -> bool:
        return abs(self.hu) > 0 and abs(self.hu) >= CLEAR_SD * self.bone_sd


class _Judged(NamedTuple):
    """One candidate as judged, before the extents are made disjoint; ``mask`` on ``window``."""

    window: Tuple[slice, ...]
    mask: np.ndarray
    contrast: Optional[Contrast]
    factor: float
    metal: bool
    candidate: Candidate


def _window(box: Tuple[slice, ...], margin: np.ndarray, shape: Sequence[int]) -> Tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, margin, shape))


def _inner(box: Tuple[slice, ...], window: Tuple[slice, ...]) -> Tuple[slice, ...]:
    return tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(box, window))


def bone_contrast(mask: np.ndarray, hu: np.ndarray, vertebra: np.ndarray, distance: np.ndarray) -> Optional[Contrast]:
    """The contrast of ``mask`` against the bone ``SHELL_MM`` from it; ``hu``, ``vertebra`` (bool) and
    ``distance`` (mm from the mask) on the same window. None when too few bone voxels surround it."""
    shell = (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1]) & vertebra & (hu < CORTEX_HU)
    if int(shell.sum()) < MIN_SHELL_VOXELS:
        return None
    bone = hu[shell]
    median = float(np.median(bone))
    return Contrast(hu=float(hu[mask].mean(dtype=np.float64)) - median, bone_hu=median, bone_sd=float(bone.std()))


def snapped_extent(mask: np.ndarray, hu: np.ndarray, vertebra: np.ndarray, distance: np.ndarray,
                   contrast: Contrast, band_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """The extent on the lesion's side of the half-way HU within ``band_mm`` of ``mask`` (module docstring); the
    mask itself when none of it lies on that side."""
    smooth = ndimage.gaussian_filter(hu, SMOOTHING_MM / np.asarray(spacing, dtype=float))
    side = (smooth - contrast.bone_hu) * np.sign(contrast.hu) > abs(contrast.hu) / 2
    seed = mask & side
    if not seed.any():
        return mask
    pieces = cc3d.connected_components((side & (distance <= band_mm) & (vertebra | mask)).view(np.uint8),
                                       connectivity=26)
    keep = np.unique(pieces[seed])
    return np.isin(pieces, keep[keep > 0])


def _rebuilt(j: _Judged, prob: np.ndarray, voxel_mm3: float) -> Optional[Candidate]:
    """The candidate with its judged extent and its statistics; None when the extent is empty."""
    found = ndimage.find_objects(j.mask.astype(np.uint8))
    if not found:
        return None
    tight = found[0]
    box = tuple(slice(w.start + t.start, w.start + t.stop) for w, t in zip(j.window, tight))
    extent = j.mask[tight]
    values = prob[box][extent].astype(np.float64)
    voxels = int(extent.sum())
    centre = np.argwhere(extent).mean(axis=0) + [s.start for s in box]
    return dataclasses.replace(j.candidate, box=box, mask=extent, mean=float(values.mean()),
                               integrated_mm3=float(values.sum() * voxel_mm3), voxels=voxels,
                               volume_mm3=voxels * voxel_mm3, centre_index=tuple(float(v) for v in centre),
                               contrast_hu=None if j.contrast is None else j.contrast.hu, ct_factor=j.factor,
                               on_metal=j.metal)


def judge_on_ct(candidates: Sequence[Candidate], prob: np.ndarray, hu: np.ndarray, vertebrae: np.ndarray,
                spacing: Sequence[float], band_mm: float, weigh: bool = True) -> List[Candidate]:
    """Every candidate with its contrast, factor (``weigh``; else 1) and (``band_mm`` > 0) extent on the CT (module
    docstring). ``prob``, ``hu`` and ``vertebrae`` (any label map, 0 = background) share one grid; nothing is judged
    where no vertebra was found (the candidates come back as they are)."""
    if not len(candidates) or not np.any(vertebrae):
        return list(candidates)
    spacing = np.asarray(spacing, dtype=float)
    margin = np.ceil((max(band_mm, SHELL_MM[1]) + 1.0) / spacing).astype(int)
    voxel_mm3 = float(np.prod(spacing))
    judged = []
    for c in candidates:
        window = _window(c.box, margin, prob.shape)
        mask = np.zeros([w.stop - w.start for w in window], dtype=bool)
        mask[_inner(c.box, window)] = c.mask
        local_hu = hu[window].astype(np.float32)
        vertebra = vertebrae[window] > 0
        distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
        contrast = bone_contrast(mask, local_hu, vertebra, distance)
        metal = float(np.mean(local_hu[mask] >= METAL_HU)) >= METAL_FRACTION
        factor = 1.0 if not weigh else 0.0 if metal else UNKNOWN_FACTOR if contrast is None else contrast.factor
        if contrast is not None and contrast.clear and band_mm > 0 and not metal:
            mask = snapped_extent(mask, local_hu, vertebra, distance, contrast, band_mm, spacing)
        judged.append(_Judged(window, mask, contrast, factor, metal, c))
    # disjoint extents: the higher score keeps a contested voxel
    judged.sort(key=lambda j: -j.candidate.peak * j.factor)
    starts = np.array([[s.start for s in j.window] for j in judged])
    stops = np.array([[s.stop for s in j.window] for j in judged])
    out: List[Candidate] = []
    kept: List[int] = []
    for i, j in enumerate(judged):
        if kept:
            k = np.array(kept)
            touching = k[np.all(np.maximum(starts[k], starts[i]) < np.minimum(stops[k], stops[i]), axis=1)]
            for other in (judged[t] for t in touching):  # only the few whose windows meet this one's
                overlap = tuple(slice(max(a.start, b.start), min(a.stop, b.stop))
                                for a, b in zip(j.window, other.window))
                j.mask[_inner(overlap, j.window)] &= ~other.mask[_inner(overlap, other.window)]
        rebuilt = _rebuilt(j, prob, voxel_mm3)
        if rebuilt is not None:
            out.append(rebuilt)
            kept.append(i)
    return out
