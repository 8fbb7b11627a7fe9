"""Anatomical anchors of the numbering, found in the image itself (pure numpy / cc3d): what a radiologist counts
from when a vertebra's own appearance is ambiguous (VerSe's winners and VERIDAH decode with such anchors).

Bone is every voxel at or above the case's bone threshold (:func:`bone_threshold`: ``anchor_bone_hu``, or
:data:`THIN_BONE_FRACTION` of the predicted vertebrae's own median HU where that is lower, as in an osteoporotic
patient whose ribs are as faint as his vertebrae, but never down into soft tissue or the scan's noise) outside the
predicted vertebrae and the one-voxel rim around them (the partial-volume halo of their cortex, which would join
every bone to the spine and so to every other bone);
its 26-connected components are ribs, sacrum and pelvis, skull, sternum and so on (no label needed, so this works
on any dataset). Distances are
taken in the axial plane from an instance's *axis* (the head-foot line through its centroid), heights along the
head-foot array axis. With the instances ordered head to foot (0 = the head-most):

* ``skull``: the first instance is C1 when the bone within :data:`NEAR_MM` above it, within :data:`AXIS_RADIUS_MM`
  of its axis, belongs to a component of at least ``skull_min_volume_ml`` (the skull base) that lies mostly above
  the instance (:data:`SKULL_MIN_ABOVE_SHARE`) and holds :data:`SKULL_MIN_VOLUME_RATIO` times the instance's volume.
  Without these two tests, vertebrae the network left out above the first instance took the skull's place: their rib
  cage hanging down beside the first instance (phantoms starting at T9 or T11), or whole lumbar vertebrae (verse014
  without L1: "skull" at L2).
* ``dens``: instance k+1 is C2 when it rises into the middle of instance k (k = 0 or 1, not cut by the field of
  view): k+1 reaches above k's centroid, at least :data:`DENS_MIN_ML` of it lies within :data:`DENS_RADIUS_MM` of
  k's axis and :data:`DENS_BAND_MM` of k's centroid height, where k itself is hollow (C1 is a ring around the
  dens).
* ``last_rib``: the last rib-bearing instance is T12 (or T13) when a whole instance (not cut by the field of view: a
  cut one may have lost its ribs with the rest of it) without ribs follows it. An instance bears ribs when a bone
  component comes within :data:`CONTACT_MM` of it and, counting only its voxels at the instance's height (within
  :data:`RIB_BAND_MM` of its top and bottom), is shaped like a rib there: a head beside the body (within
  :data:`RIB_HEAD_MM` of the axis, to the side rather than in front or behind: a costovertebral joint; at the
  instance's own heights, within :data:`OWN_HEAD_MM`, so that the twelfth rib makes L1 no rib-bearing vertebra), from
  which it runs at least :data:`RIB_MIN_LENGTH_MM`, out beyond the transverse processes (:data:`RIB_MIN_LATERAL_MM` to
  the side) and ``rib_min_reach_mm`` from the axis. Left-right is the in-plane axis across which the vertebrae are
  mirror-symmetric (:func:`_left_right`; no orientation needed). Whole components, as before, let a contrast-filled
  aorta or cava with the kidney behind it, touching the body and reaching far above or below, count as a rib of every
  vertebra it passes; at the vertebra's height an aorta or a bowel loop lies in front of the body, a kidney touches a
  long lumbar transverse process far from the body, and the unlabelled tips of a vertebra's processes are short. The
  skull and pelvis components do not count.
* ``rib_bearing``: every instance that bears a rib (as above; cut by the field of view or not) is thoracic, T1 to
  T13: only thoracic vertebrae articulate with ribs (a cervical rib at C7 or a lumbar rib at L1 is a rare
  variant). It names no level, so it is no anchor of the sequence
  for the quality flag (:data:`LEVEL_ANCHORS`), but it keeps a column of rib-bearing vertebrae from being named a
  level too high or too low: on the real chest series the network's evidence put the first of 12 rib-bearing
  instances at C7. Its strength is 0 by default: on the network's instances of unseen-style phantoms bone beside
  lumbar vertebrae passes for ribs (speckle of a miscalibrated scanner, metal streaks, an iliac wing where the field
  of view ends). Where the cervicothoracic junction is steeply tilted, C7 and T1 share heights and C7 can take the
  first rib (one phantom of the tests' 11 with thoracic vertebrae: heights along the array axis, not the spine's
  own).
* ``sacrum``: the last instance is L5 (or L6) when the bone within :data:`NEAR_MM` below it, near its axis, belongs
  to a component of at least ``pelvis_min_volume_ml`` reaching ``rib_min_reach_mm`` from its axis (sacral alae and
  iliac wings).

All of it runs on the model grid read every k-th voxel, so that it is no finer than :data:`ANCHOR_GRID_MM` (a 1 mm
grid: every third voxel; the CPU preset's 3.5 mm grid as it is).

Each anchor is a unary term in the decoder (:func:`anchor_log_prior`): ``-strength`` on every level but the ones it
allows, strength from ``postprocessing`` (``anchor_*_strength``; 0 = off).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cc3d
import numpy as np
from scipy import ndimage

from .. import labels as L
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["Anchor", "ANCHOR_LEVELS", "LEVEL_ANCHORS", "find_anchors", "anchor_log_prior", "anchor_strength",
           "bone_threshold", "noise_sd"]

#: how far above the first / below the last instance the skull base / sacrum is looked for
NEAR_MM = 30.0
#: in-plane radius around an instance's axis that counts as "directly" above or below it
AXIS_RADIUS_MM = 35.0
DENS_RADIUS_MM = 15.0
DENS_BAND_MM = 6.0
DENS_MIN_ML = 0.3
#: the skull base lies above C1 (97-100 % of it on the phantoms; a mandible joined to it would lower that); the ribs of
#: thoracic vertebrae the network left out hang down beside the first instance (30-80 % of such a component below its
#: top on the phantoms)
SKULL_MIN_ABOVE_SHARE = 0.8
#: the skull base in view (skull_min_volume_ml and up) is several times C1 (10-20 ml; 3.3-6.9x on the phantoms, 2.97x
#: on one with real-like rims, whose thin cortex leaves less of the skull base above the threshold);
#: lumbar vertebrae the network left out above the first instance are 1.0-2.0x its size (verse014 and example_ct
#: without their top one or two)
SKULL_MIN_VOLUME_RATIO = 2.5
#: bone this close to an instance touches it (a joint space, a partial-volume rim): at least two voxels
CONTACT_MM = 7.0
#: a rib counts for an instance by its voxels no farther than this above its top or below its bottom (the heads of
#: ribs 2-9 sit at the disc above)
RIB_BAND_MM = 10.0
#: a rib's head lies beside the vertebral body, this close to the axis; a transverse process ends 40-50 mm out
RIB_HEAD_MM = 35.0
#: a rib says its vertebra is thoracic (``rib_bearing``) when its head lies this close to the vertebra's heights: ribs
#: 2-9 sit at the disc above (a few mm beyond the body), the first and the last ones on their own body, the twelfth's
#: a disc and half a body above L1
OWN_HEAD_MM = 4.0
#: a rib runs out beyond the tips of the transverse processes (40-50 mm from the midline) at its vertebra's height;
#: a vessel or bowel loop in front of the body reaches as far, but forwards
RIB_MIN_LATERAL_MM = 50.0
#: in-plane length a rib runs from its head within the band (a vessel's section, a process tip: under 35 mm)
RIB_MIN_LENGTH_MM = 40.0
#: the levels each anchor allows
ANCHOR_LEVELS: Dict[str, Tuple[str, ...]] = {"skull": ("C1",), "dens": ("C2",), "last_rib": ("T12", "T13"),
                                             "sacrum": ("L5", "L6"), "rib_bearing": (*L.THORACIC, "T13")}
#: the anchors that fix a level of the sequence (``rib_bearing`` only says thoracic)
LEVEL_ANCHORS = ("skull", "dens", "last_rib", "sacrum")
#: the finest grid (mm) the anchors are looked for on: they are bones of centimetres, designed and tested on the CPU
#: preset's 3.5 mm grid; on a 1 mm grid the bone components of the whole scan cost 27x the voxels for nothing
ANCHOR_GRID_MM = 3.0
#: thin bone (ribs, the skull base) reads fainter than the vertebral bodies on a coarse grid (partial volume of a
#: 1 mm cortex in 3.5 mm voxels): the threshold follows the vertebrae's median HU times this. With real-like rims
#: (cortex 600-1000 HU) a phantom's twelfth rib peaks at 260-400 HU beside T12, whose median is 163 HU
THIN_BONE_FRACTION = 0.85
#: the bone threshold's lower bounds (bone_threshold): above unenhanced soft tissue (muscle, organs ~40-60 HU) and the
#: parenchyma of most contrast-enhanced organs ...
BONE_FLOOR_HU = 120.0
#: ... and above soft tissue plus NOISE_SDS of the scan's noise: on a seeded phantom with noise SD ~55 HU a threshold
#: of 160 HU let speckle beside L3-L6 pass as ribs
SOFT_TISSUE_HU = 50.0
NOISE_SDS = 3.0
#: the HU range whose neighbour differences measure the noise (noise_sd)
SOFT_TISSUE_RANGE_HU = (-100.0, 150.0)
_CUBE = np.ones((3, 3, 3), bool)
_STRENGTH_FIELD = {"skull": "anchor_skull_strength", "dens": "anchor_dens_strength",
                   "last_rib": "anchor_rib_strength", "sacrum": "anchor_sacrum_strength",
                   "rib_bearing": "anchor_rib_bearing_strength"}


@dataclass
class Anchor:
    """An anchor found: ``instance`` = its position among the ordered instances (0 = head-most)."""

    kind: str
    instance: int
    measures: Dict[str, float] = field(default_factory=dict)

    @property
    def levels(self) -> Tuple[str, ...]:
        return ANCHOR_LEVELS[self.kind]


def anchor_strength(kind: str, params: Postprocessing = DEFAULTS) -> float:
    return float(getattr(params, _STRENGTH_FIELD[kind]))


def anchor_log_prior(anchors: Sequence[Anchor], count: int, params: Postprocessing = DEFAULTS) -> np.ndarray:
    """(count, 26) unary log-prior of the decoder: ``-strength`` on the levels an anchor does not allow."""
    prior = np.zeros((count, len(L.ANATOMICAL_ORDER)))
    for anchor in anchors:
        disallowed = np.array([n not in anchor.levels for n in L.ANATOMICAL_ORDER])
        prior[anchor.instance, disallowed] -= anchor_strength(anchor.kind, params)
    return prior


class _Geometry:
    """Voxel coordinates of the model grid in mm: height along the head-foot axis (growing towards the head) and
    in-plane offsets, for distances from an instance's axis."""

    def __init__(self, shape, spacing, si_axis: int, si_sign: int):
        self.shape, self.spacing = tuple(shape), np.asarray(spacing, dtype=np.float64)
        self.si_axis, self.si_sign = int(si_axis), int(si_sign)
        self.plane = [a for a in range(3) if a != self.si_axis]
        self.voxel_ml = float(np.prod(self.spacing)) / 1000.0

    def height(self, index_si) -> np.ndarray:
        return self.si_sign * np.asarray(index_si, dtype=np.float64) * self.spacing[self.si_axis]

    def offsets(self, points: np.ndarray, centre_vox: np.ndarray) -> np.ndarray:
        """In-plane offsets (mm, along ``self.plane``) of voxel ``points`` (n, 3) from ``centre_vox``."""
        return (points[:, self.plane] - centre_vox[self.plane]) * self.spacing[self.plane]

    def radius(self, points: np.ndarray, centre_vox: np.ndarray) -> np.ndarray:
        """In-plane distance (mm) of voxel ``points`` (n, 3) from the head-foot line through ``centre_vox``."""
        return np.sqrt((self.offsets(points, centre_vox) ** 2).sum(axis=1))


