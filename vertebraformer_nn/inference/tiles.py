"""The sliding window's aggregation for VertebraFormer's dense heads, in memory that follows the spine, not the grid.

nnU-Net's sliding window (``nnUNetPredictor.predict_sliding_window_return_logits``) adds every tile's logits into
one float16 array of all output channels over the whole padded image, then the softmax runs on all of it: for our
55 dense channels on the 100 M voxels of a 512 x 512 x 600 CT on a 1 mm grid that is 11 GB, and 22 GB more in
float32. Here nnU-Net's tile positions and Gaussian weights are kept and the aggregation is ours:

* **positions**: nnU-Net's ``compute_steps_for_sliding_window`` on the image padded to at least the patch (as
  nnU-Net pads, ``pad_nd_image``), visited in raster order with the axis of the smallest patch/extent ratio
  outermost (:class:`TileGrid`);
* **weights**: nnU-Net's ``compute_gaussian`` (sigma = patch / 8), in float32, scaled to a maximum of
  :data:`WEIGHT_SCALE` and floored at :data:`WEIGHT_FLOOR` times it: the level channels are summed in float16, whose
  normal range the scaled weights then never leave (nnU-Net floors its float16 map at the smallest non-zero value
  instead; weights below 1e-7 of the centre's never decide anything, the centre of another tile is always within
  reach with weight >= exp(-6));
* **what is averaged**: each tile's probabilities (softmax of the segmentation and identification heads, sigmoid of
  the lesion and disc heads), Gaussian-weighted, over tiles and folds, one linear rule (``probabilities`` says why
  probabilities, not logits, and how ``vertebraformer ensemble`` applies the same rule to saved folds). Test-time
  mirroring stays nnU-Net's: the logits of the mirrored passes of one tile are averaged first;
* **where**: the tile positions cut every axis into cells; a cell's sums exist from the first tile that touches it
  until its last tile has been added, then the cell goes to the ``grid_probabilities.GridReducer`` (which keeps
  5 bytes per voxel plus the spine's level probabilities) and its sums are freed. In raster order about one plane of
  cells, half a patch thick, is open at any time. Per open voxel: background, lesion, disc and weight sums in float32;
  the 52 level channels (26 vertebra channels of the segmentation, 26 identification levels) and the weight of the
  tiles that saw spine there, only in cells where some tile saw spine (a tile's foreground probability above
  ``grid_probabilities.EPS``), in float16 and float32. A tile that sees no spine adds no level channels anywhere.

The vertebra channels are divided by the weight of all tiles (a tile that sees no spine at a voxel holds less than
``EPS`` of every vertebra there), the identification levels by the weight of the tiles that saw spine there: the
level of a voxel is the vote of the tiles that take it for spine (a tile that does not has no evidence on which
vertebra it is); elsewhere it is uniform.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .grid_probabilities import EPS

__all__ = ["WEIGHT_SCALE", "WEIGHT_FLOOR", "TileGrid", "TileAccumulator", "tile_weights", "open_bytes_per_voxel"]

WEIGHT_SCALE = 1024.0
WEIGHT_FLOOR = 1e-7

Cell = Tuple[int, int, int]


def tile_weights(patch: Sequence[int], device) -> torch.Tensor:
    """nnU-Net's Gaussian importance map of a patch (float32, see the module docstring)."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    gaussian = compute_gaussian(tuple(int(p) for p in patch), sigma_scale=1. / 8, value_scaling_factor=WEIGHT_SCALE,
                                dtype=torch.float32, device=torch.device(device))
    return gaussian.clamp_min(WEIGHT_SCALE * WEIGHT_FLOOR)


def open_bytes_per_voxel(level_channels: int, sigmoid_maps: int, levels: bool = True) -> int:
    """Bytes of sums per open voxel: weight, background and the ``sigmoid_maps`` (lesion, disc) in float32; with
    ``levels`` the level channels (vertebra channels of the segmentation and the identification levels: 52) in
    float16 and the spine weight in float32."""
    return 4 * (2 + sigmoid_maps) + (2 * level_channels + 4 if levels else 0)


