"""Structure-aware vertebra numbering (DESIGN.md section 7): the steps in order, on one case at the model's spacing.

1. ``instances.vertebra_instances``: vertebra instances from the segmentation probabilities (a
   ``grid_probabilities.GridProbabilities``, what the predictor keeps, or full arrays, reduced to one first); then
   ``disc_split.split_at_discs`` (an instance cut where the disc head sees discs),
   ``instance_repair.repair_instances`` (two fused vertebrae split, a vertebra cut across merged) and
   ``spine_extent`` (weak instances and those off the spine's axis dropped, then pieces far smaller than their
   neighbours joined to the instance they touch (``instance_repair.absorb_pieces``, after
   ``merge_side_by_side`` has joined a body and its arch found at the same height), a tall instance cut where its
   voxel-wise levels change in the spine's order (``instance_repair.split_level_runs``), an instance as tall and as
   large as two of its neighbours cut in two (``instance_repair.split_fused_instances``), instances cut and joined
   at the discs the input CT shows where its slices are thin enough (``ct_discs``, ``ct_disc_min_score``), the
   head-most instance cut off the vertebra the field of view cut above it (``instance_repair.split_top_fused``,
   ``top_fused_ratio``), pieces isolated or smaller than the spine's own instances dropped; no spine when too
   little is left, never more instances than the field of view can hold).
2. :func:`order_instances`: head first, by the centre of mass (mm) along the superior axis.
3. ``level_evidence.instance_level_log_probs``: one vector of level log-probabilities per instance (log of the
   mean softmax) over the identification head's probabilities, or over the foreground channels of the
   segmentation probabilities (ablation, nnU-Net baseline); the same over the coarse whole-field stage's level
   probabilities when there are some (``coarse_stage``, read at the instances' voxels from its own grid); the
   anatomical anchors in the image (``anchors``).
4. ``decoder.decode_levels``: the labels of the whole ordered sequence jointly (the fine evidence plus
   ``coarse_level_weight`` x the coarse one, the anchors as unary priors); with ``end_drop_cost`` the first or the
   last instance may be left out as not a vertebra (unlabelled, said in the notes and ``report["left_out"]``), and
   with ``cut_l6_is_sacrum`` a last instance named L6 where the field of view ends just below it, with no sacrum
   found, is left out as the sacrum's first segment (:func:`sacrum_top`).
5. :func:`number_vertebrae`: all of it, written back as a training-label map plus per-instance records,
   human-readable notes, what the numbering rests on (``report``: anchors, coarse stage, margin, count bound) and
   the case's quality flag (``quality.assess``).

:func:`argmax_numbering` is the ablation / baseline without any of it: the per-voxel argmax as the label map.
Every tuned constant comes in one ``postprocessing.Postprocessing`` (the model folder's, or the defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

from .. import labels as L
from .anchors import LEVEL_ANCHORS, Anchor, anchor_log_prior, anchor_strength, find_anchors
from .coarse_resample import at_fine_voxels
from .ct_discs import InputCT, cut_at_ct_discs
from .decoder import NUM_LEVELS, Decoding, decode_levels
from .disc_split import split_at_discs
from .grid_probabilities import GridProbabilities, as_grid_probabilities, check_probabilities, coarse_levels
from .instance_repair import (NEIGHBOURS, absorb_pieces, cut_in_two, merge_side_by_side, neighbour_median,
                              ordered_level_runs, repair_instances, split_fused_instances, split_level_runs,
                              split_top_fused)
from .instances import check_spacing, instance_geometry, seg_grid, vertebra_instances
from .level_evidence import rows_level_log_probs, transitional_as_neighbours
from .postprocessing import DEFAULTS, Postprocessing, candidates
from .quality import assess
from .spine_extent import (CountBound, count_bound, field_of_view_mm, fragments, midline_offsets, off_axis,
                           spine_found, weak_instances)

__all__ = ["NumberingResult", "OrderedInstances", "order_instances", "ordered_instances", "sacrum_top",
           "decode_instances", "number_vertebrae", "ARGMAX_NOTE", "argmax_numbering"]


#: a last instance with less field of view than this below it may be the sacrum's first segment (sacrum_top): the
#: sacrum anchor finds the sacrum by its alae below the last instance, and a lumbar scan cut within a vertebra's
#: height below L5 shows none
SACRUM_VIEW_MM = 10.0
#: double_run_ratio reads an instance's volume against the median of at least this many neighbours (of up to
#: instance_repair.NEIGHBOURS on each side): beside fewer, one or two vertebrae's sizes decide (a 3-vertebra crop)
DOUBLE_RUN_MIN_NEIGHBOURS = 3


@dataclass
class NumberingResult:
    """Output of :func:`number_vertebrae` and :func:`argmax_numbering`."""

    labels: np.ndarray  # uint8 training labels
    instances: List[dict]  # head -> foot
    notes: List[str]
    report: dict = field(default_factory=dict)  # what the numbering rests on (<case>.json "numbering")
    quality: dict = field(default_factory=dict)  # quality.assess (<case>.json "quality")


def _check_axis(superior_axis, superior_sign) -> Tuple[int, int]:
    if superior_axis not in (0, 1, 2):
        raise ValueError(f"superior_axis must be 0, 1 or 2, got {superior_axis!r}")
    if superior_sign not in (1, -1):
        raise ValueError(f"superior_sign must be +1 or -1, got {superior_sign!r}")
    return int(superior_axis), int(superior_sign)


def order_instances(centres_mm, superior_axis: int, superior_sign: int = 1) -> np.ndarray:
    """Indices that sort instance centres head first: by ``superior_sign * centre[superior_axis]``,
    descending (``superior_sign=+1``: the index increases towards the head)."""
    axis, sign = _check_axis(superior_axis, superior_sign)
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    return np.argsort(-sign * centres[:, axis], kind="stable")


@dataclass
class OrderedInstances:
    """Steps 1-3 of the numbering (what the decoder's parameters do not change), head to foot."""

    instance_map: np.ndarray  # int32 ids, 0 background
    ids: np.ndarray  # (K,) instance ids, head first
    centres: np.ndarray  # (K, 3) mm
    volumes: np.ndarray  # (K,) mm3
    log_probs: np.ndarray  # (K, 26) level log-probabilities
    majority_label: Dict[int, int]  # id -> voxel-wise majority training label
    notes: List[str] = field(default_factory=list)
    coarse_log_probs: Optional[np.ndarray] = None  # (K, 26) from the coarse whole-field stage, when it ran
    anchors: List[Anchor] = field(default_factory=list)
    anchors_looked_for: bool = False  # whether the image anchors could be looked for (an image was given)
    on_border: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (K,) cut by the head-foot border
    count: Optional[CountBound] = None
    spine_found: bool = True
    # instance_map's grid (mm per axis) and head-foot axis, for an instance the decoded sequence gives two levels
    # (cut in two after decoding; spacing None: never cut)
    spacing: Optional[np.ndarray] = None
    si_axis: int = 0
    si_sign: int = 1  # +1: the head lies towards higher indices of si_axis
    thoracic_pitch: bool = False  # the CT's discs, evenly spaced at most ct_discs.MAX_PITCH_MM apart, were used
    two_runs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (K,) levels run in order


def _majority(instance_map: np.ndarray, values: np.ndarray) -> Dict[int, int]:
    """{instance id: its most frequent value of ``values`` (small non-negative ints)}."""
    width = int(values.max(initial=0)) + 1
    counts = np.bincount((instance_map.astype(np.int64) * width + values).ravel(),
                         minlength=(int(instance_map.max(initial=0)) + 1) * width).reshape(-1, width)
    return {int(i): int(counts[i].argmax()) for i in np.flatnonzero(counts[1:].sum(axis=1)) + 1}


def _select(instance_map: np.ndarray, keep_ids) -> np.ndarray:
    return np.where(np.isin(instance_map, np.asarray(keep_ids)), instance_map, 0)


def _kept(keep: np.ndarray, instance_map: np.ndarray, ids, centres, volumes):
    """The map and the per-instance arrays with only the instances where ``keep`` (a mask over ``ids``)."""
    return _select(instance_map, ids[keep]), ids[keep], centres[keep], volumes[keep]


def _on_border(instance_map: np.ndarray, ids: np.ndarray, axis: int) -> np.ndarray:
    """Per id, whether the instance touches the first or last slice along the head-foot ``axis``."""
    edges = np.moveaxis(instance_map, axis, 0)
    return np.isin(ids, np.concatenate([np.unique(edges[0]), np.unique(edges[-1])]))


def ordered_instances(seg_probs, spacing, superior_axis: int, superior_sign: int = 1, id_probs=None,
                      params: Postprocessing = DEFAULTS, *, coarse_probs=None, hu=None,
                      lateral_axis: Optional[int] = None, ct: Optional[InputCT] = None) -> OrderedInstances:
    """Steps 1-3 (module docstring) with the instance parameters of ``params``; arguments as
    :func:`number_vertebrae`."""
    probs = _grid(seg_probs, id_probs)
    sp = check_spacing(spacing)
    axis, sign = _check_axis(superior_axis, superior_sign)
    coarse_probs = probs.coarse if coarse_probs is None else coarse_levels(coarse_probs)
    found = vertebra_instances(probs, sp, params)
    # per foreground voxel (instance voxels are foreground voxels, before and after the repair)
    majority = np.zeros(int(found.instance_map.max(initial=0)) + 1, dtype=np.int64)
    for i, label in found.majority_label.items():
        majority[i] = label
    voxel_majority = majority[found.instance_map.ravel()[probs.index]]
    instance_map, cut = split_at_discs(found.instance_map, probs.index, probs.boundary, sp,
                                       params.disc_split_threshold, params.disc_split_min_part)
    instance_map, repaired = repair_instances(instance_map, sp, axis, params)
    notes = list(found.notes) + cut + repaired
    at = instance_map.ravel()[probs.index]
    weak = weak_instances(at, 1 - probs.foreground.ravel()[probs.index].astype(np.float32),
                          params.instance_min_foreground)
    if weak:
        instance_map = np.where(np.isin(instance_map, weak), 0, instance_map)
        notes.append(f"dropped {len(weak)} instance(s) whose mean foreground probability is below "
                     f"{params.instance_min_foreground:g}: not vertebrae")
    ids, centres, volumes = instance_geometry(instance_map, sp)
    midline = None if hu is None or lateral_axis is None else midline_offsets(hu, centres, sp, int(lateral_axis))
    far = off_axis(centres, volumes, axis, params.max_off_axis_mm, midline)
    if far.any():
        instance_map, ids, centres, volumes = _kept(~far, instance_map, ids, centres, volumes)
        notes.append(f"dropped {int(far.sum())} instance(s) more than {params.max_off_axis_mm:g} mm from the "
                     "spine's axis in the axial plane: not vertebrae (iliac wings, shoulder blades, ribs)")
    instance_map, side_by_side = merge_side_by_side(instance_map, ids, centres, volumes, sp, axis,
                                                    params.merge_overlap_fraction)
    if side_by_side:
        notes += side_by_side
        ids, centres, volumes = instance_geometry(instance_map, sp)
    border = _on_border(instance_map, ids, axis)
    instance_map, absorbed = absorb_pieces(instance_map, ids, centres, volumes, border, axis,
                                           params.merge_piece_fraction)
    if absorbed:
        notes += absorbed
        ids, centres, volumes = instance_geometry(instance_map, sp)
        border = _on_border(instance_map, ids, axis)
    evidence = probs.id if probs.id is not None else probs.seg
    runs = []
    if params.level_run_height_ratio > 0:  # the voxels' levels only when asked for: millions of rows on a 1 mm grid
        instance_map, runs = split_level_runs(instance_map, probs.index, np.argmax(evidence, axis=1) + 1, sp, axis,
                                              sign, params.level_run_height_ratio)
    instance_map, fused = split_fused_instances(instance_map, sp, axis, params.split_height_ratio,
                                                params.split_volume_ratio)
    instance_map, at_discs, reading = cut_at_ct_discs(instance_map, sp, axis, ct, params.ct_disc_min_score,
                                                      params.disc_split_min_part)
    instance_map, top = split_top_fused(instance_map, sp, axis, sign, params.top_fused_ratio)
    cuts = runs + fused + at_discs + top  # these steps read only the map: its geometry once, after all of them
    if cuts:
        notes += cuts
        ids, centres, volumes = instance_geometry(instance_map, sp)
        border = _on_border(instance_map, ids, axis)
    small = fragments(volumes, border, params.min_relative_volume)
    if small.any():
        notes.append(f"dropped {int(small.sum())} piece(s) of {', '.join(f'{v / 1000:.1f}' for v in volumes[small])} "
                     f"ml, below {params.min_relative_volume:g} x the median of the spine's instances "
                     f"({np.median(volumes) / 1000:.1f} ml): not vertebrae")
        instance_map, ids, centres, volumes = _kept(~small, instance_map, ids, centres, volumes)
    empty = OrderedInstances(np.zeros(instance_map.shape, np.int32), np.zeros(0, np.int64), np.zeros((0, 3)),
                             np.zeros(0), np.zeros((0, NUM_LEVELS)), {}, notes)
    if len(ids) and not spine_found(volumes, params.spine_min_volume_ml):
        empty.notes.append(f"spine not found: {volumes.sum() / 1000:.1f} ml of vertebra predicted (less than "
                           f"{params.spine_min_volume_ml:g} ml); nothing labelled")
        empty.spine_found = False
        return empty
    bound = count_bound(volumes, field_of_view_mm(instance_map.shape, sp, axis), params.min_pitch_fraction,
                        NUM_LEVELS)
    if bound.exceeded:  # the largest are kept: false positives and fragments are small
        dropped = bound.found - bound.max_count
        why = f"only {NUM_LEVELS} levels exist" if bound.max_count == NUM_LEVELS else (
            f"a field of view of {bound.extent_mm:.0f} mm along the spine holds at most {bound.max_count} vertebrae")
        notes.append(f"{dropped} smallest of {bound.found} instances dropped: {why}")
        instance_map, ids, centres, volumes = _kept(bound.keep, instance_map, ids, centres, volumes)
    if not len(ids):
        empty.spine_found = False
        empty.notes += [] if "no vertebra found" in empty.notes else ["no vertebra found"]
        return empty
    order = order_instances(centres, axis, sign)
    ids, centres, volumes = ids[order], centres[order], volumes[order]
    at = instance_map.ravel()[probs.index]
    per_instance = rows_level_log_probs(evidence, at)
    log_probs = np.stack([per_instance[int(i)] for i in ids])
    coarse = None
    if coarse_probs is not None:  # read at the instances' voxels only
        inside = np.flatnonzero(at)
        rows = at_fine_voxels(coarse_probs, probs.shape, probs.index[inside])
        per_instance = rows_level_log_probs(rows, at[inside])
        coarse = np.stack([per_instance[int(i)] for i in ids])
    anchors, anchor_notes = find_anchors(hu, instance_map, ids, sp, axis, sign, params)
    return OrderedInstances(instance_map, ids, centres, volumes, log_probs, _majority(at, voxel_majority),
                            notes + anchor_notes, coarse, anchors, hu is not None, _on_border(instance_map, ids, axis),
                            bound, spacing=sp, si_axis=axis, si_sign=sign, thoracic_pitch=bool(reading.get("used")),
                            two_runs=_two_runs(instance_map, ids, volumes, probs.index, evidence, sp, axis, sign,
                                               params.double_run_ratio))


def _two_runs(instance_map, ids, volumes, index, evidence, spacing, axis: int, sign: int, ratio: float) -> np.ndarray:
    """Per ordered instance: whether its voxels' levels (the argmax of ``evidence``, rows of the foreground voxels
    ``index``) run in the spine's order, read where it is at least the smallest positive ``double_run_ratio`` the
    search may try (or ``ratio``) x the median volume of its neighbours, of :data:`DOUBLE_RUN_MIN_NEIGHBOURS` or
    more: the decoder applies its own ratio, and a search reuses these instances for every decoder value."""
    floor = min([v for v in (*candidates("double_run_ratio"), ratio) if v > 0], default=0.0)
    k = np.arange(len(volumes))
    counted = np.minimum(k, NEIGHBOURS) + np.minimum(len(volumes) - 1 - k, NEIGHBOURS) >= DOUBLE_RUN_MIN_NEIGHBOURS
    big = _double(volumes, floor) & counted
    if not big.any():
        return big
    levels = np.argmax(evidence, axis=1) + 1  # only here: millions of rows on a 1 mm grid
    big[big] = ordered_level_runs(instance_map, ids[big], index, levels, spacing, axis, sign)
    return big


def _evidence(found: OrderedInstances, params: Postprocessing) -> np.ndarray:
    """The decoder's per-instance evidence: the fine log-probabilities plus ``coarse_level_weight`` x the coarse
    stage's (its T13 and L6 those beside them with ``coarse_transitional``; renormalised, so the decoder's confidence
    stays a posterior)."""
    if found.coarse_log_probs is None or params.coarse_level_weight <= 0:
        return found.log_probs
    coarse = found.coarse_log_probs
    if params.coarse_transitional > 0:
        coarse = transitional_as_neighbours(coarse)
    combined = found.log_probs + params.coarse_level_weight * coarse
    return combined - np.logaddexp.reduce(combined, axis=1, keepdims=True)


def _sequence(levels) -> str:
    return f"{L.ANATOMICAL_ORDER[levels[0]]}-{L.ANATOMICAL_ORDER[levels[-1]]}" if len(levels) else "-"


def _grid(seg_probs, id_probs=None) -> GridProbabilities:
    """Full arrays checked, then reduced; a GridProbabilities as it is."""
    if isinstance(seg_probs, GridProbabilities):
        return seg_grid(as_grid_probabilities(seg_probs, id_probs))
    seg = check_probabilities(seg_probs, L.NUM_TRAINING_LABELS, "seg_probs")
    if id_probs is not None:
        id_probs = check_probabilities(id_probs, NUM_LEVELS, "id_probs")
        if id_probs.shape[1:] != seg.shape[1:]:
            raise ValueError(f"id_probs spatial shape {id_probs.shape[1:]} differs from seg_probs' {seg.shape[1:]}")
    return as_grid_probabilities(seg, id_probs)


def _droppable(volumes: np.ndarray, max_fraction: float) -> Tuple[bool, bool]:
    """Whether the first and the last instance are small enough beside the others (below ``max_fraction`` x their
    median volume) to be left out as not a vertebra: one the network segmented whole stays, even where its level
    evidence fits nowhere (verse014 blurred: an instance of two fused vertebrae, 104 ml)."""
    if len(volumes) < 2:
        return False, False
    return (bool(volumes[0] < max_fraction * np.median(volumes[1:])),
            bool(volumes[-1] < max_fraction * np.median(volumes[:-1])))


def _double(volumes: np.ndarray, ratio: float) -> np.ndarray:
    """Which instances may hold two vertebrae: at least ``ratio`` x the median volume of their neighbours (two on
    each side); none when ``ratio`` is 0."""
    volumes = np.asarray(volumes, dtype=np.float64)
    if ratio <= 0:
        return np.zeros(len(volumes), bool)
    return np.array([v >= ratio * neighbour_median(volumes, (k, k)) for k, v in enumerate(volumes)], bool)


def _two_levels(decoding, double: np.ndarray, volumes: np.ndarray, ratio: float) -> Dict[int, Tuple[int, int]]:
    """{position among the numbered instances: (level of its head half, level of its foot half)} for each instance
    the decoded sequence gives two levels: one level skipped beside it, where it may hold two vertebrae
    (``double``, over the numbered instances; the larger of the two when both may) and is ``ratio`` times the median
    volume of all of them (beside pieces, as on the chest series, a single vertebra is large against its
    neighbours)."""
    out: Dict[int, Tuple[int, int]] = {}
    path = decoding.levels
    double = double & (volumes >= ratio * np.median(volumes))
    for i, k in decoding.skips:
        if k != 1 or not (double[i] or double[i + 1]):
            continue
        missing = next(s for s in range(path[i] + 1, path[i + 1]) if L.ANATOMICAL_ORDER[s] not in ("T13", "L6"))
        take = i if double[i] and (not double[i + 1] or volumes[i] >= volumes[i + 1]) else i + 1
        if take not in out:  # one instance holds two vertebrae at most
            out[take] = (int(path[i]), missing) if take == i else (missing, int(path[i + 1]))
    return out


def _cut_two_level_instances(found: OrderedInstances, kept: np.ndarray, two: Dict[int, Tuple[int, int]]):
    """(instance map, [(instance id, level, centre mm, volume mm3, position among the numbered)] head to foot): the
    numbered instances, each of ``two`` cut in two halves along its own head-foot direction."""
    if not two:
        return found.instance_map, [(int(found.ids[n]), None, found.centres[n], float(found.volumes[n]), k)
                                    for k, n in enumerate(kept)]
    instance_map = found.instance_map.copy()
    boxes = ndimage.find_objects(instance_map)  # one pass over the grid; each cut and its halves stay in their box
    rows = []
    for k, n in enumerate(kept):
        i = int(found.ids[n])
        if k not in two:
            rows.append((i, None, found.centres[n], float(found.volumes[n]), k))
            continue
        box = boxes[i - 1]
        for part, level in zip(cut_in_two(instance_map, i, box, found.spacing, found.si_axis, found.si_sign), two[k]):
            voxels = np.argwhere(instance_map[box] == part) + [b.start for b in box]
            rows.append((part, level, voxels.mean(axis=0) * found.spacing, len(voxels) * float(np.prod(found.spacing)),
                         k))
    return instance_map, rows


def _room_below_mm(found: OrderedInstances, position: int) -> float:
    """How far (mm) the field of view reaches below the foot-most voxel of the instance at ``position``."""
    i = int(found.ids[position])
    rows = ndimage.find_objects(found.instance_map, max_label=i)[i - 1][found.si_axis]
    below = rows.start if found.si_sign > 0 else found.instance_map.shape[found.si_axis] - rows.stop
    return float(below * found.spacing[found.si_axis])


def sacrum_top(decoding: Decoding, found: OrderedInstances, params: Postprocessing = DEFAULTS) -> bool:
    """Whether the last numbered instance is the sacrum's first segment rather than the L6 it was named: the field
    of view ends within :data:`SACRUM_VIEW_MM` below it (the segments fused to it are out of view, and so is the
    bone the sacrum anchor looks for) and no sacrum anchor was found. A network trained without a sacrum label
    names a cut S1 below L5 "L6" (verse014), and a sacrum in view is far more common than a transitional L6
    (``transitional_prior``); an L6 with the sacrum seen below it stays."""
    if params.cut_l6_is_sacrum <= 0 or len(decoding.levels) < 2 or L.ANATOMICAL_ORDER[decoding.levels[-1]] != "L6":
        return False
    if found.spacing is None or any(a.kind == "sacrum" for a in found.anchors):
        return False
    return _room_below_mm(found, len(found.ids) - 1 - decoding.dropped[1]) <= SACRUM_VIEW_MM


def _without_last(decoding: Decoding) -> Decoding:
    """``decoding`` with its last numbered instance left out (one more dropped at the foot end; the second-best
    labelling stays the one the decoder compared)."""
    n = len(decoding.levels) - 1
    return replace(decoding, levels=decoding.levels[:n], confidence=decoding.confidence[:n],
                   skips=[(i, k) for i, k in decoding.skips if i + 1 < n],
                   dropped=(decoding.dropped[0], decoding.dropped[1] + 1))


def _join_records(record: dict, piece: dict) -> None:
    """``record`` becomes the vertebra of itself and ``piece`` (two pieces the decoder gave one level): volumes
    summed; centre and evidence (the log of the mean level probabilities over its voxels) of the union; the lower
    confidence; on the border when either is."""
    a, b = record["volume_mm3"], piece["volume_mm3"]
    w = a / max(a + b, 1e-9)
    evidence = np.logaddexp(np.log(w) + np.asarray(record["log_probs"]), np.log1p(-w) + np.asarray(piece["log_probs"]))
    record.update(
        confidence=min(record["confidence"], piece["confidence"]),
        log_probs=[float(v) for v in evidence],
        centre_mm=[float(w * x + (1 - w) * y) for x, y in zip(record["centre_mm"], piece["centre_mm"])],
        volume_mm3=a + b,
        on_border=record["on_border"] or piece["on_border"],
    )


def decode_instances(found: OrderedInstances, params: Postprocessing = DEFAULTS) -> NumberingResult:
    """Steps 4-5: the decoder (its parameters from ``params``) and the labelled map, records, notes, report and
    quality flag."""
    notes = list(found.notes)
    if found.thoracic_pitch and params.ct_disc_rib_bearing_strength > params.anchor_rib_bearing_strength:
        params = replace(params, anchor_rib_bearing_strength=params.ct_disc_rib_bearing_strength)
        notes.append(f"the CT's discs lie a thoracic pitch apart: ribs count as anchors "
                     f"(ct_disc_rib_bearing_strength {params.ct_disc_rib_bearing_strength:g})")
    count = None if found.count is None else {**found.count.report(), "exceeded": found.count.exceeded}
    if len(found.ids) == 0:
        report = {"spine_found": found.spine_found, "anchors": [], "count_bound": count}
        return NumberingResult(np.zeros(found.instance_map.shape, dtype=np.uint8), [], notes, report,
                               assess([], spine_found=False, params=params))
    ids, centres = found.ids, found.centres
    log_probs = _evidence(found, params)
    unary = anchor_log_prior(found.anchors, len(ids), params)
    double = _double(found.volumes, params.double_volume_ratio)
    if found.two_runs.size and params.double_run_ratio > 0:
        double |= found.two_runs & _double(found.volumes, params.double_run_ratio)
    steps = np.diff(centres, axis=0)
    gaps = np.linalg.norm(steps, axis=1)
    # a piece the field of view cuts may be a process of the vertebra beyond it beside the next: only its distance
    cut = np.asarray(found.on_border, bool)
    heights = np.where(cut[:-1] | cut[1:], gaps, np.abs(steps[:, found.si_axis]))
    decoding = decode_levels(log_probs, gaps, params, unary, _droppable(found.volumes, params.end_drop_max_fraction),
                             double, heights)
    ends = decoding.dropped  # left out by the decoder, for the notes
    if sacrum_top(decoding, found, params):
        decoding = _without_last(decoding)
        n = len(ids) - decoding.dropped[1]
        notes.append(f"the foot-most instance ({found.volumes[n] / 1000:.1f} ml), named L6, left out as the sacrum's "
                     f"first segment: the field of view ends within {SACRUM_VIEW_MM:g} mm below it and no sacrum was "
                     "found (cut_l6_is_sacrum)")
    head, foot = decoding.dropped
    kept = np.arange(head, len(ids) - foot)  # positions of the numbered instances among the ordered ones
    two = _two_levels(decoding, double[kept], found.volumes[kept], params.double_volume_ratio) \
        if params.double_split > 0 and found.spacing is not None else {}
    instance_map, rows = _cut_two_level_instances(found, kept, two)
    lut = np.zeros(int(instance_map.max()) + 1, dtype=np.uint8)
    instances, renumbered = [], []
    record_of: Dict[int, List[int]] = {}  # position among the numbered -> its records (two for a cut one)
    for i, level, centre, volume, k in rows:
        n = kept[k]
        label = int(decoding.levels[k] if level is None else level) + 1
        lut[i] = label
        code = L.CODE_OF_TRAINING_LABEL[label]
        majority = found.majority_label[int(ids[n])]
        if majority != label:
            renumbered.append(f"{L.ANATOMICAL_ORDER[majority - 1]} -> {L.name(code)}")
        record = {
            "instance_id": len(instances) + 1,
            "label": label,
            "code": code,
            "name": L.name(code),
            "confidence": float(decoding.confidence[k]),
            "log_probs": [float(v) for v in log_probs[n]],
            "centre_mm": [float(v) for v in centre],
            "volume_mm3": volume,
            "on_border": bool(found.on_border[n]),
        }
        if instances and instances[-1]["label"] == label:  # pieces of one vertebra (shared_level_prior)
            _join_records(instances[-1], record)
        else:
            instances.append(record)
        record_of.setdefault(k, []).append(len(instances) - 1)
    for k, (upper, lower) in sorted(two.items()):
        notes.append(f"cut an instance of {found.volumes[kept[k]] / 1000:.1f} ml in two halves along the spine, "
                     f"numbered {L.ANATOMICAL_ORDER[upper]} and {L.ANATOMICAL_ORDER[lower]}: the sequence skips a "
                     "level beside it, and it is large enough to hold two vertebrae")
    for n, end in [(0, "head-most")] * ends[0] + [(len(ids) - 1, "foot-most")] * ends[1]:
        notes.append(f"the {end} instance ({found.volumes[n] / 1000:.1f} ml, its own evidence says "
                     f"{L.ANATOMICAL_ORDER[int(log_probs[n].argmax())]}) left out: it does not fit the sequence of "
                     f"the others by more than end_drop_cost = {params.end_drop_cost:g} nats, so not a vertebra")
    notes += decoding.notes
    if renumbered:
        notes.append(f"numbered against the voxel-wise majority level (head to foot): {'; '.join(renumbered)}")
    anchors, thoracic = [], []
    for anchor in found.anchors:
        if anchor.instance not in kept:  # an anchor on an instance left out: it said nothing of the others
            notes.append(f"anchor {anchor.kind} at an instance left out as not a vertebra")
            continue
        # on an instance cut in two: the skull and the dens are its head half's, the last rib and the sacrum its foot's
        parts = record_of[anchor.instance - head]
        name = instances[parts[0] if anchor.kind in ("skull", "dens") else parts[-1]]["name"]
        anchors.append({"kind": anchor.kind, "vertebra": name, "allows": list(anchor.levels),
                        "agrees": name in anchor.levels, "strength": anchor_strength(anchor.kind, params),
                        **anchor.measures})
        if anchor.kind == "rib_bearing":  # one note for the whole column of them
            thoracic.append(name)
            continue
        notes.append(f"anchor {anchor.kind} at the vertebra numbered {name} (it says {' or '.join(anchor.levels)})")
    ribs_count = anchor_strength("rib_bearing", params) > 0
    if thoracic:
        notes.append(f"ribs on {len(thoracic)} vertebra(e), numbered {', '.join(thoracic)}: each is thoracic (T1-T13)"
                     + ("" if ribs_count else "; not used (anchor_rib_bearing_strength 0)"))
    if not {a["kind"] for a in anchors} & set(LEVEL_ANCHORS):
        notes.append("no anatomical anchor that fixes a level in view (skull base, dens, last rib, sacrum)")
    if decoding.margin < params.unsure_margin:
        notes.append(f"numbering unsure: {_sequence(decoding.levels)} is only {np.exp(decoding.margin):.1f}x as "
                     f"likely as {_sequence(decoding.second)} (margin {decoding.margin:.2f} nats)")
    report = {
        "spine_found": True,
        "anchors": anchors,
        "coarse_evidence": found.coarse_log_probs is not None and params.coarse_level_weight > 0,
        "margin_nats": None if not np.isfinite(decoding.margin) else round(float(decoding.margin), 3),
        "second_best": None if decoding.second is None else [L.ANATOMICAL_ORDER[s] for s in decoding.second],
        "path_probability": round(decoding.path_probability, 4),
        "left_out": {"head": head, "foot": foot},
        "count_bound": count,
    }
    quality = assess(instances, margin=decoding.margin, count=count,
                     anchors=[a["kind"] for a in anchors if a["kind"] != "rib_bearing" or ribs_count],
                     params=params)
    return NumberingResult(lut[instance_map], instances, notes, report, quality)


def number_vertebrae(seg_probs, spacing, superior_axis: int, superior_sign: int = 1, id_probs=None, *,
                     params: Postprocessing = DEFAULTS, coarse_probs=None, hu=None,
                     lateral_axis: Optional[int] = None, ct: Optional[InputCT] = None) -> NumberingResult:
    """Number the vertebrae of one case at the model's spacing.

    Args:
        seg_probs: (27, X, Y, Z) segmentation softmax, channel c = training label c (float16 or float32), or a
            ``GridProbabilities`` (what the predictor keeps; it carries its identification probabilities).
        spacing: mm per array axis.
        superior_axis, superior_sign: the array axis whose index grows towards the head (sign +1) or the
            feet (sign -1).
        id_probs: optional (26, X, Y, Z) identification softmax (channel k = ``ANATOMICAL_ORDER[k]``); None =
            level evidence from the foreground channels of ``seg_probs`` (ablation, nnU-Net baseline).
        params: the post-processing parameters (instances and decoder).
        coarse_probs: optional (26, *grid) level probabilities of the coarse whole-field stage (``coarse_stage``)
            on its own grid over the same box (or on this one), read at the instances' voxels by linear
            interpolation and weighed in by ``params.coarse_level_weight``; default: a ``GridProbabilities``' own
            (``coarse``).
        hu: optional CT (HU) on this grid, for the anatomical anchors (``model_grid_hu``); None = the dens only.
        lateral_axis: the array axis closest to left-right; with ``hu``, the spine's axis is sought near the body's
            midline (``spine_extent.midline_offsets``).
        ct: optional input CT seen from this grid (``ct_discs.InputCT``): instances are cut and joined at the discs
            it shows (``params.ct_disc_min_score``).

    Returns:
        NumberingResult: ``labels`` (uint8 training labels), ``instances`` head to foot (instance_id 1..K in
        that order, label, code, name, confidence, log_probs (the decoder's evidence), centre_mm, volume_mm3,
        on_border), ``notes``, ``report`` and ``quality``.
    """
    found = ordered_instances(seg_probs, spacing, superior_axis, superior_sign, id_probs, params,
                              coarse_probs=coarse_probs, hu=hu, lateral_axis=lateral_axis, ct=ct)
    return decode_instances(found, params)


# --- baseline without the decoder ---------------------------------------------------------------------------

#: note of :func:`argmax_numbering`, so reports say which numbering made their labels
ARGMAX_NOTE = "per-voxel argmax, no numbering decoder"


def argmax_numbering(seg_probs) -> NumberingResult:
    """Numbering read off the per-voxel argmax of a (27, X, Y, Z) segmentation softmax, for ablations and the
    nnU-Net baseline: no instances, no fragment cleaning, no sequence decoding, so a level the argmax gives to two
    vertebrae stays duplicated and a vertebra whose argmax flips half-way keeps two labels.

    Returns a :class:`NumberingResult`: ``labels`` = the argmax (uint8 training labels); ``instances`` = one record
    per training label present, head to foot by anatomical order (instance_id, label, code, name, confidence,
    voxels), where confidence is the mean over that label's voxels of their winning probability (the argmax
    label's own probability; the decoder's confidence is a posterior marginal instead, so the two are not
    comparable); ``notes`` = [:data:`ARGMAX_NOTE`]."""
    probs = _grid(seg_probs)
    label_map = probs.argmax.copy()
    at = label_map.ravel()[probs.index]  # the foreground voxels' labels
    voxels = np.bincount(at, minlength=L.NUM_TRAINING_LABELS)
    winning = np.bincount(at, weights=probs.winning().astype(np.float64), minlength=L.NUM_TRAINING_LABELS)
    instances = []
    for label in np.flatnonzero(voxels[1:]) + 1:  # training label order = anatomical order = head to foot
        code = L.CODE_OF_TRAINING_LABEL[int(label)]
        instances.append({"instance_id": len(instances) + 1, "label": int(label), "code": code, "name": L.name(code),
                          "confidence": float(winning[label] / voxels[label]), "voxels": int(voxels[label])})
    quality = assess(instances, spine_found=bool(instances), anchors_looked_for=False)
    return NumberingResult(label_map, instances, [ARGMAX_NOTE], {"spine_found": bool(instances)}, quality)