def find_anchors(hu, instance_map, ordered_ids: Sequence[int], spacing, si_axis: int, si_sign: int,
                 params: Postprocessing = DEFAULTS) -> Tuple[List[Anchor], List[str]]:
    """The anchors (module docstring) of instances ``ordered_ids`` (head first) of ``instance_map``; ``hu``: the CT in
    HU on the same grid, or None (then only the dens, which needs no image, is looked for). Returns (anchors,
    notes)."""
    instance_map = np.asarray(instance_map)
    ids = [int(i) for i in ordered_ids]
    if not ids:
        return [], []
    if hu is not None and np.shape(hu) != instance_map.shape:
        raise ValueError(f"hu {np.shape(hu)} is not on the instances' grid {instance_map.shape}")
    instance_map, hu, spacing = _anchor_grid(instance_map, hu, spacing, ids)
    geo = _Geometry(instance_map.shape, spacing, si_axis, si_sign)
    instance_boxes = ndimage.find_objects(instance_map)  # each instance is read inside its box: a 1 mm grid is large
    info = [_instance_info(instance_map, i, instance_boxes[i - 1], geo) for i in ids]
    anchors: List[Anchor] = []
    dens = _dens(instance_map, ids, info, geo)
    anchors += [dens] if dens else []
    if hu is None:
        return anchors, ["anchors: no image on the model grid, only the dens was looked for"]
    hu = np.asarray(hu)
    threshold = bone_threshold(hu, instance_map, params.anchor_bone_hu)
    bone = (hu >= threshold) & ~ndimage.binary_dilation(instance_map > 0, _CUBE)
    components = cc3d.connected_components(bone, connectivity=26).astype(np.int64, copy=False)
    volume_ml = np.bincount(components.ravel()) * geo.voxel_ml
    volume_ml[0] = 0.0
    boxes = ndimage.find_objects(components)
    skull, skull_component = _beyond(components, boxes, volume_ml, info[0], geo, above=True)
    if skull is not None and _skull_base(skull, info[0], geo, params):
        anchors.append(Anchor("skull", 0, skull))
    pelvis, pelvis_component = _beyond(components, boxes, volume_ml, info[-1], geo, above=False)
    if (pelvis is not None and pelvis["volume_ml"] >= params.pelvis_min_volume_ml
            and pelvis["reach_mm"] >= params.rib_min_reach_mm):
        anchors.append(Anchor("sacrum", len(ids) - 1, pelvis))
    excluded = {c for c in (skull_component, pelvis_component) if c}
    lateral = _left_right(info, geo)
    ribs = [_rib_reach(components, boxes, instance_map, i, info[k], geo, excluded, lateral) for k, i in enumerate(ids)]
    bearing = [r >= params.rib_min_reach_mm for r in ribs]
    if any(bearing):
        last = max(k for k, b in enumerate(bearing) if b)
        if last < len(ids) - 1 and not _cut(info[last + 1], geo):
            anchors.append(Anchor("last_rib", last, {"reach_mm": round(ribs[last], 1),
                                                     "rib_bearing": int(sum(bearing))}))
    anchors += [Anchor("rib_bearing", k, {"reach_mm": round(ribs[k], 1)}) for k, b in enumerate(bearing) if b]
    return anchors, []


