"""The border rule of the evaluation: vertebrae cut by the field of view are neither scored nor counted missing.

Training never teaches a vertebra cut by the head or foot border of the field of view as background: the
converters mark its voxels with nnU-Net's ignore label (``labels.IGNORE_LABEL``), since from inside a patch the
network cannot tell a cut vertebra from a whole one. A model may therefore label such a vertebra (with some level)
or not, and neither is wrong. The evaluation applies the same rule to predictions (:func:`apply_border_rule`):

* the reference's ignore region (voxels of cut vertebrae; for a source that leaves cut vertebrae unlabelled, the
  converters' border slab, ``dataset_conversion.partial_vertebrae``) is left out of every voxel metric: Dice, HD95
  and the binary spine Dice see neither the reference's nor the prediction's voxels there;
* a predicted vertebra (all voxels of one predicted code) is *not scored*, neither as an extra vertebra nor in
  the identification, when it lies mostly (more than half of its voxels) in the ignore region, or when it
  touches the head or foot border of the field of view and overlaps the ignore region at least as much as the
  whole reference vertebrae (a cut vertebra predicted a little larger or smaller than the reference's);
* only whole reference vertebrae count in the identification rate (reference centroids of cut vertebrae go).

Everything else is scored as before: a predicted vertebra that mostly covers a whole reference vertebra stays a
hit or an error even when it touches the border. Pure numpy; the head-foot axis of the grid comes from the image
(``geometry.superior_axis``), and "touches the border" is the converters' own test (``cut_vertebrae``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

from ..dataset_conversion.partial_vertebrae import cut_vertebrae

#: A predicted vertebra with more than this fraction of its voxels in the ignore region is not scored.
MOSTLY = 0.5


@dataclass
class BorderOutcome:
    """What :func:`apply_border_rule` leaves to score, and what it left out."""

    reference: np.ndarray  # VerSe codes; 0 on the ignore region
    prediction: np.ndarray  # VerSe codes; 0 on the ignore region and on predicted vertebrae not scored
    not_scored: List[int] = field(default_factory=list)  # predicted codes left out
    ignore_voxels: int = 0


def apply_border_rule(reference: np.ndarray, ignore: np.ndarray, prediction: np.ndarray,
                      superior_axis: int) -> BorderOutcome:
    """The rule of the module docstring on one case. ``reference``, ``prediction``: VerSe-coded arrays on one grid
    (the reference without its ignore voxels' codes); ``ignore``: boolean mask of the reference's ignore region;
    ``superior_axis``: the array axis that runs head-foot."""
    reference, prediction, ignore = np.asarray(reference), np.asarray(prediction), np.asarray(ignore, dtype=bool)
    if not (reference.shape == prediction.shape == ignore.shape):
        raise ValueError(f"reference {reference.shape}, ignore mask {ignore.shape} and prediction {prediction.shape} "
                         "must share one grid")
    n_ignore = int(ignore.sum())
    if not n_ignore:
        return BorderOutcome(reference, prediction)
    # counts over the predicted foreground only (a few % of a CT; an integer copy of the whole grid would be GBs)
    foreground = prediction > 0
    n = int(prediction.max()) + 1
    size = np.bincount(prediction[foreground], minlength=n)
    in_ignore = np.bincount(prediction[foreground & ignore], minlength=n)
    on_whole = np.bincount(prediction[foreground & ~ignore & (reference > 0)], minlength=n)
    border = set(cut_vertebrae(prediction, superior_axis))
    not_scored = [c for c in np.flatnonzero(size[1:]) + 1 if in_ignore[c] > MOSTLY * size[c]
                  or (c in border and 0 < in_ignore[c] >= on_whole[c])]
    scored = np.where(ignore | np.isin(prediction, not_scored), 0, prediction).astype(prediction.dtype)
    return BorderOutcome(np.where(ignore, 0, reference).astype(reference.dtype), scored,
                         [int(c) for c in not_scored], n_ignore)
