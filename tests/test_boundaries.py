"""Vertebra labels on the input grid from probabilities (inference/boundaries.py) against the hard-label rule it
replaces (grid_map.labels_to_input): a 3.5 mm model grid, a 1 mm input, boundaries known in mm. No model."""
from __future__ import annotations

import numpy as np
import pytest

from vertebraformer_nn import labels
from vertebraformer_nn.inference.boundaries import axis_orders, spine_labels_to_input
from vertebraformer_nn.inference.grid_map import GridMap, labels_to_input
from vertebraformer_nn.inference.grid_probabilities import GridProbabilities

MODEL_MM, INPUT_MM = 3.5, 1.0
N_MODEL = 16  # along axis 0: 56 mm
N_INPUT = int(N_MODEL * MODEL_MM / INPUT_MM)
SIDE = 6  # axes 1 and 2: the same grid in both
TOP, MIDDLE, BOTTOM = 9.3, 30.6, 47.2  # mm: label A in [TOP, MIDDLE), B in [MIDDLE, BOTTOM)
A, B = 20, 21  # training labels (L1, L2)


def _grid() -> GridMap:
    along = np.clip((np.arange(N_INPUT) + 0.5) * N_MODEL / N_INPUT - 0.5, 0, N_MODEL - 1)
    same = np.arange(SIDE, dtype=np.float64)
    return GridMap((N_INPUT, SIDE, SIDE), (N_MODEL, SIDE, SIDE), (0, 1, 2), (along, same, same))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _probabilities(width_mm: float = 1.5) -> GridProbabilities:
    """Softmax-like probabilities on the model grid whose crossings lie at TOP, MIDDLE and BOTTOM (mm from the
    grid's edge; voxel centres at (i + 0.5) x 3.5 mm): the network's view of a boundary between voxel centres."""
    z = (np.arange(N_MODEL) + 0.5) * MODEL_MM
    inside = _sigmoid((z - TOP) / width_mm) * _sigmoid((BOTTOM - z) / width_mm)
    share_a = _sigmoid((MIDDLE - z) / width_mm)
    seg = np.full((27, N_MODEL, SIDE, SIDE), 1e-6, np.float32)
    seg[0] = (1 - inside)[:, None, None]
    seg[A] = (inside * share_a)[:, None, None]
    seg[B] = (inside * (1 - share_a))[:, None, None]
    seg /= seg.sum(0, keepdims=True)
    return GridProbabilities.from_dense({"seg": seg})


def _truth() -> np.ndarray:
    z = np.arange(N_INPUT) + 0.5  # input voxel centres, mm
    codes = np.where((z >= TOP) & (z < MIDDLE), A, np.where((z >= MIDDLE) & (z < BOTTOM), B, 0))
    return np.broadcast_to(labels.training_to_verse(codes.astype(np.uint8))[:, None, None], (N_INPUT, SIDE, SIDE))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    values = [v for v in np.unique(b) if v]
    return float(np.mean([2 * np.sum((a == v) & (b == v)) / (np.sum(a == v) + np.sum(b == v)) for v in values]))


def test_boundaries_follow_the_probabilities_not_the_model_voxels():
    grid, probs = _grid(), _probabilities()
    codes = labels.training_to_verse(probs.argmax)
    truth = _truth()
    soft = spine_labels_to_input(codes, probs, grid)
    hard = labels_to_input(codes, grid)
    assert np.sum(soft[:, 0, 0] != truth[:, 0, 0]) <= 3  # three boundaries, at most one voxel off each
    assert np.sum(hard[:, 0, 0] != truth[:, 0, 0]) > np.sum(soft[:, 0, 0] != truth[:, 0, 0])
    assert _dice(soft, truth) > 0.97 and _dice(soft, truth) > _dice(hard, truth)
    assert set(np.unique(soft)) == set(np.unique(truth))