def noise_sd(hu: np.ndarray) -> float:
    """Robust estimate of the image noise's SD (HU): differences between neighbouring soft-tissue voxels
    (:data:`SOFT_TISSUE_RANGE_HU`) along each axis, whose median absolute deviation x 1.4826 is sqrt(2) SDs for white
    noise (anatomy's edges are the outliers it ignores); 0 when fewer than 100 such pairs exist."""
    hu = np.asarray(hu, dtype=np.float32)
    lo, hi = SOFT_TISSUE_RANGE_HU
    diffs = []
    for axis in range(3):
        moved = np.moveaxis(hu, axis, 0)
        a, b = moved[:-1], moved[1:]
        diffs.append((b - a)[(a > lo) & (a < hi) & (b > lo) & (b < hi)])
    d = np.concatenate(diffs)
    if len(d) < 100:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def bone_threshold(hu: np.ndarray, instance_map: np.ndarray, ceiling: float) -> float:
    """The HU at and above which a voxel is bone for the anchors: ``ceiling`` (``anchor_bone_hu``), or
    :data:`THIN_BONE_FRACTION` x the median HU of the predicted vertebrae (``instance_map > 0``) where that is lower
    (thin, osteoporotic bone: ribs as faint as the vertebrae, fainter still on a coarse grid), but never below
    :data:`BONE_FLOOR_HU` nor :data:`SOFT_TISSUE_HU` + :data:`NOISE_SDS` x the image's noise (:func:`noise_sd`),
    where speckle of soft tissue joins into rib-long chains."""
    inside = np.asarray(hu)[np.asarray(instance_map) > 0]
    if not len(inside):
        return float(ceiling)
    floor = max(BONE_FLOOR_HU, SOFT_TISSUE_HU + NOISE_SDS * noise_sd(hu))
    return float(min(ceiling, max(floor, THIN_BONE_FRACTION * float(np.median(inside)))))


