"""What prediction keeps of a case's probabilities on the model grid: per voxel only what the outputs need.

The network's dense heads give 55 probabilities per model-grid voxel (27 segmentation, 26 identification, 1 lesion,
1 disc): 220 bytes in float32, 22 GB for the 100 M voxels of a 512 x 512 x 600 CT on a 1 mm grid. Numbering, export and
lesion detection need much less, and :class:`GridProbabilities` keeps just that:

* at every voxel (5 bytes): the segmentation argmax (``argmax``, uint8, 0 = background, ties to background and then
  to the lower channel, as ``np.argmax``), the foreground probability 1 - p(background) (``foreground``, float16:
  the spine-vs-background boundary of the export, and what numbering calls spine) and the lesion probability
  (``lesion``, float16; None for a model without a lesion head);
* at the voxels whose argmax is a vertebra (``index``: their flat indices in C order, sorted; the spine is 1-3 % of
  a CT's model grid): the 26 vertebra channels of the segmentation softmax (``seg``, (n, 26) float16, column k =
  training label k + 1) and the 26 level probabilities of the identification head (``id``, (n, 26) float16; None
  without the head): 112 bytes with the index, for the level smoothing, the per-instance level evidence and the
  boundaries between neighbouring levels; and there too the disc head's probability (``boundary``, (n,) float16,
  2 bytes more; None without the head: older models), where numbering cuts an instance that holds two vertebrae;
* with the coarse whole-field stage (``coarse_stage``): its 26 level probabilities on its own coarse grid
  (``coarse``, (26, *coarse grid) float16, 52 bytes per coarse voxel: at 7 mm over a 1 mm grid 0.15 bytes per
  model-grid voxel), read at the instances' voxels by interpolation when numbering (:meth:`coarse_rows`).

So the size is 5 bytes per voxel plus 112 (114) bytes per spine voxel, whatever the number of channels, and every
number kept is the float16 rounding of the probability nnU-Net-style prediction computes (nothing is approximated
away: a vertebra's numbers are all there). Everything numbering ever computed from the full segmentation softmax
(argmax, the winning probability, the smoothing masked to the foreground, the mean level probabilities of an
instance) depends only on these, because it only ever looks at foreground voxels.

:class:`GridReducer` builds one from blocks of final probabilities (float32 torch tensors or numpy arrays, any
device), in any order of blocks: the sliding window (``tiles``) hands over each block of the grid as soon as no tile
can add to it, ``vertebraformer ensemble`` hands over averaged slabs, :meth:`GridProbabilities.from_dense` full
arrays (tests, small grids). A ``kept`` writer (``probabilities.KeptWriter``), when given, receives every
channel at the voxels where the spine or a lesion may be, for ``--save_probabilities``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .coarse_resample import at_fine_voxels

__all__ = ["LEVELS", "EPS", "COARSE_HEAD", "DENSE_HEADS", "SIGMOID_HEADS", "GridProbabilities", "GridReducer",
           "as_grid_probabilities", "check_probabilities", "coarse_levels", "region_flat_indices"]

#: vertebra channels of the segmentation head (training labels 1..26) = levels of the identification head
LEVELS = 26
#: a voxel may belong to the spine or a lesion where its foreground or lesion probability exceeds this (float16
#: values): where ``--save_probabilities`` keeps every channel, and where a tile adds level evidence (``tiles``)
EPS = 1e-3
#: the network's dense heads, in the order of its output channels (``VertebraFormer.dense_layout``), and those of
#: them that are one sigmoid channel each (the others are softmaxes)
DENSE_HEADS = ("seg", "id", "lesion", "boundary")
SIGMOID_HEADS = ("lesion", "boundary")
#: the head name of the coarse stage's level probabilities (:attr:`GridProbabilities.coarse`) in saved files
COARSE_HEAD = "coarse_id"
#: array-axis-0 planes per block when reducing full arrays (bounds the float32 temporaries)
SLAB = 16


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def region_flat_indices(region: Sequence[slice], shape: Sequence[int], where: np.ndarray) -> np.ndarray:
    """Flat (C order) indices in the grid ``shape`` of the voxels of ``region`` where the boolean ``where`` (the
    region's shape) is true, in C order."""
    coords = np.nonzero(where)
    return np.ravel_multi_index(tuple(c + r.start for c, r in zip(coords, region)), tuple(shape)).astype(np.int64)


@dataclass
class GridProbabilities:
    """A case's probabilities on the model grid, reduced to what the outputs need (module docstring)."""

    shape: Tuple[int, int, int]
    argmax: np.ndarray  # uint8, shape
    foreground: np.ndarray  # float16, shape: 1 - p(background)
    lesion: Optional[np.ndarray]  # float16, shape, or None
    index: np.ndarray  # int64 (n,): sorted flat indices of the voxels with argmax != 0
    seg: np.ndarray  # float16 (n, C - 1): segmentation channels 1..C-1 there (C = 27 for VertebraFormer)
    id: Optional[np.ndarray]  # float16 (n, 26): identification probabilities there, or None
    kept: object = None  # probabilities.KeptWriter with every channel where spine or lesion may be, or None
    coarse: Optional[np.ndarray] = None  # float16 (26, *coarse grid): the coarse stage's levels, or None
    boundary: Optional[np.ndarray] = None  # float16 (n,): the disc head's probability there, or None

    @property
    def heads(self) -> Tuple[str, ...]:
        return tuple(h for h, on in (("seg", True), ("id", self.id is not None), ("lesion", self.lesion is not None),
                                     ("boundary", self.boundary is not None)) if on)

    def nbytes(self) -> int:
        arrays = (self.argmax, self.foreground, self.lesion, self.index, self.seg, self.id, self.coarse, self.boundary)
        return sum(a.nbytes for a in arrays if a is not None)

    def rows(self, flat_indices: np.ndarray) -> np.ndarray:
        """Row numbers of the given flat indices (each must be a foreground voxel)."""
        rows = np.searchsorted(self.index, flat_indices)
        if len(flat_indices) and (rows.max(initial=0) >= len(self.index) or
                                  np.any(self.index[np.minimum(rows, len(self.index) - 1)] != flat_indices)):
            raise ValueError("asked for the level probabilities of voxels that are not foreground")
        return rows

    def attach_coarse(self, levels: Callable[[], np.ndarray]) -> None:
        """``self.coarse = levels()`` (the coarse stage's level probabilities); the kept rows
        (``--save_probabilities``) are removed when that fails, so nothing is left half-written."""
        try:
            self.coarse = levels()
        except BaseException:
            if self.kept is not None:
                self.kept.discard()
            raise

    def coarse_rows(self, flat_indices: np.ndarray) -> np.ndarray:
        """(n, 26) float32: the coarse stage's level probabilities at the given voxels (``coarse_resample
        .at_fine_voxels``); ValueError when there are none."""
        if self.coarse is None:
            raise ValueError("these probabilities hold no coarse stage levels")
        return at_fine_voxels(self.coarse, self.shape, flat_indices)

    def winning(self) -> np.ndarray:
        """(n,) float32: the argmax channel's probability at each foreground voxel (its largest vertebra channel)."""
        return self.seg.max(axis=1).astype(np.float32) if len(self.seg) else np.zeros(0, np.float32)

    def dense_seg(self) -> np.ndarray:
        """(27, X, Y, Z) float32 segmentation probabilities as far as kept: background 1 - foreground everywhere,
        the vertebra channels at foreground voxels, 0 elsewhere (small grids and tests only)."""
        out = np.zeros((self.seg.shape[1] + 1, *self.shape), np.float32)
        out[0] = 1 - self.foreground.astype(np.float32)
        out[1:].reshape(self.seg.shape[1], -1)[:, self.index] = self.seg.T
        return out

    @classmethod
    def from_dense(cls, probs: Mapping[str, np.ndarray], kept=None) -> "GridProbabilities":
        """From full arrays: ``probs`` head -> (C, X, Y, Z) probabilities (seg C >= 2 channels, optional id 26,
        lesion 1 and boundary 1), reduced slab by slab; an optional ``coarse_id`` (26, *coarse grid) is kept as it
        is."""
        seg = np.asarray(probs["seg"])
        if seg.ndim != 4 or seg.shape[0] < 2:
            raise ValueError(f"seg_probs must be (C, X, Y, Z) probabilities with C >= 2, got shape {seg.shape}")
        seg = check_probabilities(seg, seg.shape[0], "seg_probs")
        ident = probs.get("id")
        if ident is not None:
            ident = check_probabilities(ident, LEVELS, "id_probs")
            if ident.shape[1:] != seg.shape[1:]:
                raise ValueError(f"id_probs spatial shape {ident.shape[1:]} differs from seg_probs' {seg.shape[1:]}")
        checked = {"seg": seg, "id": ident}
        heads = {h: checked[h] if h in checked else probs.get(h) for h in DENSE_HEADS}
        heads = {h: a for h, a in heads.items() if a is not None}
        reducer = GridReducer(seg.shape[1:], seg.shape[0], list(heads), kept)
        for start in range(0, seg.shape[1], SLAB):
            region = (slice(start, min(start + SLAB, seg.shape[1])), slice(None), slice(None))
            reducer.add_heads(region, {h: torch.from_numpy(np.ascontiguousarray(a[(slice(None), *region)],
                                                                                dtype=np.float32))
                                       for h, a in heads.items()})
        result = reducer.result()
        result.coarse = coarse_levels(probs.get("coarse_id"))
        return result


def check_probabilities(probs, channels: int, what: str) -> np.ndarray:
    """``probs`` as an array after checking that it is (channels, X, Y, Z) floating-point probabilities with a
    non-empty grid; ValueError naming ``what`` otherwise."""
    arr = np.asarray(probs)
    if arr.ndim != 4 or arr.shape[0] != channels:
        raise ValueError(f"{what} must be ({channels}, X, Y, Z) probabilities, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must hold floating-point probabilities, got dtype {arr.dtype}")
    if min(arr.shape[1:]) == 0:
        raise ValueError(f"{what} has an empty spatial shape {arr.shape[1:]}")
    return arr


def coarse_levels(coarse) -> Optional[np.ndarray]:
    """The coarse stage's level probabilities checked ((26, X, Y, Z) on any grid) as float16, or None."""
    if coarse is None:
        return None
    return check_probabilities(coarse, LEVELS, "coarse_probs").astype(np.float16, copy=False)


def as_grid_probabilities(seg_probs, id_probs=None) -> GridProbabilities:
    """``seg_probs`` itself when it is a :class:`GridProbabilities` (``id_probs`` must then be None: its own
    identification probabilities are used), else the reduction of full (27, X, Y, Z) segmentation and optional
    (26, X, Y, Z) identification probabilities."""
    if isinstance(seg_probs, GridProbabilities):
        if id_probs is not None:
            raise ValueError("GridProbabilities carry their own identification probabilities: pass id_probs=None")
        return seg_probs
    return GridProbabilities.from_dense({"seg": seg_probs, **({"id": id_probs} if id_probs is not None else {})})


class GridReducer:
    """Builds a :class:`GridProbabilities` of a grid from blocks of final probabilities (module docstring)."""

    def __init__(self, shape: Sequence[int], seg_channels: int, heads: Collection[str], kept=None):
        """``heads``: the dense heads (:data:`DENSE_HEADS`) the blocks will carry."""
        self.shape = tuple(int(s) for s in shape)
        self.seg_channels = int(seg_channels)
        self.argmax = np.zeros(self.shape, np.uint8)
        self.foreground = np.zeros(self.shape, np.float16)
        self.lesion = np.zeros(self.shape, np.float16) if "lesion" in heads else None
        self.has_id, self.has_boundary = "id" in heads, "boundary" in heads
        self.kept = kept
        self._index, self._seg, self._id, self._boundary = [], [], [], []

    def add_heads(self, region: Sequence[slice], block: Mapping[str, torch.Tensor]) -> None:
        """One block given as head -> (C, *block) probabilities (:data:`DENSE_HEADS`): :meth:`add` with its parts."""
        self.add(region, block["seg"][0], block["seg"][1:], block.get("id"),
                 **{h: block[h][0] for h in SIGMOID_HEADS if h in block})

    def add(self, region: Sequence[slice], background, vertebrae, identification=None, lesion=None,
            boundary=None) -> None:
        """One block: ``region`` (start:stop per axis of the grid; ``slice(None)`` for a whole axis),
        ``background`` p(background) (block shape), ``vertebrae`` the other segmentation channels (C - 1, *block),
        ``identification`` (26, *block), ``lesion`` and ``boundary`` (block shape) where the model has them; float32
        tensors (any device) or arrays."""
        region = tuple(slice(*r.indices(n)[:2]) for r, n in zip(region, self.shape))
        bg, vert = torch.as_tensor(background), torch.as_tensor(vertebrae)
        if (identification is not None) != self.has_id or (lesion is not None) != (self.lesion is not None) or \
                (boundary is not None) != self.has_boundary:
            raise ValueError("the block's heads differ from the grid's")
        best, channel = vert.max(dim=0)  # first maximum: ties to the lower channel
        spine = best > bg  # ties to background, as np.argmax over [background, vertebrae]
        argmax = torch.where(spine, channel + 1, torch.zeros_like(channel)).to(torch.uint8)
        fg16 = (1 - bg).to(torch.float16)
        self.argmax[region] = _numpy(argmax)
        self.foreground[region] = _numpy(fg16)
        les16 = None
        if lesion is not None:
            les16 = torch.as_tensor(lesion).to(torch.float16)
            self.lesion[region] = _numpy(les16)
        spine_np = _numpy(spine)
        if spine_np.any():
            self._index.append(region_flat_indices(region, self.shape, spine_np))
            self._seg.append(_numpy(vert[:, spine].T.to(torch.float16)))
            if identification is not None:
                self._id.append(_numpy(torch.as_tensor(identification)[:, spine].T.to(torch.float16)))
            if boundary is not None:
                self._boundary.append(_numpy(torch.as_tensor(boundary)[spine].to(torch.float16)))
        if self.kept is not None:
            self._keep(region, bg, fg16, vert, identification, lesion, les16, boundary)

    def _keep(self, region, bg, fg16, vert, identification, lesion, les16, boundary) -> None:
        keep = fg16.float() > EPS
        if les16 is not None:
            keep |= les16.float() > EPS
        keep_np = _numpy(keep)
        if not keep_np.any():
            return
        rows = {"seg": torch.cat([bg[keep][:, None], vert[:, keep].T], dim=1)}
        if identification is not None:
            rows["id"] = torch.as_tensor(identification)[:, keep].T
        if lesion is not None:
            rows["lesion"] = torch.as_tensor(lesion)[keep][:, None]
        if boundary is not None:
            rows["boundary"] = torch.as_tensor(boundary)[keep][:, None]
        self.kept.write(region_flat_indices(region, self.shape, keep_np),
                        {h: _numpy(r.to(torch.float16)) for h, r in rows.items()})

    def result(self) -> GridProbabilities:
        index = np.concatenate(self._index) if self._index else np.zeros(0, np.int64)
        order = np.argsort(index, kind="stable")
        seg = np.concatenate(self._seg)[order] if self._seg else np.zeros((0, self.seg_channels - 1), np.float16)
        ident = None
        if self.has_id:
            ident = np.concatenate(self._id)[order] if self._id else np.zeros((0, LEVELS), np.float16)
        disc = None
        if self.has_boundary:
            disc = np.concatenate(self._boundary)[order] if self._boundary else np.zeros(0, np.float16)
        self._index, self._seg, self._id, self._boundary = [], [], [], []
        return GridProbabilities(self.shape, self.argmax, self.foreground, self.lesion, index[order], seg, ident,
                                 self.kept, boundary=disc)
