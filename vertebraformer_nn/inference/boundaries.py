"""The vertebra labels on the input's grid from the probabilities, not from hard labels (DESIGN.md section 10).

nnU-Net exports a segmentation by resampling every class's probability to the input grid and taking the argmax
there. We keep far fewer numbers (``grid_probabilities``) and our labels are not the argmax (numbering decides each
instance's level), so the same idea is applied to the two kinds of boundary the label map has:

* **spine vs background**: the foreground probability 1 - p(background), interpolated; spine where it exceeds 1/2
  (where it exceeds the interpolated background probability);
* **between neighbouring vertebrae**: every label gets a score on the model grid, interpolated; the largest wins,
  exact ties go to the nearest model voxel's label. At a foreground voxel of label k the score of k is the
  probability of k's segmentation channels (the channels that are the argmax of at least :data:`SHARE` of k's voxels:
  usually its own level; two for a vertebra whose argmax flips half-way, which numbering kept whole); at a voxel of
  another label j, the probability of k's channels that are not also j's (a channel two labels share, e.g. one level
  the network gave two vertebrae that numbering then told apart, leaves their boundary to the hard labels); at
  background voxels 0. So a boundary moves to where the two levels' probabilities cross. A label whose channels so
  chosen are the argmax of less than :data:`COVERED` of its voxels (a weak model's mixed levels, which numbering
  decided by the instance as a whole) has no channels the probabilities can place it by: its score is the
  foreground probability on its own voxels and 0 elsewhere, so its boundaries with other labels are the hard
  labels' and only its boundary with the background follows the probabilities.

Foreground that numbering dropped (a speck, a fragment) is background: its foreground probability and every
label's score there count as 0, so a kept neighbour ends half-way to it, as the hard-label rule has it.

Interpolation follows nnU-Net's rule for probabilities (its plans' ``resampling_fn_probabilities_kwargs``): linear,
except along the one axis of an anisotropic grid (a spacing ratio above 3, nnU-Net's
``determine_do_sep_z_and_axis``), where it takes the nearest slice (``order_z`` 0) (:func:`axis_orders`). Work and
memory: slab by slab inside the spine's window on the input grid, each label inside its own box (as
``grid_map.labels_to_input``, the hard-label rule this replaces, which stays for label maps without probabilities).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .grid_map import (GridMap, grown_box, input_slabs, label_boxes, relative_window, union_window,
                       window_intersection)
from .grid_probabilities import GridProbabilities

__all__ = ["SHARE", "COVERED", "axis_orders", "label_channels", "spine_labels_to_input"]

SHARE = 0.25
COVERED = 0.5


def axis_orders(meta: Mapping, grid: GridMap) -> Tuple[int, int, int]:
    """Interpolation order per input axis for going back to the input grid: 1 (linear), or the plans' ``order_z``
    (nnU-Net's default 0) along the separate axis where nnU-Net's separate-z rule applies (model spacing
    ``meta["model_spacing"]`` against the input's, ``meta["resampling"]``'s ``force_separate_z``)."""
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    kwargs = meta.get("resampling") or {}
    current = [float(s) for s in meta["model_spacing"]]
    new = [float(meta["properties"]["spacing"][int(t)]) for t in meta["transpose_forward"]]
    separate, axis = determine_do_sep_z_and_axis(kwargs.get("force_separate_z"), current, new)
    orders = [1, 1, 1]
    if separate and axis is not None:
        orders[grid.model_axis.index(int(axis))] = int(kwargs.get("order_z", 0))
    return tuple(orders)


def label_channels(codes: np.ndarray, probs: GridProbabilities) -> Dict[int, Optional[np.ndarray]]:
    """Label (code in ``codes``) -> boolean mask over the segmentation channels 1..C-1 that make it up (the argmax of
    at least :data:`SHARE` of its voxels), or None when those are the argmax of less than :data:`COVERED` of its
    voxels (module docstring)."""
    at = codes.ravel()[probs.index]
    channel = probs.argmax.ravel()[probs.index].astype(np.int64) - 1
    width = probs.seg.shape[1]
    out = {}
    for code in np.unique(at[at > 0]):
        counts = np.bincount(channel[at == code], minlength=width)
        mask = counts >= SHARE * counts.sum()
        out[int(code)] = mask if counts[mask].sum() >= COVERED * counts.sum() else None
    return out


def _score_block(code: int, box, codes: np.ndarray, probs: GridProbabilities, coords, channels) -> np.ndarray:
    """The score of ``code`` on the model-grid ``box`` (module docstring), float32."""
    block = np.zeros(tuple(hi - lo for lo, hi in box), np.float32)
    inside = np.ones(len(probs.index), bool)
    for a, (lo, hi) in enumerate(box):
        inside &= (coords[a] >= lo) & (coords[a] < hi)
    rows = np.flatnonzero(inside)
    if not len(rows):
        return block
    owner = codes.ravel()[probs.index[rows]]
    own = channels[code]
    if own is None:  # no channels to place it by: the foreground probability on its own voxels
        mine = rows[owner == code]
        block[tuple(coords[a][mine] - box[a][0] for a in range(3))] = probs.foreground.ravel()[probs.index[mine]]
        return block
    masks = np.zeros((int(owner.max()) + 1, len(own)), bool)  # per owner code: which channels count for ``code``
    masks[:] = own
    masks[0] = False  # foreground numbering dropped: background
    for other, theirs in channels.items():
        if other != code and other < len(masks) and theirs is not None:
            masks[other] = own & ~theirs
    score = np.einsum("ij,ij->i", probs.seg[rows].astype(np.float32), masks[owner].astype(np.float32))
    block[tuple(coords[a][rows] - box[a][0] for a in range(3))] = score
    return block


def spine_labels_to_input(codes: np.ndarray, probs: GridProbabilities, grid: GridMap,
                          orders: Sequence[int] = (1, 1, 1)) -> np.ndarray:
    """A label map on the model grid (``codes``: uint8, VerSe codes after numbering) -> uint8 on the input array,
    its boundaries placed by ``probs`` (module docstring)."""
    codes = np.asarray(codes)
    if codes.shape != grid.model_shape or probs.shape != grid.model_shape:
        raise ValueError(f"labels {codes.shape} and probabilities {probs.shape} must be on the model grid "
                         f"{grid.model_shape}")
    out = np.zeros(grid.input_shape, dtype=np.uint8)
    # a label can win one model voxel beyond its own (its neighbour's first layer), and interpolation there reads
    # one more: its window is that of its box grown by one, its scores are computed in the box grown by two
    windows = {value: (grown_box(box, grid.model_shape, 2), grid.input_window(grown_box(box, grid.model_shape)))
               for value, box in label_boxes(codes).items()}
    windows = {value: bw for value, bw in windows.items() if bw[1] is not None}
    if not windows:
        return out
    channels = label_channels(codes, probs)
    coords = np.unravel_index(probs.index, probs.shape)
    scores = {value: _score_block(value, box, codes, probs, coords, channels) for value, (box, _) in windows.items()}
    whole = tuple((min(b[a][0] for b, _ in windows.values()), max(b[a][1] for b, _ in windows.values()))
                  for a in range(3))
    region = tuple(slice(lo, hi) for lo, hi in whole)
    foreground = probs.foreground[region].astype(np.float32)
    foreground[(codes[region] == 0) & (probs.argmax[region] > 0)] = 0  # dropped by numbering
    whole_start = [lo for lo, _ in whole]
    for slab in input_slabs(union_window([w for _, w in windows.values()])):
        size = tuple(s.stop - s.start for s in slab)
        best, winner = np.zeros(size, np.float32), np.zeros(size, np.uint8)
        nearest = grid.nearest(codes, slab)
        for value, (box, window) in windows.items():  # ascending: an exact tie nearest does not settle keeps the lower
            part = window_intersection(window, slab)
            if part is None:
                continue
            score = grid.sample(scores[value], [lo for lo, _ in box], part, orders)
            rel = relative_window(part, slab)
            b, w = best[rel], winner[rel]  # views
            wins = (score > b) | ((score == b) & (score > 0) & (nearest[rel] == value))
            b[wins], w[wins] = score[wins], value
        spine = grid.sample(foreground, whole_start, slab, orders) > 0.5
        out[slab] = np.where(spine & (best > 0), winner, 0)
    return out
