"""Saved probabilities (``--save_probabilities``) and the one averaging rule of fold and folder ensembles.

What is averaged: per head, probabilities (softmax of the segmentation head, softmax of the identification head,
sigmoid of the lesion head), never logits, with equal weight per fold. nnU-Net averages logits across folds; we do
not, because ``ensemble`` can only average what a folder saved, and saved logits would be a second, different
rule. In-process, the sliding window (``tiles``) sums every fold's Gaussian-weighted tile probabilities at once
(the mean over folds of each fold's mean over tiles, a linear rule); ``vertebraformer ensemble`` takes the mean of
the folders' saved probabilities (:func:`averaged_grid`, :func:`average`: float32 sums of the float16 values in
input order, divided by their number). Both are the same mean; they differ by the float16 rounding of what a
folder saved, so predicting with folds 0 and 1 in one call and ensembling two single-fold folders give the same
labels except where two classes tie within that rounding (about 1e-3).

What is saved, per case (:class:`KeptWriter` while predicting, :func:`save`): every head's probabilities in
float16 at the voxels where the spine or a lesion may be: those whose foreground probability (1 - background) or
lesion probability exceeds ``EPS`` = 1e-3 (on the float16 values). Everywhere else every head holds its fill value:
background 1 (other segmentation channels 0), identification uniform 1/26, lesion 0; no label can change there
(background keeps at least 0.999). A voxel set, not a bounding box: a partly trained model leaves false-positive
specks near the borders that would stretch any box over the whole volume. Compaction (:func:`compact`, of full
arrays) is idempotent, so a compacted array saved and compacted again is unchanged.

File: ``<case>_vfprobs.npz`` (our own name; nnU-Net's ``<case>.npz`` with a ``probabilities`` key would be misread
by stock tools), a zip of ``.npy`` members (``np.load`` reads it, ``allow_pickle=False``), format version 2:
``index`` (the kept voxels' flat indices in the model grid, C order, int64, in no particular order), ``seg`` (n,
27), ``id`` (n, 26) and ``lesion`` (n, 1) in float16 for the heads the model has (row i = voxel ``index[i]``),
``coarse_id`` (26, *coarse grid) float16 when the coarse whole-field stage ran (its level probabilities on its own
grid, whole: ``coarse_stage``; averaged by ``ensemble`` as the other heads, over the coarse grid), ``shape`` (the
model grid) and ``meta`` (a JSON string: what export needs to put the result back on the input's grid, the source
path, model and folds; see ``export.case_meta``). Written while predicting: the rows of each finished block of the
grid go to a temporary folder beside the file and are streamed into the zip at the end, so neither the probabilities
nor the file are ever whole in memory. Version 1 files (``mask``, a packed voxel mask, and heads as (C, n) in C
order of the mask, ``coarse_id`` among them, on the model grid) are still read. Size, measured at the CPU preset
(3.5 mm) with a partly trained model (CPU20min schedule, epoch 17): a thoracolumbar phantom (model grid 86 x 61 x
55) keeps 5.3 % of the voxels, 1.7 MB in memory and 1.3 MB on disk (the full grid would be 31 MB). An untrained
model (the tests' tiny one) is uncertain everywhere and keeps nearly every voxel.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..atomic import atomic_path
from .grid_probabilities import COARSE_HEAD, DENSE_HEADS, EPS, LEVELS, SIGMOID_HEADS, GridProbabilities, GridReducer, \
    coarse_levels

__all__ = ["HEADS", "FILE_SUFFIX", "EPS", "CompactProbs", "compact", "fill_value", "KeptWriter", "average",
           "averaged_grid", "save", "load", "probabilities_file"]

HEADS = DENSE_HEADS  # rows per voxel; COARSE_HEAD whole on its own grid (grid_probabilities)
FILE_SUFFIX = "_vfprobs.npz"
FORMAT = "vertebraformer-probabilities"
VERSION = 2
#: float32 values per block when averaging into a reduced grid (64 MB)
_BLOCK_VALUES = 16 * 1024 * 1024
#: rows per piece when streaming a spilled head into the file
_ROWS_PER_PIECE = 1 << 18


def probabilities_file(out_dir, case: str) -> Path:
    return Path(out_dir) / f"{case}{FILE_SUFFIX}"


def fill_value(head: str, channels: int) -> np.ndarray:
    """(channels,) float16: what a head holds where nothing was kept."""
    if head == "seg":
        fill = np.zeros(channels, dtype=np.float16)
        fill[0] = 1
        return fill
    if head == "id":
        return np.full(channels, 1.0 / channels, dtype=np.float16)
    if head in SIGMOID_HEADS:
        return np.zeros(channels, dtype=np.float16)
    raise ValueError(f"unknown head {head!r}; heads are {', '.join(HEADS)}")


@dataclass
class CompactProbs:
    """Float16 probabilities of each head at the voxels ``index`` (sorted flat indices of a grid of ``shape``);
    fill values elsewhere."""

    shape: Tuple[int, int, int]
    index: np.ndarray  # int64 (n,), sorted
    heads: Dict[str, np.ndarray]  # head -> (n, C) float16, row i = voxel index[i]
    coarse: Optional[np.ndarray] = None  # float16 (26, *coarse grid): the coarse stage's levels, or None

    @property
    def mask(self) -> np.ndarray:
        """The kept voxels as a boolean grid."""
        mask = np.zeros(int(np.prod(self.shape)), dtype=bool)
        mask[self.index] = True
        return mask.reshape(self.shape)

    def channels(self, head: str) -> int:
        return int(self.heads[head].shape[1])

    def block(self, head: str, start: int, stop: int) -> np.ndarray:
        """(C, stop - start) float16: the head's values at flat indices [start, stop), fill values where not kept."""
        out = np.empty((self.channels(head), stop - start), dtype=np.float16)
        out[:] = fill_value(head, self.channels(head))[:, None]
        lo, hi = np.searchsorted(self.index, [start, stop])
        out[:, self.index[lo:hi] - start] = self.heads[head][lo:hi].T
        return out

    def expand(self, head: str) -> np.ndarray:
        """(C, *shape) float16, the fill value outside the kept voxels."""
        return self.block(head, 0, int(np.prod(self.shape))).reshape(-1, *self.shape)

    def nbytes(self) -> int:
        return self.index.nbytes + sum(a.nbytes for a in self.heads.values()) + \
            (self.coarse.nbytes if self.coarse is not None else 0)


