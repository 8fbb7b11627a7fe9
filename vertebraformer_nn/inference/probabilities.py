"""Saved probabilities (``--save_probabilities``) and the one averaging rule of fold and folder ensembles.

What is averaged: per head, probabilities (softmax of the segmentation head, softmax of the identification head,
sigmoid of the lesion head), never logits. nnU-Net averages logits across folds; we do not, because ``ensemble``
can only average what a folder saved, and saved logits would be a second, different rule.

Compaction (:func:`compact`), applied to every fold's probabilities before averaging, in-process and before
saving alike: values are rounded to float16, and only the voxels where the spine or a lesion may be are kept:
those whose foreground probability (1 - background) or lesion probability exceeds ``EPS`` = 1e-3 (tested on the
float16 values). Everywhere else every head holds its fill value: background 1 (other segmentation channels 0),
identification (and the coarse stage's levels) uniform 1/26, lesion 0; no label can change there (background
keeps at least 0.999). A voxel mask, not a bounding box: a partly trained model leaves false-positive specks near
the borders that would stretch any box over the whole volume. Compaction is idempotent, so a compacted array saved
and compacted again is unchanged.

Averaging (:class:`Averager`): the float16 arrays, expanded to the full model grid, are summed in float32 in input
order, divided by their number, and rounded to float16. In-process fold ensembling and ``vertebraformer
ensemble`` run exactly these steps on exactly the same float16 arrays, so predicting with folds 0 and 1 in one
call and ensembling the two single-fold folders give identical probabilities, hence identical labels.

File: ``<case>_vfprobs.npz`` (our own name; nnU-Net's ``<case>.npz`` with a ``probabilities`` key would be
misread by stock tools), ``np.savez_compressed`` with keys ``seg`` (27, n), ``id`` (26, n), ``lesion`` (1, n) and
``coarse_id`` (26, n: the coarse whole-field stage's levels, when it ran) in float16 for the heads the model has
(n = the kept voxels, in C order of the model grid), ``mask`` (the kept voxels, ``np.packbits`` of the flattened
grid), ``shape`` (the model grid) and ``meta`` (a JSON string: what export needs to put the result back on the
input's grid, the source path, model and folds; see ``export.case_meta``). Loads with ``allow_pickle=False``.
Size, measured at the CPU preset (3.5 mm) with a partly trained model (CPU20min schedule, epoch 17): a
thoracolumbar phantom (model grid 86 x 61 x 55) keeps 5.3 % of the voxels, 1.7 MB in memory and 1.3 MB on disk
(the full grid would be 31 MB). A 512 x 512 x 600 CT at 0.8 x 0.8 x 1 mm (model grid 171 x 117 x 117) would hold
253 MB of float16 over the full grid; kept where the spine is (a few percent of it), a few MB. An untrained
model (the tests' tiny one) is uncertain everywhere and keeps nearly every voxel.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..atomic import atomic_path

__all__ = ["HEADS", "FILE_SUFFIX", "EPS", "CompactProbs", "compact", "fill_value", "Averager",
           "average", "save", "load", "probabilities_file"]

HEADS = ("seg", "id", "lesion", "coarse_id")  # coarse_id: the coarse whole-field stage's levels (coarse_stage.py)
FILE_SUFFIX = "_vfprobs.npz"
FORMAT = "vertebraformer-probabilities"
VERSION = 1
EPS = 1e-3

def probabilities_file(out_dir, case: str) -> Path:
    return Path(out_dir) / f"{case}{FILE_SUFFIX}"


def fill_value(head: str, channels: int) -> np.ndarray:
    """(channels,) float16: what a head holds outside the spine box."""
    if head == "seg":
        fill = np.zeros(channels, dtype=np.float16)
        fill[0] = 1
        return fill
    if head in ("id", "coarse_id"):
        return np.full(channels, 1.0 / channels, dtype=np.float16)
    if head == "lesion":
        return np.zeros(channels, dtype=np.float16)
    raise ValueError(f"unknown head {head!r}; heads are {', '.join(HEADS)}")


@dataclass
class CompactProbs:
    """Float16 probabilities of each head at the voxels of ``mask`` (a grid of ``shape``); fill values elsewhere."""

    shape: Tuple[int, int, int]
    mask: np.ndarray  # bool, shape
    heads: Dict[str, np.ndarray]  # head -> (C, n) float16, n = mask.sum(), in C order

    def expand(self, head: str) -> np.ndarray:
        """(C, *shape) float16, the fill value outside the mask."""
        kept = self.heads[head]
        full = np.empty((kept.shape[0], *self.shape), dtype=np.float16)
        full[:] = fill_value(head, kept.shape[0])[:, None, None, None]
        full[:, self.mask] = kept
        return full

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.heads.values())


def _kept_voxels(probs: Mapping[str, np.ndarray], shape, eps: float) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    if "seg" in probs:
        mask |= (np.float32(1) - probs["seg"][0].astype(np.float32)) > eps
    if "lesion" in probs:
        mask |= probs["lesion"][0].astype(np.float32) > eps
    return mask


def compact(probs: Mapping[str, np.ndarray], eps: float = EPS) -> CompactProbs:
    """Round every head to float16 and keep the voxels of the spine and lesions (module docstring).
    ``probs``: head -> (C, X, Y, Z)."""
    unknown = set(probs) - set(HEADS)
    if unknown or not probs:
        raise ValueError(f"heads must be among {HEADS}; got {sorted(probs)}")
    rounded = {h: np.asarray(p).astype(np.float16, copy=False) for h, p in probs.items()}
    shapes = {tuple(p.shape[1:]) for p in rounded.values()}
    if len(shapes) != 1 or any(p.ndim != 4 for p in rounded.values()):
        raise ValueError(f"every head must be (C, X, Y, Z) on one grid; got {[p.shape for p in rounded.values()]}")
    shape = shapes.pop()
    mask = _kept_voxels(rounded, shape, eps)
    return CompactProbs(shape, mask, {h: np.ascontiguousarray(p[:, mask]) for h, p in rounded.items()})


class Averager:
    """The averaging rule: float32 sum of the expanded float16 arrays in the order added, / n, -> float16."""

    def __init__(self):
        self.sums: Dict[str, np.ndarray] = {}
        self.n = 0
        self.shape: Optional[tuple] = None

    def add(self, probs: CompactProbs) -> None:
        if self.n and (probs.shape != self.shape or set(probs.heads) != set(self.sums)):
            raise ValueError(f"cannot average probabilities of grid {probs.shape} with heads {sorted(probs.heads)} "
                             f"into grid {self.shape} with heads {sorted(self.sums)}")
        for head in probs.heads:
            expanded = probs.expand(head)
            if head not in self.sums:
                self.sums[head] = expanded.astype(np.float32)
            else:
                np.add(self.sums[head], expanded, out=self.sums[head])
            del expanded
        self.shape = probs.shape
        self.n += 1

    def result(self) -> Dict[str, np.ndarray]:
        """head -> (C, X, Y, Z) float16 mean."""
        if not self.n:
            raise ValueError("nothing to average")
        return {h: (s / np.float32(self.n)).astype(np.float16) for h, s in self.sums.items()}


def average(items: List[CompactProbs]) -> Dict[str, np.ndarray]:
    averager = Averager()
    for item in items:
        averager.add(item)
    return averager.result()


# ------------------------------------------------------------------------------------------------ file
def save(path, probs: CompactProbs, meta: Mapping) -> Path:
    """Write ``<case>_vfprobs.npz`` atomically (module docstring)."""
    arrays = dict(probs.heads)
    arrays["mask"] = np.packbits(probs.mask.ravel())
    arrays["shape"] = np.asarray(probs.shape, dtype=np.int64)
    arrays["meta"] = np.asarray(json.dumps({"format": FORMAT, "version": VERSION, **meta}))
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def load(path) -> Tuple[CompactProbs, dict]:
    """(probabilities, meta) of a ``<case>_vfprobs.npz``; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError("not a VertebraFormer probabilities file")
            if int(meta.get("version", 0)) > VERSION:
                raise ValueError(f"written by a newer version (format version {meta['version']} > {VERSION})")
            heads = {h: f[h] for h in HEADS if h in f.files}
            shape = tuple(int(s) for s in f["shape"])
            mask = np.unpackbits(f["mask"], count=int(np.prod(shape))).astype(bool).reshape(shape)
    except (OSError, KeyError, ValueError, json.JSONDecodeError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable probabilities file ({e})") from None
    kept = int(mask.sum())
    bad = [h for h, a in heads.items() if a.dtype != np.float16 or a.ndim != 2 or a.shape[1] != kept]
    if not heads or bad:
        raise ValueError(f"{path}: probabilities file with missing or malformed heads {bad or list(HEADS)}")
    return CompactProbs(shape, mask, heads), meta