class TileGrid:
    """nnU-Net's tile positions on an (already padded) image, their raster order and the cells they cut it into."""

    def __init__(self, shape: Sequence[int], patch: Sequence[int], step_size: float):
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        self.shape = tuple(int(s) for s in shape)
        self.patch = tuple(int(p) for p in patch)
        if any(s < p for s, p in zip(self.shape, self.patch)):
            raise ValueError(f"image {self.shape} is smaller than the patch {self.patch}: pad it first")
        self.steps = [list(s) for s in compute_steps_for_sliding_window(self.shape, self.patch, step_size)]
        # outermost axis: the one whose patch covers the smallest part of it (the open plane of cells is thinnest)
        self.order = tuple(sorted(range(3), key=lambda a: (self.patch[a] / self.shape[a], a)))
        self.bounds = [sorted({*s, *(x + p for x in s)}) for s, p in zip(self.steps, self.patch)]
        self.cover = []  # per axis, per step: [first cell, last cell + 1)
        for s, p, b in zip(self.steps, self.patch, self.bounds):
            where = {x: i for i, x in enumerate(b)}
            self.cover.append([(where[x], where[x + p]) for x in s])
        counts = []
        for a in range(3):
            c = np.zeros(len(self.bounds[a]) - 1, np.int64)
            for lo, hi in self.cover[a]:
                c[lo:hi] += 1
            counts.append(c)
        self._tiles_per_cell = counts

    def tiles(self) -> List[Tuple[int, int, int]]:
        """Step indices (per axis 0, 1, 2) of every tile, in raster order (``order[0]`` outermost)."""
        out = []
        for k in itertools.product(*(range(len(self.steps[a])) for a in self.order)):
            tile = [0, 0, 0]
            for a, i in zip(self.order, k):
                tile[a] = i
            out.append(tuple(tile))
        return out

    def tile_region(self, tile: Sequence[int]) -> Tuple[slice, slice, slice]:
        return tuple(slice(self.steps[a][t], self.steps[a][t] + self.patch[a]) for a, t in enumerate(tile))

    def cells(self, tile: Sequence[int]) -> Iterator[Cell]:
        return itertools.product(*(range(*self.cover[a][t]) for a, t in enumerate(tile)))

    def cell_region(self, cell: Sequence[int]) -> Tuple[slice, slice, slice]:
        return tuple(slice(self.bounds[a][c], self.bounds[a][c + 1]) for a, c in enumerate(cell))

    def tiles_covering(self, cell: Sequence[int]) -> int:
        return int(np.prod([self._tiles_per_cell[a][c] for a, c in enumerate(cell)]))

    def peak_open_voxels(self) -> int:
        """The most voxels whose cells are open at once in raster order (each cell open from its first tile to its
        last): what the sums cost, times :func:`open_bytes_per_voxel`."""
        remaining: Dict[Cell, int] = {}
        open_voxels = peak = 0
        for tile in self.tiles():
            for cell in self.cells(tile):
                if cell not in remaining:
                    remaining[cell] = self.tiles_covering(cell)
                    open_voxels += self._cell_voxels(cell)
            peak = max(peak, open_voxels)
            for cell in self.cells(tile):
                remaining[cell] -= 1
                if remaining[cell] == 0:
                    open_voxels -= self._cell_voxels(cell)
        return peak

    def _cell_voxels(self, cell: Sequence[int]) -> int:
        return int(np.prod([self.bounds[a][c + 1] - self.bounds[a][c] for a, c in enumerate(cell)]))


class _Sums:
    """One open cell: float32 base sums (weight, background, then one per sigmoid map) and, once a tile saw spine in it,
    float16 level sums (26 vertebra [+ 26 identification] channels) with their float32 weight."""

    def __init__(self, shape, base_channels: int, device):
        self.base = torch.zeros((base_channels, *shape), dtype=torch.float32, device=device)
        self.levels: Optional[torch.Tensor] = None
        self.spine_weight: Optional[torch.Tensor] = None
        self.remaining = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.base, self.levels, self.spine_weight) if t is not None)