def _kept_voxels(probs: Mapping[str, np.ndarray], shape, eps: float) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    if "seg" in probs:
        mask |= (np.float32(1) - probs["seg"][0].astype(np.float32)) > eps
    if "lesion" in probs:
        mask |= probs["lesion"][0].astype(np.float32) > eps
    return mask


def compact(probs: Mapping[str, np.ndarray], eps: float = EPS) -> CompactProbs:
    """Round every head to float16 and keep the voxels of the spine and lesions (module docstring).
    ``probs``: head -> (C, X, Y, Z) full arrays; ``coarse_id`` (26, *coarse grid), when there, is kept whole."""

    unknown = set(probs) - set(HEADS) - {COARSE_HEAD}
    if unknown or not set(probs) & set(HEADS):
        raise ValueError(f"heads must be among {(*HEADS, COARSE_HEAD)}; got {sorted(probs)}")
    rounded = {h: np.asarray(p).astype(np.float16, copy=False) for h, p in probs.items() if h != COARSE_HEAD}
    shapes = {tuple(p.shape[1:]) for p in rounded.values()}
    if len(shapes) != 1 or any(p.ndim != 4 for p in rounded.values()):
        raise ValueError(f"every head must be (C, X, Y, Z) on one grid; got {[p.shape for p in rounded.values()]}")
    shape = shapes.pop()
    index = np.flatnonzero(_kept_voxels(rounded, shape, eps)).astype(np.int64)
    return CompactProbs(shape, index, {h: np.ascontiguousarray(p.reshape(p.shape[0], -1)[:, index].T)
                                       for h, p in rounded.items()}, coarse_levels(probs.get(COARSE_HEAD)))