def _anchor_grid(instance_map: np.ndarray, hu, spacing, ids: Sequence[int]):
    """(instance map, hu, spacing) subsampled by whole steps to a grid no finer than :data:`ANCHOR_GRID_MM`, or as
    given when no step fits or an instance would vanish."""
    spacing = np.asarray(spacing, dtype=np.float64)
    step = np.maximum(1, np.floor(ANCHOR_GRID_MM / spacing + 1e-6)).astype(int)
    if (step == 1).all():
        return instance_map, hu, spacing
    view = tuple(slice(None, None, int(k)) for k in step)
    coarse = instance_map[view]
    if not np.isin(ids, coarse).all():
        return instance_map, hu, spacing
    return coarse, None if hu is None else np.asarray(hu)[view], spacing * step


def _instance_info(instance_map: np.ndarray, i: int, box: Tuple[slice, ...], geo: _Geometry) -> dict:
    points = np.argwhere(instance_map[box] == i) + [s.start for s in box]
    heights = geo.height(points[:, geo.si_axis])
    return {"id": i, "centre": points.mean(axis=0), "top": float(heights.max()), "bottom": float(heights.min()),
            "points": points}


def _beyond(components: np.ndarray, boxes: list, volume_ml: np.ndarray, inst: dict, geo: _Geometry, above: bool):
    """(measures, component) of the largest bone component directly above (``above``) or below an instance, or
    (None, 0) when there is none or the field of view ends there. Measures: its volume, its reach from the instance's
    axis and the share of it beyond (above or below) the instance."""
    si = geo.si_axis
    n = geo.shape[si]
    rows = np.arange(n)
    h = geo.height(rows)
    window = (h > inst["top"]) & (h <= inst["top"] + NEAR_MM) if above else \
        (h < inst["bottom"]) & (h >= inst["bottom"] - NEAR_MM)
    rows = rows[window]
    if len(rows) < 2:
        return None, 0
    slab = np.moveaxis(components, si, 0)[rows]
    points = np.argwhere(slab > 0)
    if len(points) == 0:
        return {"volume_ml": 0.0, "reach_mm": 0.0, "beyond_share": 0.0}, 0
    values = slab[tuple(points.T)]
    full = np.insert(np.delete(points, 0, axis=1), si, rows[points[:, 0]], axis=1)  # back to grid axes
    near = geo.radius(full, inst["centre"]) <= AXIS_RADIUS_MM
    if not near.any():
        return {"volume_ml": 0.0, "reach_mm": 0.0, "beyond_share": 0.0}, 0
    chosen = int(max(np.unique(values[near]), key=lambda c: volume_ml[c]))
    box = boxes[chosen - 1]
    points = np.argwhere(components[box] == chosen) + [s.start for s in box]
    heights = geo.height(points[:, si])
    beyond = heights > inst["top"] if above else heights < inst["bottom"]
    return {"volume_ml": round(float(volume_ml[chosen]), 1),
            "reach_mm": round(float(geo.radius(points, inst["centre"]).max()), 1),
            "beyond_share": round(float(beyond.mean()), 2)}, chosen


