"""Instances that survive a split or a fused body (numbering step 1b; pure numpy).

``instances.vertebra_instances`` cuts the foreground where the argmax levels change. Two errors remain that shift
every level below them, since the decoder gives every instance a level of its own: two vertebrae fused into one
instance (a bridged disc with one argmax level), and one vertebra cut into two (its upper and lower halves
argmaxed to two levels that meet across a narrow contact). Both show in the heights along the spine, which vary
little between neighbours (<~25 %):

* :func:`split_tall_instances`: an instance ``split_height_ratio`` times as tall as the median of its neighbours is
  cut at its narrowest cross-section (fewest voxels in a slice across the head-foot axis) within its middle half,
  when that slice is a neck (at most ``split_max_neck`` times the instance's median slice) and both parts keep
  ``split_min_part`` of it (so C2's dens, a narrow top on a normal body, is never cut off); so is, again and again,
  an instance taller than ``split_max_height_mm`` whatever its neighbours (thick slices blur the discs and fuse a
  whole column into one piece, beside fragments or nothing), and when it has no neck, into parts of equal length
  along its own head-foot direction (:func:`even_parts`, ``split_even_pitch_mm``): on real CT the discs are tilted
  against every slice (lordosis, oblique grids), so fused bodies show no neck;
* :func:`split_level_runs` (run by the numbering once pieces have joined their vertebra, before
  :func:`split_fused_instances`): an instance ``level_run_height_ratio`` times as tall as its neighbours whose slabs
  across its own head-foot direction carry, head to foot, runs of levels in the spine's order (each at least
  :data:`LEVEL_RUN_MIN_MM` long) is cut where the runs meet: vertebrae the network told apart by their levels, whose
  pieces met across a bridged disc wide enough to be taken for one vertebra with a flipped half
  (``instances.vertebra_instances``). A flipped half of one vertebra makes the instance no taller than its
  neighbours;
* :func:`merge_half_instances`: two consecutive touching instances each at most ``merge_half_height`` times the
  median height around them, together at most :data:`MERGED_MAX` times it, become one;
* :func:`absorb_pieces` (run by the numbering once the instances off the spine's axis are gone, whose pieces of
  ribs and pelvis would pull the neighbours' sizes down): an instance inside the field of view smaller than
  ``merge_piece_fraction`` times the median volume of its neighbours joins the instance it shares most faces with.
  No vertebra is a fifth of its neighbours' size; such a piece is a facet, a lamina or an endplate rim the level
  argmax gave a level of its own, and as an instance it would shift every level below it;
* :func:`merge_side_by_side` (run by the numbering just before :func:`absorb_pieces`): two touching instances side
  by side (their centres farther apart across the head-foot axis than along it) at the same height (their head-foot
  extents overlap by ``merge_overlap_fraction`` of the shorter one, and together they are at most
  :data:`SIDE_BY_SIDE_MAX` times as tall as the taller) are one vertebra cut front from back: a body and its arch
  argmaxed to two levels. Consecutive vertebrae lie one above the other, overlap only by the processes that reach
  over the next level (a fifth to a third of the shorter) and together are about 1.7x as tall; on an oblique grid
  or beside a fused instance their extents may overlap more, but their centres still lie one above the other;
* :func:`split_top_fused` (run by the numbering after the cuts at the CT's discs): the head-most instance, when it
  holds ``top_fused_ratio`` times the median volume of the instances below it, is cut where its lower part holds one
  of them: the vertebra the field of view cut above it had joined it.

Heights are extents along the head-foot array axis in mm (the model grid's; plans say which axis).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import cc3d
import numpy as np
from scipy import ndimage

from .. import labels as L
from .instances import occupied_box
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["MERGED_MAX", "LEVEL_RUN_MIN_MM", "instance_heights", "head_foot_direction", "even_parts", "cut_in_two",
           "split_tall_instances", "split_level_runs", "merge_half_instances", "repair_instances", "merge_side_by_side",
           "absorb_pieces", "touching", "split_top_fused"]

#: two half-height pieces are merged only when together they are at most this times the height around them
MERGED_MAX = 1.3
#: neighbours on each side whose median height is the reference
NEIGHBOURS = 2
#: two instances side by side are merged only when together they are at most this times as tall as the taller
SIDE_BY_SIDE_MAX = 1.3
#: an instance this close to the first or last slice (mm, at least one row) may be a vertebra the field of view cut:
#: a thick last slice of a phantom ends one row short of the model grid's edge
BORDER_MM = 7.0
#: a part of a fused instance cut without a neck is at least this tall: a thoracolumbar vertebra (20-35 mm); among
#: pieces (TPTBox's crop, cut into bands) a 28 mm instance beside 15 mm pieces is one vertebra, not two
FUSED_MIN_PART_MM = 20.0
#: a run of one level along an instance counts only when at least this long: a cervical body is 12-15 mm tall, and
#: shorter runs are an endplate's or a process tip's stray level
LEVEL_RUN_MIN_MM = 10.0
#: a part cut off at a change of level holds at least this fraction of the median volume of all the instances: on the
#: chest series, where many instances are pieces, the neighbours' heights said "tall" of a 35 mm instance whose
#: parts (5 ml) were pieces too
LEVEL_RUN_MIN_PART = 0.5
#: the head-most instance is weighed against the median volume of this many instances below it ...
TOP_NEIGHBOURS = 3
#: ... counting only instances of at least this fraction of the median volume of all (pieces are no vertebra) ...
TOP_MIN_FRACTION = 0.5
#: ... and is cut where its part towards the foot holds between these fractions of that volume: one vertebra ...
TOP_KEEP_RANGE = (0.75, 1.15)
#: ... when the part towards the head keeps at least this fraction of it
TOP_MIN_PIECE = 0.1


def instance_heights(instance_map: np.ndarray, spacing, si_axis: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, heights mm, centre along ``si_axis`` in voxels) of the positive ids present, sorted by that centre."""
    ids, heights, centres = [], [], []
    for index, box in enumerate(ndimage.find_objects(instance_map), start=1):
        if box is None:
            continue
        rows = np.flatnonzero(np.moveaxis(instance_map[box] == index, si_axis, 0).any(axis=(1, 2)))
        ids.append(index)
        heights.append((rows[-1] - rows[0] + 1) * float(spacing[si_axis]))
        centres.append(box[si_axis].start + 0.5 * (rows[0] + rows[-1]))
    order = np.argsort(centres, kind="stable")
    return np.asarray(ids, dtype=np.int64)[order], np.asarray(heights)[order], np.asarray(centres)[order]


