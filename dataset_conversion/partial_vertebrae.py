"""The converters' partial-vertebra policy: vertebrae cut by the field of view are ignored, never background.

One policy for every source (docs/source_layouts.md, "Partial vertebrae"). From inside a patch the network
cannot see the field-of-view border, so a vertebra cut by it looks like any other: teaching it as background
would teach that bone is background. Its voxels get nnU-Net's ignore label instead (``labels.IGNORE_LABEL``, 27,
the last entry of dataset.json's labels): no loss is computed there, and the evaluation applies the same border
rule to predictions. Sources disagree on such vertebrae, so the rule has two halves (:func:`ignore_region`;
head-foot is the image's ``geometry.superior_axis``, the S axis after the converters' RAS reorientation):

- *labelled* ones (CTSpine1K, SpineWeb, the DICOM cohort label every visible vertebra, and a VerSe-style mask
  may touch the border, as the TPTBox crop does): a vertebra whose mask touches the first or last slice along
  head-foot is cut; all its voxels become ignore. The case record lists them (``partial_vertebrae_ignored``);
  their centroids are dropped.
- *unlabelled* ones (VerSe leaves them out: ``SourceCase.labels_partial_vertebrae`` False): at an end of the
  field of view that the labelled vertebrae do not reach, the unlabelled voxels between the middle of the
  outermost labelled vertebra and the border, within the spine's axial footprint (the labelled vertebrae's
  projection along head-foot, widened by :data:`FOOTPRINT_MARGIN_MM`), become ignore. From the middle, not from
  the outermost vertebra's last slice: the cut neighbour's tilted end plate and processes reach into that
  vertebra's slices. Not beyond C1 (the skull follows) nor beyond L5 or L6 (the sacrum follows): no vertebra can
  be cut there. Background of the slab (disc, canal, soft tissue by the spine) is ignored too; that is the
  price of not knowing where the cut vertebra lies. The record lists the ends (``ignored_border_slabs``).

Labelled voxels of whole vertebrae never become ignore.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from vertebraformer_nn import labels

#: Widening (mm) of the labelled vertebrae's axial footprint within which an unlabelled border slab is ignored: the
#: cut neighbour of the outermost vertebra sits a few mm off its footprint in a curved or scoliotic spine, and a
#: lower lumbar neighbour's transverse processes reach further out than the upper lumbar ones' (16.4 mm beyond
#: T8-L2 in a phantom whose narrowed discs bring L4 into the slab: 15 mm missed them).
FOOTPRINT_MARGIN_MM = 20.0
#: Ends of the field of view along head-foot, as the case record names them.
SUPERIOR, INFERIOR = "superior", "inferior"


def cut_vertebrae(codes: np.ndarray, si_axis: int) -> List[int]:
    """Vertebra codes of ``codes`` (a VerSe-coded array) on its first or last slice along ``si_axis`` (head-foot):
    the vertebrae cut by the field of view, head to foot."""
    border = np.concatenate([np.take(codes, 0, axis=si_axis).ravel(), np.take(codes, -1, axis=si_axis).ravel()])
    return labels.sort_anatomically(int(v) for v in np.unique(border) if int(v) in labels.VERTEBRA_CODES)


def ignore_region(codes: np.ndarray, superior: Tuple[int, int], spacing: Sequence[float],
                  labels_partial_vertebrae: bool = True) -> Tuple[np.ndarray, List[int], List[str]]:
    """The partial-vertebra policy (module docstring) on a VerSe-coded array.

    ``superior``: (array axis, sign) of head-foot (``geometry.superior_axis``); ``spacing``: per array axis (mm).
    Returns (ignore mask, cut labelled vertebrae head to foot, ends of the ignored unlabelled slabs)."""
    axis, sign = superior
    cut = cut_vertebrae(codes, axis)
    ignore = np.isin(codes, cut)
    slabs: List[str] = []
    labelled = np.isin(codes, list(labels.VERTEBRA_CODES))
    if labels_partial_vertebrae or not labelled.any():
        return ignore, cut, slabs
    others = tuple(a for a in range(codes.ndim) if a != axis)
    occupied = np.flatnonzero(labelled.any(axis=others))
    present = labels.sort_anatomically(int(v) for v in np.unique(codes[labelled]))
    n = codes.shape[axis]
    head_end, foot_end = (n - 1, 0) if sign > 0 else (0, n - 1)
    slab = np.zeros(n, dtype=bool)
    for end, border, outermost, nothing_beyond in ((SUPERIOR, head_end, present[0], ("C1",)),
                                                  (INFERIOR, foot_end, present[-1], ("L5", "L6"))):
        if labels.name(outermost) in nothing_beyond or border in (occupied[0], occupied[-1]):
            continue  # no vertebra can be cut beyond it, or the labelled vertebrae reach the border there
        middle = int(round(np.nonzero(codes == outermost)[axis].mean()))
        slab[min(middle, border):max(middle, border) + 1] = True
        slabs.append(end)
    if not slabs:
        return ignore, cut, slabs
    from scipy.ndimage import distance_transform_edt

    footprint = labelled.any(axis=axis)
    near = distance_transform_edt(~footprint, sampling=[float(spacing[a]) for a in others]) <= FOOTPRINT_MARGIN_MM
    region = np.expand_dims(near, axis) & slab.reshape([n if a == axis else 1 for a in range(codes.ndim)])
    return ignore | (region & (codes == 0)), cut, slabs