def _skull_base(measures: dict, first: dict, geo: _Geometry, params: Postprocessing) -> bool:
    """Whether the bone component above the first instance (``_beyond``'s ``measures``) is the skull base: at least
    ``skull_min_volume_ml``, mostly above the instance and several times its volume."""
    first_ml = len(first["points"]) * geo.voxel_ml
    return (measures["volume_ml"] >= params.skull_min_volume_ml
            and measures["beyond_share"] >= SKULL_MIN_ABOVE_SHARE
            and measures["volume_ml"] >= SKULL_MIN_VOLUME_RATIO * first_ml)


def _cut(inst: dict, geo: _Geometry) -> bool:
    """Whether the field of view cuts an instance along the head-foot axis (it lies in the first or last row)."""
    rows = inst["points"][:, geo.si_axis]
    return bool(rows.min() == 0 or rows.max() == geo.shape[geo.si_axis] - 1)


def _left_right(info: List[dict], geo: _Geometry) -> int:
    """Which in-plane axis (0 or 1 of ``geo.plane``) runs left-right: a vertebra is mirror-symmetric across its
    mid-sagittal plane, not across its coronal one (body in front, spinous process behind), so the instances
    mirrored about their centroids along that axis overlap themselves most."""
    overlap = np.zeros(2)
    for inst in info:
        # voxel offsets from the (rounded) centroid in the plane, rows as they are; shifted to index a box
        d = inst["points"][:, geo.plane] - np.rint(inst["centre"][geo.plane]).astype(np.int64)
        rows = inst["points"][:, geo.si_axis] - inst["points"][:, geo.si_axis].min()
        half = np.abs(d).max(axis=0)
        box = np.zeros((rows.max() + 1, *(2 * half + 1)), bool)
        box[rows, d[:, 0] + half[0], d[:, 1] + half[1]] = True
        for a in (0, 1):
            mirrored = d.copy()
            mirrored[:, a] *= -1
            overlap[a] += box[rows, mirrored[:, 0] + half[0], mirrored[:, 1] + half[1]].sum()
    return int(np.argmax(overlap))