def test_foreground_that_numbering_dropped_stays_background():
    grid, probs = _grid(), _probabilities()
    codes = labels.training_to_verse(probs.argmax)
    codes[codes == labels.training_to_verse(np.uint8(B))] = 0  # numbering dropped B
    out = spine_labels_to_input(codes, probs, grid)
    assert set(np.unique(out)) == {0, int(labels.training_to_verse(np.uint8(A)))}
    a_truth = _truth() == labels.training_to_verse(np.uint8(A))
    assert abs(int(np.sum(out > 0)) - int(np.sum(a_truth))) <= 2 * SIDE * SIDE  # one input slice at either end


def test_separate_z_rule_takes_the_nearest_slice_across_thick_slices():
    """nnU-Net's rule for probabilities: order 0 along the one axis of an anisotropic grid (ratio > 3), 1 elsewhere;
    the order is for the input axis the model axis feeds."""
    grid = GridMap((30, 8, 8), (10, 8, 8), (2, 1, 0), tuple(np.arange(n, dtype=np.float64) for n in (30, 8, 8)))
    meta = {"model_spacing": [1.0, 1.0, 1.0], "transpose_forward": [0, 1, 2],
            "properties": {"spacing": [1.0, 1.0, 5.0]}}
    assert axis_orders(meta, grid) == (0, 1, 1)  # model axis 2 (5 mm in the input) feeds input axis 0
    assert axis_orders({**meta, "properties": {"spacing": [1.0, 1.0, 2.0]}}, grid) == (1, 1, 1)
    forced = {**meta, "resampling": {"force_separate_z": False}}
    assert axis_orders(forced, grid) == (1, 1, 1)
    block = np.arange(10, dtype=np.float32)[None, None, :] * np.ones((10, 8, 1), np.float32)
    along = (np.arange(30) + 0.5) / 3 - 0.5  # three input slices per model slice
    grid = GridMap((30, 8, 8), (10, 8, 10), (2, 1, 0), (np.clip(along, 0, 9), *(np.arange(8.0),) * 2))
    nearest = grid.sample(block, [0, 0, 0], (slice(None),) * 3, (0, 1, 1))
    linear = grid.sample(block, [0, 0, 0], (slice(None),) * 3, (1, 1, 1))
    assert set(np.unique(nearest)) == set(range(10)) and len(np.unique(linear)) > 10


def test_labels_and_probabilities_must_be_on_the_model_grid():
    grid, probs = _grid(), _probabilities()
    with pytest.raises(ValueError, match="model grid"):
        spine_labels_to_input(np.zeros((3, 3, 3), np.uint8), probs, grid)


def test_a_label_of_mixed_levels_keeps_its_voxels():
    """A weak model's vertebra: its argmax spread over several levels that numbering decided as one instance. No
    channel places it, so it keeps the hard labels' boundaries with its neighbour instead of vanishing."""
    grid, probs = _grid(), _probabilities()
    codes = labels.training_to_verse(probs.argmax)
    a_code = labels.training_to_verse(np.uint8(A))
    rows = np.flatnonzero(codes.ravel()[probs.index] == a_code)
    mixed = probs.seg.copy()
    for i, row in enumerate(rows):  # A's probability handed to four other levels in turn: none holds a quarter
        mixed[row, 1 + i % 5], mixed[row, A - 1] = mixed[row, A - 1], mixed[row, 1 + i % 5]
    probs = GridProbabilities(probs.shape, probs.argmax.copy(), probs.foreground, None, probs.index, mixed, None)
    probs.argmax.ravel()[probs.index] = np.argmax(mixed, axis=1) + 1
    from vertebraformer_nn.inference.boundaries import label_channels

    assert label_channels(codes, probs)[int(a_code)] is None
    soft = spine_labels_to_input(codes, probs, grid)
    hard = labels_to_input(codes, grid)
    assert abs(int(np.sum(soft == a_code)) - int(np.sum(hard == a_code))) <= 2 * SIDE * SIDE