class KeptWriter:
    """Collects the kept voxels' rows block by block (``GridReducer`` calls :meth:`write`) in raw files of a
    temporary folder (in ``folder``, named ``.<prefix>.<random>.tmp``: a stray one is what ``predict``'s clean-up of
    an interrupted case removes), until :func:`save` streams them into the file."""

    def __init__(self, shape: Sequence[int], channels: Mapping[str, int], folder=None, prefix: str = "vfprobs"):
        self.shape = tuple(int(s) for s in shape)
        self.channels = dict(channels)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=".tmp", dir=folder))
        self._files = {name: open(self.dir / name, "wb") for name in ("index", *self.channels)}
        self.n = 0

    def write(self, index: np.ndarray, rows: Mapping[str, np.ndarray]) -> None:
        if set(rows) != set(self.channels):
            raise ValueError(f"rows of heads {sorted(rows)}, expected {sorted(self.channels)}")
        self._files["index"].write(np.ascontiguousarray(index, dtype=np.int64).tobytes())
        for head, values in rows.items():
            values = np.ascontiguousarray(values, dtype=np.float16)
            if values.shape != (len(index), self.channels[head]):
                raise ValueError(f"{head}: rows of shape {values.shape}, expected ({len(index)}, "
                                 f"{self.channels[head]})")
            self._files[head].write(values.tobytes())
        self.n += len(index)

    def reset(self) -> None:
        """Forget every row written so far."""
        for f in self._files.values():
            f.seek(0)
            f.truncate()
        self.n = 0

    def pieces(self, name: str) -> Iterable[bytes]:
        """The bytes of one spilled array, piece by piece."""
        self._files[name].flush()
        width = 8 if name == "index" else 2 * self.channels[name]
        with open(self.dir / name, "rb") as f:
            while True:
                piece = f.read(width * _ROWS_PER_PIECE)
                if not piece:
                    return
                yield piece

    def discard(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ averaging
def _check_same_grid(items: Sequence[CompactProbs]) -> None:
    if not items:
        raise ValueError("nothing to average")
    first = items[0]
    for item in items[1:]:
        if item.shape != first.shape or {h: item.channels(h) for h in item.heads} != \
                {h: first.channels(h) for h in first.heads}:
            raise ValueError(f"cannot average probabilities of grid {item.shape} with heads {sorted(item.heads)} "
                             f"into grid {first.shape} with heads {sorted(first.heads)}")
        if _coarse_shape(item) != _coarse_shape(first):
            raise ValueError(f"cannot average the coarse stage's levels of grid {_coarse_shape(item)} into grid "
                             f"{_coarse_shape(first)} (None: without the coarse stage)")


def _coarse_shape(item: CompactProbs) -> Optional[Tuple[int, ...]]:
    return None if item.coarse is None else tuple(item.coarse.shape)


def _mean_coarse(items: Sequence[CompactProbs]) -> Optional[np.ndarray]:
    """The averaging rule over the coarse stage's levels (whole, on their grid), or None without them."""
    if items[0].coarse is None:
        return None
    total = items[0].coarse.astype(np.float32)
    for item in items[1:]:
        np.add(total, item.coarse, out=total)
    return (total / np.float32(len(items))).astype(np.float16)


def _mean_block(items: Sequence[CompactProbs], head: str, start: int, stop: int) -> np.ndarray:
    """The averaging rule on flat indices [start, stop): float32 sum of the float16 values in input order, / n."""
    total = items[0].block(head, start, stop).astype(np.float32)
    for item in items[1:]:
        np.add(total, item.block(head, start, stop), out=total)
    return total / np.float32(len(items))


def average(items: Sequence[CompactProbs]) -> Dict[str, np.ndarray]:
    """head -> (C, X, Y, Z) float16 mean of ``items`` over the whole grid (small grids; the ensemble itself uses
    :func:`averaged_grid`, the same rule block by block)."""
    _check_same_grid(items)
    size = int(np.prod(items[0].shape))
    out = {h: _mean_block(items, h, 0, size).astype(np.float16).reshape(-1, *items[0].shape) for h in items[0].heads}
    if items[0].coarse is not None:
        out[COARSE_HEAD] = _mean_coarse(items)
    return out


def averaged_grid(items: Sequence[CompactProbs], kept: Optional[KeptWriter] = None):
    """The mean of ``items`` (:func:`average`'s rule), reduced slab by slab into a ``GridProbabilities``;
    ``kept`` receives the averaged kept voxels for saving."""
    import torch


    _check_same_grid(items)
    shape, heads = items[0].shape, items[0].heads
    if "seg" not in heads:
        raise ValueError("probabilities without a segmentation head cannot be exported")
    channels = sum(items[0].channels(h) for h in heads)
    plane = int(np.prod(shape[1:]))
    step = max(1, _BLOCK_VALUES // (channels * plane))
    reducer = GridReducer(shape, items[0].channels("seg"), heads, kept)
    for first in range(0, shape[0], step):
        last = min(first + step, shape[0])
        block = {h: torch.from_numpy(_mean_block(items, h, first * plane, last * plane).reshape(
            -1, last - first, *shape[1:])) for h in heads}
        reducer.add_heads((slice(first, last), slice(None), slice(None)), block)
    result = reducer.result()
    result.coarse = _mean_coarse(items)
    return result


# ------------------------------------------------------------------------------------------------ file
def _write_member(zf: zipfile.ZipFile, name: str, dtype, shape: Tuple[int, ...], pieces: Iterable) -> None:
    """One ``.npy`` member written from pieces (bytes or arrays in C order), never whole in memory."""
    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": tuple(int(s) for s in shape)})
        for piece in pieces:
            f.write(piece if isinstance(piece, bytes) else np.ascontiguousarray(piece).tobytes())


def save(path, probs, meta: Mapping) -> Path:
    """Write ``<case>_vfprobs.npz`` atomically (module docstring) from a :class:`CompactProbs` or from a
    ``GridProbabilities`` predicted with a :class:`KeptWriter` (its spill is removed afterwards)."""

    if isinstance(probs, GridProbabilities):
        kept = probs.kept
        if kept is None:
            raise ValueError("these probabilities were predicted without keeping them: nothing to save")
        shape, n = kept.shape, kept.n
        members = [("index", np.int64, (n,), kept.pieces("index"))]
        members += [(h, np.float16, (n, c), kept.pieces(h)) for h, c in kept.channels.items()]
    else:
        kept, shape, n = None, probs.shape, len(probs.index)
        members = [("index", np.int64, (n,), [probs.index])]
        members += [(h, np.float16, a.shape, [a]) for h, a in probs.heads.items()]
    if probs.coarse is not None:
        members.append((COARSE_HEAD, np.float16, probs.coarse.shape, [probs.coarse]))
    members.append(("shape", np.int64, (3,), [np.asarray(shape, dtype=np.int64)]))
    text = json.dumps({"format": FORMAT, "version": VERSION, **meta})
    members.append(("meta", np.asarray(text).dtype, (), [np.asarray(text)]))
    try:
        with atomic_path(path, suffix=".tmp.npz") as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                for name, dtype, member_shape, pieces in members:
                    _write_member(zf, name, dtype, member_shape, pieces)
    finally:
        if kept is not None:
            kept.discard()
    return Path(path)


def load(path) -> Tuple[CompactProbs, dict]:
    """(probabilities, meta) of a ``<case>_vfprobs.npz`` (format version 1 or 2); ValueError naming the file when
    it is not one."""

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError("not a VertebraFormer probabilities file")
            version = int(meta.get("version", 0))
            if version > VERSION:
                raise ValueError(f"written by a newer version (format version {meta['version']} > {VERSION})")
            shape = tuple(int(s) for s in f["shape"])
            heads = {h: f[h] for h in HEADS if h in f.files}
            coarse = f[COARSE_HEAD] if COARSE_HEAD in f.files else None
            if version < 2:
                mask = np.unpackbits(f["mask"], count=int(np.prod(shape))).astype(bool)
                index = np.flatnonzero(mask).astype(np.int64)
                heads = {h: np.ascontiguousarray(a.T) if a.ndim == 2 else a for h, a in heads.items()}
                if coarse is not None:  # version 1: rows at the kept voxels of the model grid
                    coarse = CompactProbs(shape, index, {"id": np.ascontiguousarray(coarse.T)}).expand("id")
            else:
                index = f["index"].astype(np.int64, copy=False)
    except (OSError, KeyError, ValueError, json.JSONDecodeError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable probabilities file ({e})") from None
    bad = [h for h, a in heads.items() if a.dtype != np.float16 or a.ndim != 2 or a.shape[0] != len(index)]
    if coarse is not None and (coarse.dtype != np.float16 or coarse.ndim != 4 or coarse.shape[0] != LEVELS):
        bad.append(COARSE_HEAD)
    if not heads or bad or index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= np.prod(shape))):
        raise ValueError(f"{path}: probabilities file with missing or malformed heads {bad or list(HEADS)}")
    order = np.argsort(index, kind="stable")
    if np.any(np.diff(index[order]) == 0):
        raise ValueError(f"{path}: probabilities file holding a voxel twice")
    if not np.array_equal(order, np.arange(len(index))):
        index, heads = index[order], {h: a[order] for h, a in heads.items()}
    return CompactProbs(shape, index, heads, coarse), meta