def neighbour_median(values: np.ndarray, exclude: Tuple[int, int]) -> float:
    """Median of up to NEIGHBOURS values (heights, volumes of instances in head-foot order) on each side of positions
    ``exclude[0]..exclude[1]``; NaN with fewer than two of them."""
    lo, hi = exclude
    around = np.concatenate([values[max(0, lo - NEIGHBOURS):lo], values[hi + 1:hi + 1 + NEIGHBOURS]])
    return float(np.median(around)) if len(around) >= 2 else float("nan")


def _cut_at_neck(out: np.ndarray, box, index: int, si_axis: int, min_part: float, max_neck: float,
                 new_id: int) -> bool:
    """Give the lower part of instance ``index`` (inside ``box`` of ``out``, changed in place) the id ``new_id``, cut
    at its narrowest cross-section within its middle half (among equals the one nearest the middle), when that
    slice is a neck and both parts keep ``min_part`` (module docstring); whether it was cut."""
    mask = np.moveaxis(out[box] == index, si_axis, 0)
    area = mask.sum(axis=(1, 2))
    rows = np.flatnonzero(area)
    first, last = rows[0], rows[-1]
    middle = np.arange(first + (last - first + 1) // 4, last - (last - first + 1) // 4 + 1)
    if len(middle) == 0:
        return False
    centre = 0.5 * (first + last)
    cut = int(min(middle, key=lambda r: (area[r], abs(r - centre))))
    upper, total = area[:cut].sum(), area.sum()
    if area[cut] > max_neck * np.median(area[rows]) or min(upper, total - upper) < min_part * total:
        return False
    view = np.moveaxis(out[box], si_axis, 0)  # a view into out
    lower = np.zeros_like(mask)
    lower[cut:] = mask[cut:]
    view[lower] = new_id
    return True


def head_foot_direction(points_mm: np.ndarray, si_axis: int) -> np.ndarray:
    """Unit vector from the centroid of the lowest quarter of ``points_mm`` ((n, 3), mm) along ``si_axis`` to that of
    the highest: the spine's own direction through one instance, where the array axis may be 15-40 degrees off
    (an oblique grid, lordosis). The principal axis would do for a column, but two fused lumbar vertebrae are wider
    (transverse processes) than tall. The array axis when the quarters coincide."""
    s = points_mm[:, si_axis]
    low, high = np.percentile(s, (25.0, 75.0))
    direction = points_mm[s >= high].mean(axis=0) - points_mm[s <= low].mean(axis=0)
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        return np.eye(3)[si_axis]
    return direction / norm


def even_parts(mask: np.ndarray, spacing, si_axis: int, pitch_mm: float,
               parts: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """(part index per voxel of ``mask``, in ``np.nonzero`` order; number of parts): ``mask`` cut by planes across
    its :func:`head_foot_direction` into round(length / ``pitch_mm``) pieces of equal length (or ``parts``), at
    least 2 (callers ask only for a fused instance). Part 0 is the lowest along ``si_axis``."""
    points = np.stack(np.nonzero(mask), axis=1) * np.asarray(spacing, dtype=np.float64)
    t = points @ head_foot_direction(points, si_axis)
    t -= t.min()
    length = float(t.max())
    n = max(2, int(round(length / pitch_mm)) if parts is None else int(parts))
    return np.minimum((t * (n / max(length, 1e-9))).astype(np.int64), n - 1), n


def _cut_even(out: np.ndarray, box, index: int, spacing, si_axis: int, pitch_mm: float,
              parts: Optional[int] = None) -> List[int]:
    """Cut instance ``index`` (inside ``box`` of ``out``, changed in place) into :func:`even_parts`; the lowest part
    keeps ``index``, the others get new ids; returns the ids of all parts."""
    region = out[box]  # a view into out
    mask = region == index
    part, n = even_parts(mask, spacing, si_axis, pitch_mm, parts)
    first = int(out.max()) + 1
    region[mask] = np.where(part == 0, index, first + part - 1)
    return [index, *range(first, first + n - 1)]


def split_tall_instances(instance_map, spacing, si_axis: int, ratio: float = DEFAULTS.split_height_ratio,
                         min_part: float = DEFAULTS.split_min_part,
                         max_neck: float = DEFAULTS.split_max_neck,
                         max_height_mm: float = DEFAULTS.split_max_height_mm,
                         even_pitch_mm: float = DEFAULTS.split_even_pitch_mm) -> Tuple[np.ndarray, List[str]]:
    """Cut instances ``ratio`` times as tall as their neighbours, or taller than ``max_height_mm`` whatever their
    neighbours (again and again while a part is still that tall and has a neck: a column fused by thick slices, whose
    neighbours are fragments or nothing), as the module docstring says; one taller than ``max_height_mm`` without a
    neck is cut into even parts of about ``even_pitch_mm``. Returns (new map with the other parts under new ids,
    notes). ``ratio``, ``max_height_mm`` and ``even_pitch_mm`` 0 = that rule off."""
    out = np.array(instance_map, dtype=np.int32, copy=True)
    notes: List[str] = []
    if ratio <= 0 and max_height_mm <= 0:
        return out, notes
    measured = instance_heights(out, spacing, si_axis)  # measured again only after a cut (a pass over the grid)
    if ratio > 0:
        ids, heights, _ = measured
        boxes = ndimage.find_objects(out)
        for k, (i, h) in enumerate(zip(ids, heights)):
            reference = neighbour_median(heights, (k, k))
            if h >= ratio * reference and _cut_at_neck(out, boxes[i - 1], i, si_axis, min_part, max_neck,
                                                       int(out.max()) + 1):
                notes.append(f"split an instance {h:.0f} mm tall ({h / reference:.1f} x its neighbours) at its "
                             f"narrowest cross-section: two fused vertebrae")
                measured = None
    if max_height_mm <= 0:
        return out, notes
    tried = set()  # (id, height) pairs found without a neck: they stay whole
    evened = set()  # ids from an even cut: not cut evenly again (a part stays whole rather than loop)
    while True:
        ids, heights, _ = measured if measured is not None else instance_heights(out, spacing, si_axis)
        tall = [(int(i), float(h)) for i, h in zip(ids, heights)
                if h > max_height_mm and (int(i), float(h)) not in tried]
        if not tall:
            return out, notes
        boxes = ndimage.find_objects(out)
        for i, h in tall:
            # no share of the volume asked of the parts: the middle half of a piece this tall holds no dens to spare,
            # and a fused column's parts differ in volume as its levels do
            if _cut_at_neck(out, boxes[i - 1], i, si_axis, 0.0, max_neck, int(out.max()) + 1):
                notes.append(f"split an instance {h:.0f} mm tall (more than the {max_height_mm:g} mm of any one "
                             f"vertebra) at its narrowest cross-section: fused vertebrae")
                measured = None
            elif even_pitch_mm > 0 and i not in evened:
                parts = _cut_even(out, boxes[i - 1], i, spacing, si_axis, even_pitch_mm)
                evened.update(parts)
                notes.append(f"split an instance {h:.0f} mm tall (more than the {max_height_mm:g} mm of any one "
                             f"vertebra), without a narrow cross-section, into {len(parts)} of equal length along "
                             f"the spine: fused vertebrae")
                measured = None
            else:
                tried.add((i, h))


def cut_in_two(instance_map: np.ndarray, index: int, box, spacing, si_axis: int, si_sign: int) -> Tuple[int, int]:
    """Cut instance ``index`` (inside ``box`` of ``instance_map``, changed in place) into two parts of equal length
    along its own head-foot direction (:func:`even_parts`); the other part gets the next free id. Returns (id of the
    head part, id of the foot part); ``si_sign`` +1 when the head lies towards higher indices of ``si_axis``."""
    lower, upper = _cut_even(instance_map, box, int(index), spacing, si_axis, 1.0, parts=2)
    return (upper, lower) if si_sign > 0 else (lower, upper)


def _cut_in_box(instance_map, cut) -> Tuple[np.ndarray, List[str]]:
    """(new map, notes) of ``cut(region, box)``, which cuts instances in ``region`` (a copy of the instances'
    bounding box ``box`` of ``instance_map``, ``instances.occupied_box``) in place and returns its notes: the work
    stays inside the spine, not the whole model grid. The map itself when nothing is cut."""
    instance_map = np.asarray(instance_map)
    box = occupied_box(instance_map)
    if box is None:
        return instance_map, []
    region = np.array(instance_map[box], dtype=np.int32)
    notes = cut(region, box)
    if not notes:
        return instance_map, []
    out = np.array(instance_map, dtype=np.int32, copy=True)
    out[box] = region
    return out, notes


def split_fused_instances(instance_map, spacing, si_axis: int, height_ratio: float = DEFAULTS.split_height_ratio,
                          volume_ratio: float = DEFAULTS.split_volume_ratio) -> Tuple[np.ndarray, List[str]]:
    """Cut an instance at least ``height_ratio`` times as tall and ``volume_ratio`` times as large as the median of
    its neighbours (up to two on each side) into parts of equal length along its own head-foot direction, one per
    neighbour height: two vertebrae fused without a neck, where the discs are tilted against every slice (verse014's
    L4 and L5, 84 mm and 121 ml beside neighbours of 38 mm and 30 ml). Meant for the spine's own instances, once
    pieces have joined their vertebra (``absorb_pieces``): among the pieces every vertebra is many times its
    neighbours. Works inside the instances' bounding box (``instances.occupied_box``), as ``repair_instances``;
    returns (new map, notes), the map itself when nothing is cut; ``volume_ratio`` or ``height_ratio`` 0 = off."""
    if volume_ratio <= 0 or height_ratio <= 0:
        return np.asarray(instance_map), []

    def cut(region: np.ndarray, _box) -> List[str]:
        ids, heights, _ = instance_heights(region, spacing, si_axis)
        volumes = np.bincount(region.ravel(), minlength=int(region.max()) + 1)[ids].astype(np.float64)
        boxes = ndimage.find_objects(region)
        notes = []
        for k, i in enumerate(ids):
            height, volume = neighbour_median(heights, (k, k)), neighbour_median(volumes, (k, k))
            count = max(2, int(round(heights[k] / height))) if height > 0 else 0
            if (heights[k] >= height_ratio * height and volumes[k] >= volume_ratio * volume
                    and heights[k] / max(count, 1) >= FUSED_MIN_PART_MM):
                parts = _cut_even(region, boxes[i - 1], int(i), spacing, si_axis, height, count)
                notes.append(f"split an instance {heights[k]:.0f} mm tall and {volumes[k] / volume:.1f} x the volume "
                             f"of its neighbours ({heights[k] / height:.1f} x their height), without a narrow "
                             f"cross-section, into {len(parts)} of equal length along the spine: fused vertebrae")
        return notes

    return _cut_in_box(instance_map, cut)


def level_runs(levels: np.ndarray, position_mm: np.ndarray, slab_mm: float,
               min_run_mm: float = LEVEL_RUN_MIN_MM) -> List[Tuple[int, float]]:
    """Runs of one level along a line: ``levels`` (n,) of voxels at ``position_mm`` (n,) along it, binned into slabs
    of ``slab_mm``, each slab taking its most frequent level; a run shorter than ``min_run_mm`` takes the level of
    its longer neighbour. Returns (level, start position) per run, from the lowest position up."""
    slab = np.floor((position_mm - position_mm.min()) / slab_mm).astype(np.int64)
    count = int(slab.max()) + 1
    votes = np.zeros((count, int(levels.max()) + 1), np.int64)
    np.add.at(votes, (slab, levels), 1)
    runs = _joined([[int(votes[k].argmax()), k, 1] for k in np.flatnonzero(votes.sum(axis=1))])
    while len(runs) > 1:
        short = min(range(len(runs)), key=lambda r: runs[r][2])
        if runs[short][2] * slab_mm >= min_run_mm:
            break
        into = max((r for r in (short - 1, short + 1) if 0 <= r < len(runs)), key=lambda r: runs[r][2])
        runs[short][0] = runs[into][0]
        runs = _joined(runs)
    return [(int(level), float(position_mm.min() + first * slab_mm)) for level, first, _ in runs]


def _joined(runs: List[List[int]]) -> List[List[int]]:
    """Runs [level, first slab, slabs spanned] with neighbours of one level joined (the span reaches over empty
    slabs between them)."""
    out: List[List[int]] = []
    for level, first, span in runs:
        if out and out[-1][0] == level:
            out[-1][2] = first + span - out[-1][1]
        else:
            out.append([level, first, span])
    return out


def split_level_runs(instance_map, index: np.ndarray, levels: np.ndarray, spacing, si_axis: int, si_sign: int,
                     height_ratio: float = DEFAULTS.level_run_height_ratio,
                     min_run_mm: float = LEVEL_RUN_MIN_MM) -> Tuple[np.ndarray, List[str]]:
    """Cut an instance at least ``height_ratio`` times as tall as the median of its neighbours (up to two on each
    side) where the levels of its slabs change (:func:`level_runs` along its :func:`head_foot_direction`), when the
    runs follow the spine's order head to foot (training labels rising towards the foot; ``si_sign`` +1 when the head
    lies towards higher indices of ``si_axis``) and each part holds :data:`LEVEL_RUN_MIN_PART` of the median
    instance. ``index``: sorted flat indices of the foreground voxels (every instance voxel is one), ``levels``: the
    level (training label 1..26) the network gives each. Works inside the instances' bounding box; returns (new map,
    notes), the map itself when nothing is cut; ``height_ratio`` 0 = off."""
    if height_ratio <= 0:
        return np.asarray(instance_map), []
    sp = np.asarray(spacing, dtype=np.float64)
    shape = np.shape(instance_map)

    def cut(region: np.ndarray, box) -> List[str]:
        ids, heights, _ = instance_heights(region, sp, si_axis)
        boxes = ndimage.find_objects(region)
        origin = np.array([b.start for b in box])
        min_part = LEVEL_RUN_MIN_PART * float(np.median(np.bincount(region.ravel())[ids]))
        notes = []
        for k, i in enumerate(ids):
            reference = neighbour_median(heights, (k, k))
            if not heights[k] >= height_ratio * reference:  # NaN (fewer than two neighbours): never
                continue
            sub = boxes[i - 1]
            mine, t, runs = _runs_of(region, sub, i, origin, shape, index, levels, sp, si_axis, si_sign, min_run_mm)
            if not _in_spine_order(runs):
                continue
            order = [level for level, _ in runs]
            part = np.searchsorted([start for _, start in runs[1:]], t, side="right")
            if np.bincount(part, minlength=len(runs)).min() < min_part:
                continue
            first = int(region.max()) + 1
            view = region[sub]
            view[mine] = np.where(part == 0, i, first + part - 1)
            names = ", ".join(L.ANATOMICAL_ORDER[level - 1] for level in reversed(order))
            notes.append(f"split an instance {heights[k]:.0f} mm tall ({heights[k] / reference:.1f} x its "
                         f"neighbours) into {len(runs)} where its voxel-wise levels change ({names}, head to foot): "
                         "vertebrae joined across a bridged disc")
        return notes

    return _cut_in_box(instance_map, cut)


def _runs_of(region: np.ndarray, sub, i: int, origin, shape, index: np.ndarray, levels: np.ndarray, sp: np.ndarray,
             si_axis: int, si_sign: int, min_run_mm: float):
    """(instance ``i``'s mask in ``sub`` of ``region``, its voxels' positions along its head-foot direction growing
    towards the head, :func:`level_runs` of its voxels' ``levels``); ``region`` starts at ``origin`` of a map of
    ``shape``, whose foreground voxels' sorted flat indices are ``index``."""
    mine = region[sub] == i
    voxels = np.stack(np.nonzero(mine), axis=1) + [s.start for s in sub]
    flat = np.ravel_multi_index(tuple((voxels + np.asarray(origin)).T), shape)
    points = voxels * sp
    t = si_sign * (points @ head_foot_direction(points, si_axis))  # grows towards the head
    return mine, t, level_runs(np.asarray(levels)[np.searchsorted(index, flat)], t, float(sp[si_axis]), min_run_mm)


def _in_spine_order(runs: List[Tuple[int, float]]) -> bool:
    """Whether runs (foot first) are two or more whose levels fall towards the head, as the spine's do."""
    order = [level for level, _ in runs]
    return len(runs) >= 2 and all(a > b for a, b in zip(order, order[1:]))


def ordered_level_runs(instance_map: np.ndarray, ids, index: np.ndarray, levels: np.ndarray, spacing, si_axis: int,
                       si_sign: int, min_run_mm: float = LEVEL_RUN_MIN_MM) -> np.ndarray:
    """Per id of ``ids``: whether the levels of its voxels (``levels``: training labels of the foreground voxels
    whose sorted flat indices are ``index``) form runs of at least ``min_run_mm`` in the spine's order head to foot,
    as :func:`split_level_runs` reads them: two vertebrae the network told apart by level, in one instance."""
    sp = np.asarray(spacing, dtype=np.float64)
    instance_map = np.asarray(instance_map)
    boxes = ndimage.find_objects(instance_map)
    origin = (0,) * instance_map.ndim
    out = np.zeros(len(ids), bool)
    for k, i in enumerate(ids):
        if i <= len(boxes) and boxes[i - 1] is not None:
            runs = _runs_of(instance_map, boxes[i - 1], int(i), origin, instance_map.shape, index, levels, sp,
                            si_axis, si_sign, min_run_mm)[2]
            out[k] = _in_spine_order(runs)
    return out


def merge_half_instances(instance_map, spacing, si_axis: int,
                         half: float = DEFAULTS.merge_half_height) -> Tuple[np.ndarray, List[str]]:
    """Merge consecutive touching half-height instances (module docstring); returns (new map, notes). ``half`` 0 =
    unchanged."""
    out = np.array(instance_map, dtype=np.int32, copy=True)
    if half <= 0:
        return out, []
    ids, heights, _ = instance_heights(out, spacing, si_axis)
    notes, k = [], 0
    while k < len(ids) - 1:
        reference = neighbour_median(heights, (k, k + 1))
        a, b = int(ids[k]), int(ids[k + 1])
        if heights[k] <= half * reference and heights[k + 1] <= half * reference and touching(out, a, b):
            union_rows = np.flatnonzero(np.moveaxis(np.isin(out, (a, b)), si_axis, 0).any(axis=(1, 2)))
            union = (union_rows[-1] - union_rows[0] + 1) * float(spacing[si_axis])
            if union <= MERGED_MAX * reference:
                out[out == b] = a
                notes.append(f"merged two touching instances {heights[k]:.0f} and {heights[k + 1]:.0f} mm tall (half "
                             f"the {reference:.0f} mm of their neighbours): one vertebra cut across")
                ids = np.delete(ids, k + 1)
                heights = np.delete(heights, k + 1)
                heights[k] = union
                k += 1
                continue
        k += 1
    return out, notes


def touching(instance_map: np.ndarray, a: int, b: int, faces_only: bool = False) -> bool:
    """Whether instances a and b share a face, edge or corner (26-neighbourhood), or with ``faces_only`` a face."""
    boxes = ndimage.find_objects(instance_map)
    box = tuple(slice(max(0, min(p.start, q.start) - 1), max(p.stop, q.stop) + 1)
                for p, q in zip(boxes[a - 1], boxes[b - 1]))
    structure = ndimage.generate_binary_structure(3, 1) if faces_only else np.ones((3, 3, 3), bool)
    near_a = ndimage.binary_dilation(instance_map[box] == a, structure=structure)
    return bool((near_a & (instance_map[box] == b)).any())


def repair_instances(instance_map, spacing, si_axis: int,
                     params: Postprocessing = DEFAULTS) -> Tuple[np.ndarray, List[str]]:
    """:func:`split_tall_instances` then :func:`merge_half_instances`, with ``params``' values; ids relabelled
    1..K. Both work inside the instances' bounding box (``instances.occupied_box``): the same result, without
    passes over the whole grid."""
    instance_map = np.asarray(instance_map)
    out = np.zeros(instance_map.shape, np.int32)
    box = occupied_box(instance_map)
    if box is None:
        return out, []
    split, notes = split_tall_instances(instance_map[box], spacing, si_axis, params.split_height_ratio,
                                        params.split_min_part, params.split_max_neck, params.split_max_height_mm,
                                        params.split_even_pitch_mm)
    merged, more = merge_half_instances(split, spacing, si_axis, params.merge_half_height)
    present = np.flatnonzero(np.bincount(merged.ravel()))
    present = present[present > 0]
    lut = np.zeros(int(merged.max()) + 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    out[box] = lut[merged]
    return out, notes + more


def _shared_faces(instance_map: np.ndarray) -> Dict[int, Dict[int, float]]:
    """Per instance id, the ids it shares voxel faces with and how many (6-connectivity), within the occupied box."""
    faces: Dict[int, Dict[int, float]] = {}
    box = occupied_box(instance_map)
    if box is None:
        return faces
    for (a, b), n in cc3d.contacts(instance_map[box], connectivity=6, surface_area=False).items():
        faces.setdefault(int(a), {})[int(b)] = n
        faces.setdefault(int(b), {})[int(a)] = n
    return faces


def _join(faces: Dict[int, Dict[int, float]], piece: int, host: int) -> None:
    """Update ``faces`` in place for ``piece`` joining ``host``, a neighbour it shares faces with (so both have
    entries)."""
    for j, n in faces.pop(piece).items():
        del faces[j][piece]
        if j != host:
            faces[host][j] = faces[host].get(j, 0) + n
            faces[j][host] = faces[j].get(host, 0) + n


def merge_side_by_side(instance_map, ids, centres_mm, volumes, spacing, si_axis: int,
                       overlap: float = DEFAULTS.merge_overlap_fraction) -> Tuple[np.ndarray, List[str]]:
    """Merge touching instances side by side at the same height (module docstring), the pair that overlaps most
    first; the larger keeps its id. ``ids``, ``centres_mm``, ``volumes``: per instance of ``instance_map``, as
    ``instances.instance_geometry`` gives them. The smaller is not merged when the field of view may cut it (within
    :data:`BORDER_MM` of the head-foot border): the processes of a vertebra whose body lies outside the scan reach
    down beside the next one's. Returns (new map, notes); ``overlap`` 0 = unchanged."""
    out = np.array(instance_map, dtype=np.int32, copy=True)
    if overlap <= 0:
        return out, []
    boxes = ndimage.find_objects(out)  # an instance's box spans its rows along si_axis: its head-foot extent
    extent = {int(i): (boxes[i - 1][si_axis].start, boxes[i - 1][si_axis].stop - 1) for i in ids}
    centre = {int(i): np.asarray(c, dtype=np.float64) for i, c in zip(ids, centres_mm)}
    volume = {int(i): float(v) for i, v in zip(ids, volumes)}
    across = [a for a in range(3) if a != si_axis]
    edge = max(1, int(round(BORDER_MM / float(spacing[si_axis]))))  # rows from the first or last that count as cut
    last = out.shape[si_axis] - 1
    cut = {i for i, (lo, hi) in extent.items() if lo < edge or hi > last - edge}
    faces = _shared_faces(out)
    lut = np.arange(int(out.max()) + 1, dtype=np.int32)
    merged = []
    while True:
        best = None
        for a in faces:
            for b in faces[a]:
                if a >= b:
                    continue
                (a0, a1), (b0, b1) = extent[a], extent[b]
                shared = min(a1, b1) - max(a0, b0) + 1
                shorter, taller = sorted((a1 - a0 + 1, b1 - b0 + 1))
                union = max(a1, b1) - min(a0, b0) + 1
                apart = centre[b] - centre[a]
                beside = abs(apart[si_axis]) < np.linalg.norm(apart[across])
                if beside and shared >= overlap * shorter and union <= SIDE_BY_SIDE_MAX * taller:
                    if best is None or shared / shorter > best[0]:
                        best = (shared / shorter, a, b)
        if best is None:
            break
        _, a, b = best
        host, piece = (a, b) if volume[a] >= volume[b] else (b, a)
        if piece in cut:  # processes of the vertebra the field of view cut off, beside the next: a level of its own
            faces[a].pop(b)
            faces[b].pop(a)
            continue
        _join(faces, piece, host)
        lut[lut == piece] = host
        extent[host] = (min(extent[a][0], extent[b][0]), max(extent[a][1], extent[b][1]))
        centre[host] = (centre[host] * volume[host] + centre.pop(piece) * volume[piece]) / (volume[host] + volume[piece])
        volume[host] += volume.pop(piece)
        del extent[piece]
        merged.append(best[0])
    if not merged:
        return out, []
    return lut[out], [f"merged {len(merged)} pair(s) of touching instances at the same height (head-foot overlap "
                      f"{', '.join(f'{m:.0%}' for m in merged)} of the shorter, at least {overlap:.0%}): one vertebra "
                      "cut front from back, a body and its arch side by side, not two levels"]


def absorb_pieces(instance_map, ids, centres_mm, volumes, on_border, si_axis: int,
                  fraction: float = DEFAULTS.merge_piece_fraction) -> Tuple[np.ndarray, List[str]]:
    """Merge each piece (module docstring) into the instance it shares most faces with, the smallest relative to its
    neighbours first. ``ids``, ``centres_mm``, ``volumes``, ``on_border``: per instance of ``instance_map``, as
    ``instances.instance_geometry`` and the numbering give them; neighbours are up to :data:`NEIGHBOURS` on each side
    by the centre along ``si_axis``. A piece on the head-foot border (a vertebra cut by the field of view) or touching
    no other instance stays. Returns (new map, notes); ``fraction`` 0 = unchanged."""
    out = np.array(instance_map, dtype=np.int32, copy=True)
    if fraction <= 0 or len(ids) < 3:
        return out, []
    border = set(np.asarray(ids)[np.asarray(on_border, dtype=bool)].tolist())
    order = np.argsort(np.asarray(centres_mm, dtype=np.float64)[:, si_axis], kind="stable")
    ids = [int(i) for i in np.asarray(ids)[order]]
    volumes = list(np.asarray(volumes, dtype=np.float64)[order])
    faces = {i: {} for i in ids}  # shared voxel faces, kept up to date as pieces join
    faces.update(_shared_faces(out))
    lut = np.arange(int(out.max()) + 1, dtype=np.int32)
    absorbed, kept = [], set()
    while True:
        ratios = []
        for k, i in enumerate(ids):
            around = volumes[max(0, k - NEIGHBOURS):k] + volumes[k + 1:k + 1 + NEIGHBOURS]
            if i not in border and i not in kept and len(around) >= 2:
                ratios.append((volumes[k] / float(np.median(around)), k))
        small = sorted(r for r in ratios if r[0] < fraction)
        if not small:
            break
        _, k = small[0]
        piece = ids[k]
        if not faces[piece]:
            kept.add(piece)
            continue
        host = min(faces[piece], key=lambda j: (-faces[piece][j], j))  # most faces; among equals the lowest id
        _join(faces, piece, host)
        lut[lut == piece] = host
        volumes[ids.index(host)] += volumes[k]
        absorbed.append(volumes[k])
        del ids[k], volumes[k]
    if not absorbed:
        return out, []
    return lut[out], [f"joined {len(absorbed)} piece(s) of {', '.join(f'{v / 1000:.1f}' for v in absorbed)} ml, "
                      f"below {fraction:g} x the volume of their neighbours, to the instance each touches most: parts "
                      "of a vertebra, not levels of their own"]


def split_top_fused(instance_map, spacing, si_axis: int, si_sign: int,
                    ratio: float = DEFAULTS.top_fused_ratio) -> Tuple[np.ndarray, List[str]]:
    """Cut the head-most instance off the vertebra the field of view cut above it: when it holds at least ``ratio``
    times the median volume of the :data:`TOP_NEIGHBOURS` below it (instances of at least :data:`TOP_MIN_FRACTION` of
    the median volume only), it is cut at its narrowest slice across ``si_axis`` among those where its part towards
    the foot holds :data:`TOP_KEEP_RANGE` of that volume, and the part towards the head (at least
    :data:`TOP_MIN_PIECE` of it) gets the next free id. Vertebrae grow towards the foot, so the head-most one is
    rarely larger than those below it; at the foot a large last instance is L5 or holds the sacrum's top, and is left
    alone. ``si_sign`` +1 when the head lies towards higher indices; returns (new map, notes), the map itself when
    nothing is cut; ``ratio`` 0 = off."""
    if ratio <= 0:
        return np.asarray(instance_map), []

    def cut(region: np.ndarray, _box) -> List[str]:
        ids = instance_heights(region, spacing, si_axis)[0][::-1 if si_sign > 0 else 1]  # head first
        volumes = np.bincount(region.ravel(), minlength=int(region.max()) + 1)[ids].astype(np.float64)
        whole = np.flatnonzero(volumes >= TOP_MIN_FRACTION * np.median(volumes)) if len(ids) else ids
        if len(whole) < TOP_NEIGHBOURS + 1:
            return []
        top, reference = int(ids[whole[0]]), float(np.median(volumes[whole[1:TOP_NEIGHBOURS + 1]]))
        if volumes[whole[0]] < ratio * reference:
            return []
        rows = np.moveaxis(region[ndimage.find_objects(region)[top - 1]], si_axis, 0)  # a view into region
        area = (rows == top).sum(axis=(1, 2))
        footward = np.cumsum(area) if si_sign > 0 else np.cumsum(area[::-1])[::-1]  # this row and those below it
        lo, hi = TOP_KEEP_RANGE
        candidates = np.flatnonzero((footward >= lo * reference) & (footward <= hi * reference))
        if si_sign < 0:
            candidates = candidates[::-1]  # from the foot, as with the head at higher indices
        if not len(candidates):
            return []
        at = int(candidates[np.argmin(area[candidates])])
        head = np.zeros(rows.shape, bool)
        if si_sign > 0:
            head[at + 1:] = rows[at + 1:] == top
        else:
            head[:at] = rows[:at] == top
        if head.sum() < TOP_MIN_PIECE * reference:
            return []
        rows[head] = int(region.max()) + 1
        return [f"cut the head-most instance, {volumes[whole[0]] / reference:.1f} x the volume of the "
                f"{len(whole[1:TOP_NEIGHBOURS + 1])} below it, where its lower part holds one of them: the vertebra "
                "the field of view cut above it had joined it"]

    return _cut_in_box(instance_map, cut)