class TileAccumulator:
    """Sums of weighted tile probabilities per open cell, handed to ``reducer`` (a ``GridReducer`` of the unpadded
    grid) as soon as complete; see the module docstring. ``valid``: the unpadded image's region in the padded grid
    (nnU-Net's ``pad_nd_image`` slicer). ``sigmoids``: the names of the one-channel sigmoid maps each tile brings
    (``grid_probabilities.SIGMOID_HEADS`` the model has); they reach the reducer under these names."""

    def __init__(self, grid: TileGrid, reducer, valid: Sequence[slice], vertebra_channels: int, id_channels: int,
                 sigmoids: Sequence[str], device):
        self.grid, self.reducer, self.device = grid, reducer, torch.device(device)
        self.sigmoids = tuple(sigmoids)
        self.valid = tuple(slice(*v.indices(n)[:2]) for v, n in zip(valid, grid.shape))
        self.n_vert, self.n_id = int(vertebra_channels), int(id_channels)
        self.has_id = self.n_id > 0
        self.eps = EPS
        self.open: Dict[Cell, _Sums] = {}
        self.open_bytes = self.peak_bytes = 0
        self.finished_cells = 0

    # ---------------------------------------------------------------- adding
    def add(self, tile: Sequence[int], weight: torch.Tensor, seg: torch.Tensor, ident: Optional[torch.Tensor] = None,
            sigmoids: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """One fold's probabilities of one tile (on any device; ``weight`` from :func:`tile_weights` there):
        ``seg`` (C, *patch) softmax, ``ident`` (26, *patch) softmax or None to skip it (see
        :meth:`needs_identification`), ``sigmoids`` name -> (*patch) sigmoid, one for each of :attr:`sigmoids`."""
        spine = (seg[0] < 1 - self.eps)  # the tile's foreground probability above EPS
        maps = [weight * sigmoids[h] for h in self.sigmoids] if self.sigmoids else []
        base = torch.stack([weight, weight * seg[0]] + maps).to(self.device)
        levels = spine_weight = None
        if bool(spine.any()):
            w_spine = weight * spine
            parts = [seg[1:] * w_spine] + ([ident * w_spine] if self.has_id else [])
            levels = torch.cat(parts).to(torch.float16).to(self.device)
            spine_weight = w_spine.to(self.device)
            spine = spine.to(self.device)
        origin = [self.grid.steps[a][t] for a, t in enumerate(tile)]
        for cell in self.grid.cells(tile):
            sums = self._open(cell)
            region = self.grid.cell_region(cell)
            local = tuple(slice(r.start - o, r.stop - o) for r, o in zip(region, origin))
            sums.base += base[(slice(None), *local)]
            if levels is not None and bool(spine[local].any()):
                if sums.levels is None:
                    sums.levels = torch.zeros((levels.shape[0], *sums.base.shape[1:]), dtype=torch.float16,
                                              device=self.device)
                    sums.spine_weight = torch.zeros(sums.base.shape[1:], dtype=torch.float32, device=self.device)
                    self._count(sums.levels, sums.spine_weight)
                sums.levels += levels[(slice(None), *local)]
                sums.spine_weight += spine_weight[local]

    def needs_identification(self, seg: torch.Tensor) -> bool:
        """Whether a tile with this segmentation softmax adds identification levels (it sees spine somewhere)."""
        return self.has_id and bool((seg[0] < 1 - self.eps).any())

    def tile_done(self, tile: Sequence[int]) -> None:
        """Every fold of ``tile`` is added: cells it was the last tile of go to the reducer."""
        for cell in self.grid.cells(tile):
            sums = self.open[cell]
            sums.remaining -= 1
            if sums.remaining == 0:
                self._finish(cell, self.open.pop(cell))

    def _open(self, cell: Cell) -> _Sums:
        sums = self.open.get(cell)
        if sums is None:
            shape = tuple(r.stop - r.start for r in self.grid.cell_region(cell))
            sums = self.open[cell] = _Sums(shape, 2 + len(self.sigmoids), self.device)
            sums.remaining = self.grid.tiles_covering(cell)
            self._count(sums.base)
        return sums

    def _count(self, *tensors) -> None:
        self.open_bytes += sum(t.numel() * t.element_size() for t in tensors)
        self.peak_bytes = max(self.peak_bytes, self.open_bytes)

    # ---------------------------------------------------------------- finishing
    def _finish(self, cell: Cell, sums: _Sums) -> None:
        self.open_bytes -= sums.nbytes()
        self.finished_cells += 1
        region = self.grid.cell_region(cell)
        inside = tuple(slice(max(r.start, v.start), min(r.stop, v.stop)) for r, v in zip(region, self.valid))
        if any(s.start >= s.stop for s in inside):
            return  # padding only
        local = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(inside, region))
        base = sums.base[(slice(None), *local)]
        total = base[0]
        background = base[1] / total
        maps = {h: base[2 + i] / total for i, h in enumerate(self.sigmoids)}
        shape = tuple(background.shape)
        if sums.levels is None:
            vertebrae = torch.zeros((self.n_vert, *shape), dtype=torch.float32, device=self.device)
            ident = torch.full((self.n_id, *shape), 1.0 / self.n_id, device=self.device) if self.has_id else None
        else:
            levels = sums.levels[(slice(None), *local)].float()
            vertebrae = levels[:self.n_vert] / total
            ident = None
            if self.has_id:
                spine_weight = sums.spine_weight[local]
                ident = torch.where(spine_weight > 0, levels[self.n_vert:] / spine_weight.clamp_min(1e-30),
                                    torch.full_like(levels[self.n_vert:], 1.0 / self.n_id))
        offset = [v.start for v in self.valid]
        target = tuple(slice(s.start - o, s.stop - o) for s, o in zip(inside, offset))
        self.reducer.add(target, background, vertebrae, ident, **maps)

    def check_finished(self) -> None:
        if self.open:
            raise RuntimeError(f"sliding window ended with {len(self.open)} cell(s) still waiting for tiles")