def _rib_reach(components: np.ndarray, boxes: list, instance_map: np.ndarray, i: int, inst: dict, geo: _Geometry,
               excluded: set, lateral: int) -> float:
    """How far (mm from the instance's axis) the farthest-reaching rib-shaped bone (module docstring) within
    CONTACT_MM of instance ``i`` whose head lies at the instance's own heights (within :data:`OWN_HEAD_MM` of its top
    and bottom) extends at the instance's height; 0 when none. Not the twelfth rib, whose head lies on T12, for L1,
    which RIB_BAND_MM lets it touch."""
    steps = max(2, int(np.ceil(CONTACT_MM / geo.spacing.min())))
    box = tuple(slice(max(0, int(lo) - steps), int(hi) + steps + 1) for lo, hi in
                zip(inst["points"].min(axis=0), inst["points"].max(axis=0)))
    mask = instance_map[box] == i
    shell = ndimage.binary_dilation(mask, structure=_CUBE, iterations=steps) & ~mask
    touching = components[box][shell]
    touching = set(np.unique(touching[touching > 0]).tolist()) - excluded
    best = 0.0
    for c in touching:
        reach, head_height = _rib_shape_reach(components, c, boxes[c - 1], inst, geo, lateral)
        if inst["bottom"] - OWN_HEAD_MM <= head_height <= inst["top"] + OWN_HEAD_MM:
            best = max(best, reach)
    return best


def _rib_shape_reach(components: np.ndarray, component: int, box: Tuple[slice, ...], inst: dict,
                     geo: _Geometry, lateral: int) -> Tuple[float, float]:
    """(reach (mm), height of the head) of a component's voxels within RIB_BAND_MM of the instance's heights when
    they have a rib's head near the axis and run RIB_MIN_LENGTH_MM from it; (0, nan) otherwise."""
    points = np.argwhere(components[box] == component) + np.array([s.start for s in box])
    h = geo.height(points[:, geo.si_axis])
    points = points[(h >= inst["bottom"] - RIB_BAND_MM) & (h <= inst["top"] + RIB_BAND_MM)]
    if not len(points):
        return 0.0, np.nan
    offsets = np.abs(geo.offsets(points, inst["centre"]))
    radius = np.sqrt((offsets ** 2).sum(axis=1))
    heads = np.flatnonzero((radius <= RIB_HEAD_MM) & (offsets[:, lateral] >= offsets[:, 1 - lateral]))
    if not len(heads):
        return 0.0, np.nan
    head = points[heads[np.argmin(radius[heads])]]
    if offsets[:, lateral].max() < RIB_MIN_LATERAL_MM or geo.radius(points, head).max() < RIB_MIN_LENGTH_MM:
        return 0.0, np.nan
    return float(radius.max()), float(geo.height(head[geo.si_axis]))


def _dens(instance_map: np.ndarray, ids: List[int], info: List[dict], geo: _Geometry) -> Optional[Anchor]:
    """The C2 anchor: instance k+1 rising into the hollow middle of instance k (k = 0, 1)."""
    last_row = geo.shape[geo.si_axis] - 1
    for k in range(min(2, len(ids) - 1)):
        ring, below = info[k], info[k + 1]
        centre_h = float(geo.height(ring["centre"][geo.si_axis]))
        rows = ring["points"][:, geo.si_axis]
        if rows.min() == 0 or rows.max() == last_row or below["top"] <= centre_h:
            continue  # a ring cut by the field of view, or nothing of k+1 reaches its middle

        def inside(points, radius):
            h = geo.height(points[:, geo.si_axis])
            return (np.abs(h - centre_h) <= DENS_BAND_MM) & (geo.radius(points, ring["centre"]) <= radius)

        dens_ml = int(inside(below["points"], DENS_RADIUS_MM).sum()) * geo.voxel_ml
        own_ml = int(inside(ring["points"], DENS_RADIUS_MM / 2).sum()) * geo.voxel_ml
        if dens_ml >= DENS_MIN_ML and own_ml <= 0.5 * dens_ml:
            return Anchor("dens", k + 1, {"dens_ml": round(dens_ml, 2), "ring_core_ml": round(own_ml, 2)})
    return None
