"""The tiled accumulation of the dense heads (inference/tiles.py, sliding_window.py, grid_probabilities.py): equal to
the weighted average it replaces, memory in bytes per model-grid voxel (array sizes, no clock), the device choice.
No model: tile probabilities are made up, so these run in a second."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vertebraformer_nn.inference.grid_probabilities import DENSE_HEADS, EPS, LEVELS, SIGMOID_HEADS, GridReducer
from vertebraformer_nn.inference.sliding_window import on_device, with_host_fallback
from vertebraformer_nn.inference.tiles import TileAccumulator, TileGrid, open_bytes_per_voxel, tile_weights

SHAPE, PATCH = (20, 14, 12), (8, 8, 8)


def _tile_probs(grid: TileGrid, seed: int = 0):
    """Per tile (in raster order): seg (27, *patch), id (26, *patch) softmax, lesion and disc sigmoids; spine only in a
    blob in the middle of the image, so some tiles see none, and each tile differs from its neighbours."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    blob = ((z - 10) / 5.0) ** 2 + ((y - 7) / 4.0) ** 2 + ((x - 6) / 4.0) ** 2 < 1
    out = {}
    for tile in grid.tiles():
        region = grid.tile_region(tile)
        seg = rng.normal(0, 1, (27, *PATCH)).astype(np.float32)
        seg[0] += np.where(blob[region], -2.0, 30.0)  # far from the blob p(background) = 1 to float precision
        seg[1 + (tile[0] % 3)] += 2 * blob[region]
        ident = rng.normal(0, 1, (LEVELS, *PATCH)).astype(np.float32)
        lesion = rng.normal(-3, 2, PATCH).astype(np.float32)
        disc = rng.normal(-1, 2, PATCH).astype(np.float32)
        out[tile] = (torch.softmax(torch.from_numpy(seg), 0), torch.softmax(torch.from_numpy(ident), 0),
                     torch.sigmoid(torch.from_numpy(lesion)), torch.sigmoid(torch.from_numpy(disc)))
    return out


def _reference(grid: TileGrid, tiles, weight: np.ndarray):
    """The rule of tiles' module docstring on full float64 arrays: weighted means; vertebra channels over all tiles'
    weight (a tile that does not see spine at a voxel adds none), identification over the weight of the tiles that
    saw spine there, uniform where none did."""
    total = np.zeros(grid.shape)
    seg = np.zeros((27, *grid.shape))
    ident = np.zeros((LEVELS, *grid.shape))
    spine_w = np.zeros(grid.shape)
    lesion = np.zeros(grid.shape)
    disc = np.zeros(grid.shape)
    for tile, (s, i, les, d) in tiles.items():
        r = grid.tile_region(tile)
        s, i, les, d = (t.double().numpy() for t in (s, i, les, d))
        spine = s[0] < 1 - EPS
        total[r] += weight
        seg[(slice(None), *r)][0] += weight * s[0]
        seg[(slice(None), *r)][1:] += weight * s[1:] * spine
        ident[(slice(None), *r)] += weight * i * spine
        spine_w[r] += weight * spine
        lesion[r] += weight * les
        disc[r] += weight * d
    with np.errstate(invalid="ignore", divide="ignore"):
        ident = np.where(spine_w > 0, ident / spine_w, 1.0 / LEVELS)
    return seg / total, ident, lesion / total, disc / total


def _accumulate(grid, tiles, folds: int = 1):
    reducer = GridReducer(grid.shape, 27, DENSE_HEADS)
    acc = TileAccumulator(grid, reducer, [slice(None)] * 3, 26, LEVELS, SIGMOID_HEADS, "cpu")
    weight = tile_weights(PATCH, "cpu")
    for tile in grid.tiles():
        seg, ident, lesion, disc = tiles[tile]
        for _ in range(folds):
            acc.add(tile, weight, seg, ident if acc.needs_identification(seg) else None,
                    {"lesion": lesion, "boundary": disc})
        acc.tile_done(tile)
    acc.check_finished()
    return reducer.result(), acc


