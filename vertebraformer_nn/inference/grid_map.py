"""The map from the model grid back to the input's own grid, and the resampling of label maps and probabilities
along it.

nnU-Net's preprocessing maps the input array to the model grid by axis-aligned steps only: reorientation (a
permutation and flips of the axes, ``SimpleITKIOWithReorient``), ``transpose_forward``, a crop
(``bbox_used_for_cropping``) and a per-axis resize to ``configuration.spacing``. So every input axis is fed by
one model axis, and the way back is separable: :class:`GridMap` holds, per input axis, the model-grid coordinate
of every input index (skimage/nnU-Net's half-pixel rule: ``(c + 0.5) * n_model / n_crop - 0.5``, clamped to the
edge like nnU-Net's ``mode='edge'``; no coordinate outside the crop).

Resampling without nnU-Net's memory (it resamples every class channel in float32 over the whole input grid: 27
channels of a 512 x 512 x 600 CT are 16 GB):

* label maps (:func:`labels_to_input`): nnU-Net's rule for segmentations (each label's indicator interpolated
  linearly, the largest wins, background's being one minus the others; exact ties go to the nearest neighbour's
  label), inside the window that holds the labels, in slabs of ``SLAB`` input slices, each label inside its own
  bounding box. Memory: the uint8 output plus a few float32 arrays of one slab. ``boundaries`` does better where
  probabilities exist and uses the same windows and slabs.
* one probability channel (:func:`probability_to_input`, the lesion probability): linearly interpolated inside the
  bounding box of the voxels above ``LESION_FLOOR`` (0.01, or half the lowest candidate probability,
  ``lesion_candidate_floor``, if that is lower) on the model grid, slab by slab; 0 elsewhere (below the floor a
  voxel cannot join a lesion candidate, since linear interpolation never exceeds its largest neighbour). Memory:
  the float32 output plus one slab.

The results are arrays in SimpleITK order (z, y, x) of the input image itself, so they take its geometry
(spacing, origin, direction, size) unchanged with ``CopyInformation``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .cases import Reorientation

__all__ = ["GridMap", "LESION_FLOOR", "SLAB", "labels_to_input", "probability_to_input", "label_boxes",
           "grown_box", "union_window", "window_intersection", "relative_window", "input_slabs"]

LESION_FLOOR = 0.01
#: input slices per step of the export (float32 temporaries of one slab: 32 x 512 x 512 x 4 B = 34 MB)
SLAB = 32


@dataclass(frozen=True)
class GridMap:
    """Separable map model grid -> input array (z, y, x); see the module docstring."""

    input_shape: Tuple[int, int, int]
    model_shape: Tuple[int, int, int]
    model_axis: Tuple[int, int, int]  # model axis that feeds input axis a
    coords: Tuple[np.ndarray, np.ndarray, np.ndarray]  # per input axis: model coordinate of each index, NaN outside

    @classmethod
    def from_properties(cls, properties: Mapping, model_shape: Sequence[int], transpose_forward: Sequence[int],
                        reorientation: Reorientation) -> "GridMap":
        """``properties``: nnU-Net's after ``run_case_npy`` (shape_before_cropping, bbox_used_for_cropping,
        shape_after_cropping_and_before_resampling, in transposed order); ``reorientation``: input -> reader array."""
        tf = [int(t) for t in transpose_forward]
        before = [int(s) for s in properties["shape_before_cropping"]]
        crop = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
        bbox = [(int(lo), int(hi)) for lo, hi in properties["bbox_used_for_cropping"]]
        model_shape = tuple(int(s) for s in model_shape)
        input_shape, model_axis, coords = [0, 0, 0], [0, 0, 0], [None, None, None]
        for m in range(3):
            reader_axis = tf[m]
            a = reorientation.axes[reader_axis]
            n = before[m]
            index = np.arange(n, dtype=np.float64)
            reader_index = (n - 1 - index) if reorientation.flip[reader_axis] else index
            c = reader_index - bbox[m][0]
            coord = (c + 0.5) * (model_shape[m] / crop[m]) - 0.5
            coord[(c < 0) | (c >= crop[m])] = np.nan
            input_shape[a], model_axis[a], coords[a] = n, m, np.clip(coord, 0, model_shape[m] - 1)
        return cls(tuple(input_shape), model_shape, tuple(model_axis), tuple(coords))

    def input_window(self, model_box: Sequence[Tuple[int, int]]) -> Optional[Tuple[slice, slice, slice]]:
        """Input index range (per input axis) whose interpolation can touch model voxels in ``model_box``
        ([start, stop) per model axis); None when it is empty."""
        window = []
        for a in range(3):
            lo, hi = model_box[self.model_axis[a]]
            c = self.coords[a]
            with np.errstate(invalid="ignore"):
                hits = np.flatnonzero((c > lo - 1) & (c < hi))
            if hits.size == 0:
                return None
            window.append(slice(int(hits[0]), int(hits[-1]) + 1))
        return tuple(window)

    def nearest(self, model_array: np.ndarray, window: Sequence[slice]) -> np.ndarray:
        """Nearest-neighbour values of ``model_array`` (the whole model grid) at the input indices of ``window``
        (coordinates rounded half up, as scipy's order-0 zoom), in input axis order."""
        index = [None, None, None]
        for a in range(3):
            m = self.model_axis[a]
            index[m] = np.clip(np.floor(self.coords[a][window[a]] + 0.5), 0, self.model_shape[m] - 1).astype(np.intp)
        picked = model_array[np.ix_(*index)]
        return np.transpose(picked, self.model_axis)

    def sample(self, block: np.ndarray, block_start: Sequence[int], window: Sequence[slice],
               orders: Optional[Sequence[int]] = None) -> np.ndarray:
        """Linear interpolation of ``block`` (a float32 part of the model grid starting at ``block_start``, holding
        every voxel the window needs) at the input indices of ``window``; returned in input axis order. ``orders``
        (per input axis, default all 1): 0 takes the nearest model voxel along that axis instead (nnU-Net's
        separate-z rule, ``boundaries.axis_orders``)."""
        out = block
        for a in range(3):
            m = self.model_axis[a]
            c = self.coords[a][window[a]] - block_start[m]
            c = np.clip(c, 0, block.shape[m] - 1)
            if orders is not None and orders[a] == 0:
                out = np.take(out, np.floor(c + 0.5).astype(np.intp), axis=m)  # rounded half up, as scipy's order 0
                continue
            lo = np.floor(c).astype(np.intp)
            hi = np.minimum(lo + 1, block.shape[m] - 1)
            w = (c - lo).astype(np.float32).reshape([-1 if i == m else 1 for i in range(3)])
            below = np.take(out, lo, axis=m)
            out = below + (np.take(out, hi, axis=m) - below) * w
        return np.transpose(out, self.model_axis)  # output axis a = model axis model_axis[a]


def label_boxes(label_map: np.ndarray) -> Dict[int, Tuple[Tuple[int, int], ...]]:
    """Each label value of a map -> its bounding box, ((start, stop) per axis)."""
    return {value: tuple((s.start, s.stop) for s in box)
            for value, box in enumerate(ndimage.find_objects(label_map), start=1) if box is not None}


def grown_box(box, shape, margin: int = 1):
    """``box`` grown by ``margin`` voxels, inside ``shape``."""
    return tuple((max(0, lo - margin), min(n, hi + margin)) for (lo, hi), n in zip(box, shape))


def union_window(windows) -> Tuple[slice, slice, slice]:
    """The smallest window holding all ``windows``."""
    return tuple(slice(min(w[a].start for w in windows), max(w[a].stop for w in windows)) for a in range(3))


def window_intersection(window, slab) -> Optional[Tuple[slice, slice, slice]]:
    """Where ``window`` and ``slab`` overlap; None when they do not."""
    out = tuple(slice(max(w.start, s.start), min(w.stop, s.stop)) for w, s in zip(window, slab))
    return out if all(s.start < s.stop for s in out) else None


def relative_window(window, outer):
    """``window`` in the coordinates of ``outer``, which holds it."""
    return tuple(slice(w.start - o.start, w.stop - o.start) for w, o in zip(window, outer))


def input_slabs(window):
    """``window`` cut into slabs of at most ``SLAB`` indices along input axis 0 (memory: float32 temporaries of
    one slab, never of the volume)."""
    first, step = window[0], SLAB
    for start in range(first.start, first.stop, step):
        yield (slice(start, min(start + step, first.stop)), *window[1:])


def _block(array: np.ndarray, box, shape):
    """The part of a model-grid array that interpolation inside ``box`` reads (the box grown by one voxel), and
    where it starts."""
    grown = grown_box(box, shape)
    return array[tuple(slice(lo, hi) for lo, hi in grown)], [lo for lo, _ in grown]


def labels_to_input(label_map: np.ndarray, grid: GridMap, orders: Optional[Sequence[int]] = None) -> np.ndarray:
    """A label map on the model grid (uint8) -> uint8 on the input array: per voxel the label whose linearly
    interpolated indicator is largest, background's being 1 minus the others' (nnU-Net's segmentation
    resampling, batchgenerators' ``resize_segmentation``, ties to the nearest neighbour's label). Computed slab by
    slab inside the spine's window, each label inside its own box."""
    label_map = np.asarray(label_map)
    if label_map.shape != grid.model_shape:
        raise ValueError(f"label map {label_map.shape} is not on the model grid {grid.model_shape}")
    out = np.zeros(grid.input_shape, dtype=np.uint8)
    windows = {value: (box, grid.input_window(box)) for value, box in label_boxes(label_map).items()}
    windows = {value: bw for value, bw in windows.items() if bw[1] is not None}
    if not windows:
        return out
    for slab in input_slabs(union_window([w for _, w in windows.values()])):
        size = tuple(s.stop - s.start for s in slab)
        best, total = np.zeros(size, np.float32), np.zeros(size, np.float32)
        winner = np.zeros(size, np.uint8)
        nearest = grid.nearest(label_map, slab)
        for value, (box, window) in windows.items():  # ascending: an exact tie nearest does not settle keeps the lower
            part = window_intersection(window, slab)
            if part is None:
                continue
            block, start = _block(label_map, box, grid.model_shape)
            score = grid.sample((block == value).astype(np.float32), start, part, orders)
            rel = relative_window(part, slab)
            b, w = best[rel], winner[rel]  # views
            wins = (score > b) | ((score == b) & (score > 0) & (nearest[rel] == value))
            b[wins], w[wins] = score[wins], value
            total[rel] += score
        background = np.float32(1) - total
        winner[(background > best) | ((background == best) & (nearest != winner))] = 0
        out[slab] = winner
    return out


def probability_to_input(prob: np.ndarray, grid: GridMap, floor: float = LESION_FLOOR,
                         orders: Optional[Sequence[int]] = None) -> np.ndarray:
    """One probability channel on the model grid (X, Y, Z) -> float32 on the input array, 0 where the model grid
    holds nothing above ``floor`` nearby. Slab by slab inside the box of what is above the floor."""
    prob = np.asarray(prob)
    if prob.shape != grid.model_shape:
        raise ValueError(f"probabilities {prob.shape} are not on the model grid {grid.model_shape}")
    out = np.zeros(grid.input_shape, dtype=np.float32)
    boxes = label_boxes((prob > floor).view(np.uint8))  # no float copy of the grid
    window = grid.input_window(boxes[1]) if boxes else None
    if window is None:
        return out
    block, start = _block(prob, boxes[1], grid.model_shape)
    block = block.astype(np.float32)
    for slab in input_slabs(window):
        out[slab] = grid.sample(block, start, slab, orders)
    return out
