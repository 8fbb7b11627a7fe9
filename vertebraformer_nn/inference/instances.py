"""Vertebra instances from a segmentation softmax (DESIGN.md section 7, numbering step 1): pure numpy / cc3d.

The foreground is ``argmax != 0``; an uncertain foreground voxel takes the level that dominates its neighbourhood
(:func:`smoothed_levels`); pieces are the connected regions of one level; small pieces join the touching piece
they share most surface with, and pieces that meet across a wide contact are one vertebra whose voxels carry two
levels (unless the union is too large for one vertebra: then the flipped half is glued to the neighbour whose level
it took). So touching vertebrae (a bridged disc at coarse spacing) are split, a vertebra whose argmax flips
half-way is not. Every threshold is a field of ``postprocessing.Postprocessing`` (documented there).

The probabilities come as a ``grid_probabilities.GridProbabilities`` (what the predictor keeps: the argmax
everywhere, the vertebra channels at foreground voxels), or as a full (27, X, Y, Z) softmax, reduced to one first.
Work follows the spine, not the grid: the smoothing filters each level only around the voxels that vote for it and
only where uncertain voxels are, and the pieces are found inside the foreground's bounding box.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cc3d
import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from .. import labels as L
from .grid_probabilities import GridProbabilities, as_grid_probabilities, check_probabilities
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["VertebraInstances", "check_spacing", "occupied_box", "seg_grid", "smoothed_levels",
           "vertebra_instances", "instance_geometry"]


@dataclass
class VertebraInstances:
    """Output of :func:`vertebra_instances`."""

    instance_map: np.ndarray  # int32, 0 background, 1..K
    majority_label: Dict[int, int]  # instance id -> training label most of its voxels argmax to
    notes: List[str] = field(default_factory=list)


def check_spacing(spacing) -> np.ndarray:
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be three positive millimetre values, got {spacing!r}")
    return sp


class _PieceGraph:
    """Argmax pieces as a region adjacency graph whose nodes merge (union-find): volumes (mm^3), centres
    (mm), per-level volumes, contact areas (mm^2; 0 for edge/corner-only contact), border contact."""

    def __init__(self, volume: np.ndarray, centre: np.ndarray, level: np.ndarray,
                 contacts: Dict[Tuple[int, int], float], on_border: np.ndarray):
        n = len(volume) - 1
        self.on_border = {int(p) for p in on_border if p}
        self.owner = np.arange(n + 1)  # owner[p] = p while p is a live group, else what absorbed it (0 = dropped)
        self.volume = {p: float(volume[p]) for p in range(1, n + 1)}
        self.centre = {p: np.asarray(centre[p], dtype=np.float64) for p in range(1, n + 1)}
        self.levels = {p: {int(level[p]): float(volume[p])} for p in range(1, n + 1)}
        self.adj: Dict[int, Dict[int, float]] = {p: {} for p in range(1, n + 1)}
        for (a, b), area in contacts.items():
            self.adj[a][b] = self.adj[b][a] = float(area)

    def majority(self, g: int) -> int:
        return max(self.levels[g].items(), key=lambda kv: kv[1])[0]

    def merge(self, a: int, b: int) -> None:
        """Group a joins group b."""
        va, vb = self.volume[a], self.volume[b]
        self.centre[b] = (va * self.centre.pop(a) + vb * self.centre[b]) / (va + vb)
        self.volume[b] += self.volume.pop(a)
        if a in self.on_border:
            self.on_border.add(b)
        for lev, v in self.levels.pop(a).items():
            self.levels[b][lev] = self.levels[b].get(lev, 0.0) + v
        for c, area in self.adj.pop(a).items():
            del self.adj[c][a]
            if c != b:
                self.adj[b][c] = self.adj[c][b] = self.adj[b].get(c, 0.0) + area
        self.owner[a] = b

    def absorb_small(self, threshold: float, spare_border: bool = False) -> Tuple[int, float]:
        """Groups below threshold join the neighbour they share most surface with (smallest first); isolated
        ones are dropped; with ``spare_border``, groups touching the array border are left alone. Returns
        (dropped count, dropped volume)."""
        spared = self.on_border if spare_border else set()
        heap = [(v, g) for g, v in self.volume.items() if v < threshold and g not in spared]
        heapq.heapify(heap)
        dropped, dropped_volume = 0, 0.0
        while heap:
            v, g = heapq.heappop(heap)
            if g not in self.volume or self.volume[g] != v or g in spared:
                continue  # absorbed, grown since pushed, or grown onto the border
            if self.adj[g]:
                best = max(self.adj[g], key=lambda h: (self.adj[g][h], self.volume[h]))
                self.merge(g, best)
                if self.volume[best] < threshold:
                    heapq.heappush(heap, (self.volume[best], best))
            else:
                dropped, dropped_volume = dropped + 1, dropped_volume + self.volume.pop(g)
                self.levels.pop(g)
                self.centre.pop(g)
                self.adj.pop(g)
                self.on_border.discard(g)
                self.owner[g] = 0
        return dropped, dropped_volume

    def merge_wide_contacts(self, ratio: float, max_growth: float) -> Tuple[List[List[int]], List[List[int]]]:
        """Merge pairs whose contact area / (smaller volume)^(2/3) >= ratio, widest first, unless the union
        would exceed ``max_growth`` x the median volume of the 4 groups nearest to it: then one of the two
        already holds part of a neighbouring vertebra (a flipped half touching the vertebra whose level it
        took), and merging would fuse two vertebrae. Returns the majority levels of merged and of kept pairs."""
        merged, kept, refused = [], [], set()

        def entry(a: int, b: int):
            a, b = min(a, b), max(a, b)
            return (-self.adj[a][b] / min(self.volume[a], self.volume[b]) ** (2.0 / 3.0), -a, -b)

        # widest first, from a heap: every live pair always has an entry with its current score (pairs of a
        # group that changed are pushed again after each merge); entries whose score changed since are stale
        heap = [entry(a, b) for a, nbrs in self.adj.items() for b in nbrs if a < b]
        heapq.heapify(heap)
        while heap:
            item = heapq.heappop(heap)
            a, b = -item[1], -item[2]
            if a not in self.volume or b not in self.adj.get(a, {}) or (a, b) in refused or entry(a, b) != item:
                continue
            if -item[0] < ratio:
                break
            levels = sorted({self.majority(a), self.majority(b)})
            if self.volume[a] + self.volume[b] > max_growth * self._nearby_volume(a, b):
                refused.add((a, b))
                kept.append(levels)
                continue
            merged.append(levels)
            small, large = sorted((a, b), key=lambda g: self.volume[g])
            self.merge(small, large)
            for c in self.adj[large]:
                heapq.heappush(heap, entry(large, c))
        return merged, kept

    def _nearby_volume(self, a: int, b: int, count: int = 4) -> float:
        """Median volume of the ``count`` other groups nearest to the union of a and b (inf if none)."""
        others = [g for g in self.volume if g not in (a, b)]
        if not others:
            return math.inf
        centre = (self.volume[a] * self.centre[a] + self.volume[b] * self.centre[b]) / (self.volume[a] + self.volume[b])
        distance = [float(np.linalg.norm(self.centre[g] - centre)) for g in others]
        nearest = np.argsort(distance, kind="stable")[:count]
        return float(np.median([self.volume[others[i]] for i in nearest]))

    def components(self) -> List[List[int]]:
        """Live groups in touching clusters (= connected components of the foreground they cover)."""
        seen, clusters = set(), []
        for g in self.volume:
            if g in seen:
                continue
            stack, cluster = [g], []
            seen.add(g)
            while stack:
                h = stack.pop()
                cluster.append(h)
                for n in self.adj[h]:
                    if n not in seen:
                        seen.add(n)
                        stack.append(n)
            clusters.append(cluster)
        return clusters

    def root(self, p: int) -> int:
        while self.owner[p] not in (0, p):
            p = int(self.owner[p])
        return int(self.owner[p])


def _names(training_labels: Sequence[int]) -> str:
    return ", ".join(L.ANATOMICAL_ORDER[t - 1] for t in training_labels)


def seg_grid(seg_probs) -> GridProbabilities:
    """The probabilities as a GridProbabilities of the 27 segmentation channels (a full softmax is checked, then
    reduced)."""
    if isinstance(seg_probs, GridProbabilities):
        if seg_probs.seg.shape[1] != L.NUM_TRAINING_LABELS - 1:
            raise ValueError(f"seg_probs must hold {L.NUM_TRAINING_LABELS - 1} vertebra channels, got "
                             f"{seg_probs.seg.shape[1]}")
        return seg_probs
    return as_grid_probabilities(check_probabilities(seg_probs, L.NUM_TRAINING_LABELS, "seg_probs"))


def _box(coords: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    return np.array([c.min() for c in coords]), np.array([c.max() + 1 for c in coords])


def smoothed_levels(seg_probs, spacing, sigma_mm: float = DEFAULTS.level_smoothing_mm,
                    confident: float = DEFAULTS.confident_level,
                    vote_floor: float = DEFAULTS.level_vote_floor) -> np.ndarray:
    """The level map of a segmentation softmax (``GridProbabilities`` or (27, X, Y, Z)): 0 where the argmax is
    background, the argmax where its probability is at least ``confident``, elsewhere the vertebra channel whose
    probability, masked to the foreground and Gaussian-smoothed (``sigma_mm`` per axis in mm, truncated at 4 sigma,
    zero outside the grid), is largest; ``sigma_mm`` 0 = the plain argmax. A voxel votes for a level only with a
    probability of at least ``vote_floor``. Each level is filtered only inside the box of its votes grown by the
    filter's reach, and only as far as uncertain voxels lie (memory: a few arrays of that box). On a grid of
    ``sigma_mm`` / 4 or finer the votes are filtered in blocks of whole voxels (:func:`vote_field`)."""
    probs = seg_grid(seg_probs)
    out = probs.argmax.copy()
    if sigma_mm <= 0 or not len(probs.index):
        return out
    unsure = np.flatnonzero(probs.winning() < confident)
    if not len(unsure):
        return out
    sigma = np.array([sigma_mm / s for s in spacing], dtype=np.float64)
    reach = np.ceil(4 * sigma).astype(np.int64)  # scipy's truncation: 4 sigma
    coords = np.unravel_index(probs.index, probs.shape)
    at = np.stack([c[unsure] for c in coords], axis=1)  # (u, 3) uncertain voxels
    u_lo, u_hi = _box(at.T)
    best = np.zeros(len(unsure), np.float32)
    levels = (np.argmax(probs.seg[unsure], axis=1) + 1).astype(np.uint8)  # their own argmax until outvoted
    for channel in range(probs.seg.shape[1]):
        votes = np.flatnonzero(probs.seg[:, channel] >= vote_floor)
        if not len(votes):
            continue
        v_lo, v_hi = _box([c[votes] for c in coords])
        o_lo, o_hi = np.maximum(u_lo, v_lo - reach), np.minimum(u_hi, v_hi + reach)  # where it can outvote
        if np.any(o_lo >= o_hi):
            continue
        b_lo, b_hi = np.maximum(v_lo, o_lo - reach), np.minimum(v_hi, o_hi + reach)  # votes that reach there
        b_lo, b_hi = np.minimum(b_lo, o_lo), np.maximum(b_hi, o_hi)
        inside = np.all([(coords[a][votes] >= b_lo[a]) & (coords[a][votes] < b_hi[a]) for a in range(3)], axis=0)
        votes = votes[inside]
        points = np.stack([coords[a][votes] - b_lo[a] for a in range(3)], axis=1)
        here = np.flatnonzero(np.all((at >= o_lo) & (at < o_hi), axis=1))
        value = vote_field(points, probs.seg[votes, channel], b_hi - b_lo, sigma, at[here] - b_lo)
        better = value > best[here]
        best[here[better]], levels[here[better]] = value[better], channel + 1
    out.ravel()[probs.index[unsure]] = levels
    return out


def vote_field(points: np.ndarray, values: np.ndarray, shape: Sequence[int], sigma: np.ndarray,
               read: np.ndarray) -> np.ndarray:
    """The votes ``values`` at voxels ``points`` (n, 3) of a box of ``shape``, Gaussian-smoothed (``sigma`` voxels
    per axis, zero outside the box), read at voxels ``read`` (m, 3). Where ``sigma`` spans at least 4 voxels, the
    votes are averaged over blocks of ``k`` <= sigma / 2 voxels, filtered there (sigma / k) and read by trilinear
    interpolation between block centres: a block of k adds (k^2 - 1) / 12 voxels^2 to the kernel's sigma^2 (k = 3
    at 1 mm with sigma 7 mm: about 1 %) and leaves k^3 times fewer voxels to filter."""
    step = np.maximum(1, np.floor(np.asarray(sigma, dtype=np.float64) / 2)).astype(np.int64)
    shape = np.asarray(shape, dtype=np.int64)
    if (step == 1).all():
        field = np.zeros(tuple(shape), np.float32)
        field[tuple(points.T)] = values
        field = gaussian_filter(field, sigma, mode="constant", cval=0.0, truncate=4.0)
        return field[tuple(read.T)]
    blocks = -(-shape // step)
    flat = np.ravel_multi_index(tuple((points // step).T), tuple(blocks))
    field = np.bincount(flat, weights=np.asarray(values, np.float64), minlength=int(np.prod(blocks)))
    field = (field / float(np.prod(step))).astype(np.float32).reshape(tuple(blocks))
    field = gaussian_filter(field, np.asarray(sigma) / step, mode="constant", cval=0.0, truncate=4.0)
    centres = (np.asarray(read, dtype=np.float64) - (step - 1) / 2.0) / step  # block b's centre: voxel b*k+(k-1)/2
    return map_coordinates(field, centres.T, order=1, mode="nearest")


def vertebra_instances(seg_probs, spacing, params: Postprocessing = DEFAULTS) -> VertebraInstances:
    """Vertebra instances of a segmentation softmax (``GridProbabilities``, or (27, X, Y, Z): channel c = training
    label c), found inside the bounding box of its foreground.

    Pieces are 26-connected regions of one level of :func:`smoothed_levels` (``params.level_smoothing_mm``,
    ``params.confident_level``). Then, in this order: pieces below ``min_volume_mm3`` join the touching piece with
    the largest contact area (dropped when isolated); pieces meeting across a contact wider than
    ``merge_contact_ratio`` x (smaller volume)^(2/3) are one vertebra, unless together they exceed
    ``max_merged_growth`` x the volume of the vertebrae nearby; pieces below ``min_relative_volume`` x the median
    instance volume are fragments, handled like the small ones, unless they touch the array border (a vertebra cut
    by the field of view: its size says nothing, and it is still a level of its own). Every remaining piece is one
    instance, so a connected component holding touching vertebrae with different argmax levels is split. Two
    touching vertebrae with the *same* argmax level stay one instance (nothing in the labels separates them).
    """
    probs = seg_grid(seg_probs)
    sp = check_spacing(spacing)
    min_volume_mm3, min_relative_volume = params.min_volume_mm3, params.min_relative_volume
    shape = probs.shape
    if not len(probs.index):
        return VertebraInstances(np.zeros(shape, np.int32), {}, ["no vertebra found"])
    lo, hi = _box(np.unravel_index(probs.index, shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    argmax = smoothed_levels(probs, sp, params.level_smoothing_mm, params.confident_level,
                             params.level_vote_floor)[box]  # a copy of the box only
    pieces, n = cc3d.connected_components(argmax, connectivity=26, return_N=True)
    specks = 0
    if n > params.max_pieces_before_dust:
        # A poorly trained model's argmax is salt and pepper (hundreds of thousands of pieces): the graph below
        # would take minutes. Its specks below min_volume_mm3 become background first; a trained model's
        # prediction has a few hundred pieces at most and never gets here.
        voxel_volume = float(np.prod(sp))
        counts = np.bincount(pieces.ravel(), minlength=n + 1)
        speck = counts * voxel_volume < min_volume_mm3
        speck[0] = False
        specks = int(speck.sum())
        argmax[speck[pieces]] = 0
        pieces, n = cc3d.connected_components(argmax, connectivity=26, return_N=True)
    empty = VertebraInstances(np.zeros(shape, np.int32), {}, ["no vertebra found"])
    if n == 0:
        return empty
    level = np.zeros(n + 1, dtype=np.int64)
    level[pieces] = argmax  # one level per piece by construction
    stats = cc3d.statistics(pieces)
    # the faces of the box that are faces of the grid: a piece there is cut by the field of view
    faces = [np.moveaxis(pieces, a, 0)[[i]].ravel() for a in range(3) for i, on in ((0, lo[a] == 0),
                                                                                      (-1, hi[a] == shape[a])) if on]
    graph = _PieceGraph(
        stats["voxel_counts"] * float(np.prod(sp)),
        (stats["centroids"] + lo) * sp,
        level,
        cc3d.contacts(pieces, connectivity=26, surface_area=True, anisotropy=tuple(sp)),
        np.unique(np.concatenate(faces)) if faces else np.zeros(0, np.int64),
    )
    notes = [f"noisy prediction: {specks} specks below {min_volume_mm3:.0f} mm3 set to background"] if specks else []
    dropped, dropped_volume = graph.absorb_small(min_volume_mm3)
    merged, kept = graph.merge_wide_contacts(params.merge_contact_ratio, params.max_merged_growth)
    for pair in merged:
        notes.append(f"one vertebra carried voxel-wise levels {_names(pair)} across a wide contact: kept whole")
    for pair in kept:
        notes.append(f"voxel-wise levels {_names(pair)} meet across a wide contact, but together they are too"
                     f" large for one vertebra: kept apart")
    if graph.volume and min_relative_volume > 0:
        relative = min_relative_volume * float(np.median(list(graph.volume.values())))
        d, dv = graph.absorb_small(relative, spare_border=True)
        dropped, dropped_volume = dropped + d, dropped_volume + dv
    if dropped:
        notes.append(f"dropped {dropped} isolated fragment(s) too small for a vertebra ({dropped_volume:.0f} mm3)")
    for cluster in graph.components():
        if len(cluster) > 1:
            levels = sorted(graph.majority(g) for g in cluster)
            notes.append(f"split one connected component into {len(cluster)} touching vertebrae ({_names(levels)})")
    notes = [f"{n} ({c} times)" if c > 1 else n for n, c in Counter(notes).items()]
    if not graph.volume:
        empty.notes = notes + empty.notes
        return empty
    ids = {g: i for i, g in enumerate(sorted(graph.volume), start=1)}
    lut = np.zeros(n + 1, dtype=np.int32)
    for p in range(1, n + 1):
        r = graph.root(p)
        lut[p] = ids[r] if r else 0
    instance_map = np.zeros(shape, np.int32)
    instance_map[box] = lut[pieces]
    return VertebraInstances(instance_map, {ids[g]: graph.majority(g) for g in graph.volume}, notes)


def occupied_box(label_map: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """The bounding box of the non-zero voxels of a map (None when there are none): instance maps live on the whole
    model grid, but the spine fills a few percent of it, so work on them is done inside this box."""
    present = [np.flatnonzero(label_map.any(axis=tuple(b for b in range(label_map.ndim) if b != a)))
               for a in range(label_map.ndim)]
    if not len(present[0]):
        return None
    return tuple(slice(int(p[0]), int(p[-1]) + 1) for p in present)


def instance_geometry(instance_map: np.ndarray, spacing) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, centres_mm (K, 3) = centre of mass index * spacing, volumes_mm3) of the positive ids present."""
    sp = check_spacing(spacing)
    inst = np.asarray(instance_map)
    if inst.ndim != 3 or inst.min(initial=0) < 0:
        raise ValueError(f"instance_map must be a 3D map of non-negative ids, got shape {inst.shape}")
    box = occupied_box(inst)  # statistics inside the ids' bounding box only
    if box is None:
        return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0)
    lo = np.array([b.start for b in box])
    stats = cc3d.statistics(np.ascontiguousarray(inst[box], dtype=np.uint32))
    counts = np.asarray(stats["voxel_counts"], dtype=np.float64)
    ids = np.flatnonzero(counts[1:]) + 1
    return ids, (np.asarray(stats["centroids"])[ids] + lo) * sp, counts[ids] * float(np.prod(sp))