def test_tiled_accumulation_equals_the_weighted_average_of_the_tiles():
    grid = TileGrid(SHAPE, PATCH, 0.5)
    tiles = _tile_probs(grid)
    weight = tile_weights(PATCH, "cpu").double().numpy()
    seg, ident, lesion, disc = _reference(grid, tiles, weight)
    probs, acc = _accumulate(grid, tiles)
    assert acc.finished_cells == int(np.prod([len(b) - 1 for b in grid.bounds]))
    # the per-voxel maps
    assert np.abs(probs.foreground.astype(np.float64) - (1 - seg[0])).max() < 1e-3
    assert np.abs(probs.lesion.astype(np.float64) - lesion).max() < 1e-3
    margin = np.sort(seg, axis=0)
    decided = margin[-1] - margin[-2] > 1e-2
    assert decided.mean() > 0.9
    assert np.array_equal(probs.argmax[decided], np.argmax(seg, axis=0)[decided])
    # the spine's rows: every argmax-vertebra voxel, its 26 vertebra channels and 26 levels
    assert np.array_equal(probs.index, np.flatnonzero(probs.argmax.ravel() > 0))
    assert 0 < len(probs.index) < 0.5 * probs.argmax.size  # a blob, not the grid
    flat_seg = seg[1:].reshape(26, -1)[:, probs.index].T
    flat_id = ident.reshape(LEVELS, -1)[:, probs.index].T
    assert np.abs(probs.seg.astype(np.float64) - flat_seg).max() < 2e-3
    assert np.abs(probs.id.astype(np.float64) - flat_id).max() < 2e-3
    # the disc head's probability, kept at the spine's voxels only (numbering cuts instances with it)
    assert np.abs(probs.boundary.astype(np.float64) - disc.ravel()[probs.index]).max() < 1e-3


def test_folds_averaged_per_tile_equal_one_fold():
    """Every fold of a tile is added before the next tile: two identical folds give one fold's probabilities."""
    grid = TileGrid(SHAPE, PATCH, 0.5)
    tiles = _tile_probs(grid, seed=1)
    one, _ = _accumulate(grid, tiles, folds=1)
    two, _ = _accumulate(grid, tiles, folds=2)
    assert np.array_equal(one.argmax, two.argmax) and np.array_equal(one.index, two.index)
    assert np.abs(one.seg.astype(np.float32) - two.seg.astype(np.float32)).max() <= 2e-3


def test_open_sums_are_counted_in_bytes_and_stay_a_slice_of_the_grid():
    """The accumulator's own count of its open sums against the arrays it holds, and their peak against the
    estimate ``peak_open_voxels`` x ``open_bytes_per_voxel`` (what the device choice uses)."""
    grid = TileGrid((40, 14, 12), PATCH, 0.5)
    tiles = _tile_probs(grid, seed=2)
    _, acc = _accumulate(grid, tiles)
    assert acc.open_bytes == 0 and not acc.open
    estimate = grid.peak_open_voxels() * open_bytes_per_voxel(26 + LEVELS, 2)
    assert 0 < acc.peak_bytes <= estimate
    # in raster order along the long axis only about a patch of it is open at once
    assert grid.peak_open_voxels() <= 0.5 * np.prod(grid.shape)


def test_bytes_per_model_grid_voxel_of_a_512x512x600_ct_at_1_mm():
    """The bound of issue 12 part 1 in array sizes: a 512 x 512 x 600 CT at 0.7 x 0.7 x 1 mm on a 1 mm grid (600 x
    358 x 358 = 77 M voxels; 100 M with the body's margins) keeps 5 bytes per voxel, 114 per spine voxel (a spine is
    1-3 % of such a grid: 3.4 bytes per voxel at 3 %), the float32 image (4) and the open sums of one plane of
    cells. Measured on a small grid (GridProbabilities.nbytes, the accumulator's peak), scaled by the same
    formulas."""
    grid = TileGrid(SHAPE, PATCH, 0.5)
    probs, _ = _accumulate(grid, _tile_probs(grid))
    n, spine = int(np.prod(SHAPE)), len(probs.index)
    per_voxel, per_spine = 5, 8 + 2 * 26 + 2 * LEVELS + 2  # the last 2: the disc head
    assert probs.nbytes() == per_voxel * n + per_spine * spine  # what the formula says is what is held
    big = TileGrid((600, 358, 358), (128, 128, 128), 0.5)
    voxels = int(np.prod(big.shape))
    sums = big.peak_open_voxels() * open_bytes_per_voxel(26 + LEVELS, 2)
    held = voxels * (per_voxel + 0.03 * per_spine + 4) + sums
    assert held / voxels < 45, f"{held / voxels:.1f} bytes per model-grid voxel"
    assert held * 100e6 / voxels < 4.5e9  # scaled to 100 M voxels: half the 8 GB bound for the rest of the process
    # nnU-Net's sliding window on the same grid: one (55, X, Y, Z) float16 buffer, before any softmax
    assert 55 * 2 * voxels > 2 * held


