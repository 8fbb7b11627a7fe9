"""Instances cut at the discs the disc head sees (numbering step 1a; pure numpy / cc3d).

``instances.vertebra_instances`` cuts the foreground where the argmax levels change, so a bridged disc with one
argmax level leaves two or three vertebrae in one instance, and the decoder, which gives every instance a level of
its own, shifts every level below it. The disc head (``network``'s ``"boundary"``) marks the voxels between two
different vertebrae. :func:`split_at_discs` removes those voxels from an instance: when the rest falls into two or
more parts of at least ``disc_split_min_part`` of its volume (6-connected: a cut one voxel thick separates), each
part is a vertebra, and every other voxel of the instance (the disc itself, a process cut off at its facet joint)
joins the part nearest to it in mm. A cut that leaves one large part changes nothing.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cc3d
import numpy as np
from scipy import ndimage

__all__ = ["split_at_discs", "assign_to_parts"]


def assign_to_parts(region: np.ndarray, mine: np.ndarray, seeds: np.ndarray, parts: Sequence[int], keep_id: int,
                    next_id: int, spacing) -> int:
    """One instance cut into ``parts`` (in place): every voxel of the mask ``mine`` in ``region`` (a box of an
    instance map) joins the part of ``seeds`` (part ids, 0 elsewhere) nearest to it in mm; the first part keeps
    ``keep_id``, the others take ids from ``next_id`` on. Returns the next id still free."""
    nearest = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_distances=False,
                                             return_indices=True)
    lut = np.zeros(int(max(parts)) + 1, np.int32)
    lut[parts[0]] = keep_id
    lut[list(parts[1:])] = np.arange(next_id, next_id + len(parts) - 1)
    region[mine] = lut[seeds[tuple(nearest)][mine]]
    return next_id + len(parts) - 1


def split_at_discs(instance_map: np.ndarray, index: np.ndarray, disc: Optional[np.ndarray], spacing,
                   threshold: float, min_part: float) -> Tuple[np.ndarray, List[str]]:
    """(instance map, notes); a vertebra cut off an instance gets a new id. ``index``: sorted flat indices of the
    foreground voxels (every instance voxel is one); ``disc``: the disc head's probability there ((n,), None for a model
    without the head: nothing is cut, as with ``threshold`` 0)."""
    if disc is None or threshold <= 0 or not len(index):
        return instance_map, []
    sp = np.asarray(spacing, dtype=np.float64)
    out = instance_map.copy()
    next_id = int(instance_map.max(initial=0)) + 1
    cuts = []
    for i, box in enumerate(ndimage.find_objects(instance_map), start=1):
        if box is None:
            continue
        mine = instance_map[box] == i
        coords = np.nonzero(mine)
        flat = np.ravel_multi_index(tuple(c + b.start for c, b in zip(coords, box)), instance_map.shape)
        core = np.zeros(mine.shape, bool)
        core[coords] = disc[np.searchsorted(index, flat)].astype(np.float32) < threshold
        parts, n = cc3d.connected_components(core, connectivity=6, return_N=True)
        if n < 2:
            continue
        sizes = np.bincount(parts.ravel(), minlength=n + 1)
        sizes[0] = 0
        big = np.flatnonzero(sizes >= min_part * len(coords[0]))
        if len(big) < 2:
            continue
        next_id = assign_to_parts(out[box], mine, np.where(np.isin(parts, big), parts, 0), big, i, next_id, sp)
        cuts.append(len(big))
    notes = [f"cut {len(cuts)} instance(s) at discs the disc head sees, into {sum(cuts)} vertebrae"] if cuts else []
    return out, notes