def test_device_choice_from_free_memory_and_the_fallback():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert not on_device(cpu, True, 1, 10 ** 12)
    assert not on_device(cuda, False, 1, 10 ** 12)
    assert on_device(cuda, True, 6 * 10 ** 9, 10 * 10 ** 9)
    assert not on_device(cuda, True, 7 * 10 ** 9, 10 * 10 ** 9)  # over the share left for the network
    assert on_device(torch.device("mps"), True, 10 ** 15, None)  # unknown free memory: try
    calls, logged = [], []

    def attempt(on: bool):
        calls.append(on)
        if on:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "host"

    assert with_host_fallback(attempt, True, cpu, logged.append) == "host" and calls == [True, False]
    assert "repeating it with the arrays in host memory" in logged[0]
    calls.clear()
    assert with_host_fallback(attempt, False, cpu, logged.append) == "host" and calls == [False]

    def broken(on: bool):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_host_fallback(broken, True, cpu, logged.append)


def test_an_image_smaller_than_the_patch_is_padded_with_each_channels_outside_value():
    from vertebraformer_nn.inference.sliding_window import pad_to_patch

    data = torch.arange(2 * 4 * 9 * 3, dtype=torch.float32).reshape(2, 4, 9, 3) + 1.0
    padded, inside = pad_to_patch(data, (8, 8, 8), (-0.74, 0.0))
    assert tuple(padded.shape) == (2, 8, 9, 8)  # padded where smaller, as nnU-Net pads; 9 stays
    assert torch.equal(padded[inside], data)
    frame = torch.ones(padded.shape[1:], dtype=torch.bool)
    frame[inside[1:]] = False
    assert frame.sum() == 8 * 9 * 8 - 4 * 9 * 3
    assert torch.all(padded[0][frame] == -0.74) and torch.all(padded[1][frame] == 0.0)
    with pytest.raises(ValueError, match="2 channels"):
        pad_to_patch(data, (8, 8, 8), (0.0,))


def test_the_sliding_window_frames_a_small_ct_in_water_not_in_the_foreground_mean():
    """nnU-Net pads with 0, under CTNormalization the foreground's mean (bone); predict_grid pads with the plans'
    outside value (water), which is what the network's tile holds beyond the image."""
    from types import SimpleNamespace

    from vertebraformer_nn.inference.sliding_window import predict_grid

    window = {"mean": 180.0, "std": 240.0, "percentile_00_5": -384.0, "percentile_99_5": 1955.0}
    seen = []

    def network_pass(x):
        seen.append(x.clone())
        logits = torch.zeros((1, 27 + 1, *x.shape[2:]))
        logits[:, 0] = 10.0  # background everywhere
        return logits

    predictor = SimpleNamespace(
        configuration_manager=SimpleNamespace(patch_size=[8, 8, 8], normalization_schemes=["CTNormalization"]),
        plans_manager=SimpleNamespace(plans={"foreground_intensity_properties_per_channel": {"0": window}}),
        layout={"seg": (0, 27), "lesion": (27, 28)}, device="cpu", perform_everything_on_device=False,
        network=SimpleNamespace(to=lambda device: SimpleNamespace(eval=lambda: SimpleNamespace(
            net=SimpleNamespace(load_state_dict=lambda state: None)))),
        list_of_parameters=[{}], tile_step_size=0.5, _internal_maybe_mirror_and_predict=network_pass)
    data = torch.full((1, 8, 4, 8), 3.0)  # 4 voxels along y: 2 added on each side
    predict_grid(predictor, data, log=lambda message: None)
    (tile,) = seen
    assert torch.all(tile[0, 0, :, 2:6] == 3.0)
    frame = torch.cat([tile[0, 0, :, :2], tile[0, 0, :, 6:]])
    assert torch.allclose(frame, torch.full_like(frame, -0.75))  # (0 - 180) / 240
