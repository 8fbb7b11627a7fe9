"""Anatomical anchors of the numbering, found in the image itself (pure numpy / cc3d): what a radiologist counts
from when a vertebra's own appearance is ambiguous (VerSe's winners and VERIDAH decode with such anchors).

Bone is every voxel at or above ``anchor_bone_hu`` outside the predicted vertebrae and the one-voxel rim around them
(the partial-volume halo of their cortex, which would join every bone to the spine and so to every other bone);
its 26-connected components are ribs, sacrum and pelvis, skull, sternum and so on (no label needed, so this works
on any dataset). Distances are
taken in the axial plane from an instance's *axis* (the head-foot line through its centroid), heights along the
head-foot array axis. With the instances ordered head to foot (0 = the head-most):

* ``skull``: the first instance is C1 when the bone within :data:`NEAR_MM` above it, within :data:`AXIS_RADIUS_MM`
  of its axis, belongs to a component of at least ``skull_min_volume_ml`` (the skull base).
* ``dens``: instance k+1 is C2 when it rises into the middle of instance k (k = 0 or 1, not cut by the field of
  view): k+1 reaches above k's centroid, at least :data:`DENS_MIN_ML` of it lies within :data:`DENS_RADIUS_MM` of
  k's axis and :data:`DENS_BAND_MM` of k's centroid height, where k itself is hollow (C1 is a ring around the
  dens).
* ``last_rib``: the last rib-bearing instance is T12 (or T13) when an instance without ribs follows it. An instance
  bears ribs when a bone component comes within :data:`CONTACT_MM` of it (a costovertebral joint) and reaches
  ``rib_min_reach_mm`` from its axis; the skull and pelvis components do not count.
* ``sacrum``: the last instance is L5 (or L6) when the bone within :data:`NEAR_MM` below it, near its axis, belongs
  to a component of at least ``pelvis_min_volume_ml`` reaching ``rib_min_reach_mm`` from its axis (sacral alae and
  iliac wings).

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

__all__ = ["Anchor", "ANCHOR_LEVELS", "find_anchors", "anchor_log_prior", "anchor_strength"]

#: how far above the first / below the last instance the skull base / sacrum is looked for
NEAR_MM = 30.0
#: in-plane radius around an instance's axis that counts as "directly" above or below it
AXIS_RADIUS_MM = 35.0
DENS_RADIUS_MM = 15.0
DENS_BAND_MM = 6.0
DENS_MIN_ML = 0.3
#: bone this close to an instance touches it (a joint space, a partial-volume rim): at least two voxels
CONTACT_MM = 7.0
#: the levels each anchor allows
ANCHOR_LEVELS: Dict[str, Tuple[str, ...]] = {"skull": ("C1",), "dens": ("C2",), "last_rib": ("T12", "T13"),
                                             "sacrum": ("L5", "L6")}
_CUBE = np.ones((3, 3, 3), bool)
_STRENGTH_FIELD = {"skull": "anchor_skull_strength", "dens": "anchor_dens_strength",
                   "last_rib": "anchor_rib_strength", "sacrum": "anchor_sacrum_strength"}


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

    def height(self, index_si) -> np.ndarray:
        return self.si_sign * np.asarray(index_si, dtype=np.float64) * self.spacing[self.si_axis]

    def radius(self, points: np.ndarray, centre_vox: np.ndarray) -> np.ndarray:
        """In-plane distance (mm) of voxel ``points`` (n, 3) from the head-foot line through ``centre_vox``."""
        d = (points[:, self.plane] - centre_vox[self.plane]) * self.spacing[self.plane]
        return np.sqrt((d ** 2).sum(axis=1))


def find_anchors(hu, instance_map, ordered_ids: Sequence[int], spacing, si_axis: int, si_sign: int,
                 params: Postprocessing = DEFAULTS) -> Tuple[List[Anchor], List[str]]:
    """The anchors (module docstring) of instances ``ordered_ids`` (head first) of ``instance_map``; ``hu``: the CT in
    HU on the same grid, or None (then only the dens, which needs no image, is looked for). Returns (anchors,
    notes)."""
    instance_map = np.asarray(instance_map)
    ids = [int(i) for i in ordered_ids]
    if not ids:
        return [], []
    geo = _Geometry(instance_map.shape, spacing, si_axis, si_sign)
    info = [_instance_info(instance_map, i, geo) for i in ids]
    anchors: List[Anchor] = []
    dens = _dens(instance_map, ids, info, geo)
    anchors += [dens] if dens else []
    if hu is None:
        return anchors, ["anchors: no image on the model grid, only the dens was looked for"]
    hu = np.asarray(hu)
    if hu.shape != instance_map.shape:
        raise ValueError(f"hu {hu.shape} is not on the instances' grid {instance_map.shape}")
    bone = (hu >= params.anchor_bone_hu) & ~ndimage.binary_dilation(instance_map > 0, _CUBE)
    components = cc3d.connected_components(bone, connectivity=26).astype(np.int64, copy=False)
    volume_ml = np.bincount(components.ravel()) * float(np.prod(geo.spacing)) / 1000.0
    volume_ml[0] = 0.0
    skull, skull_component = _beyond(components, volume_ml, info[0], geo, above=True)
    if skull is not None and skull["volume_ml"] >= params.skull_min_volume_ml:
        anchors.append(Anchor("skull", 0, skull))
    pelvis, pelvis_component = _beyond(components, volume_ml, info[-1], geo, above=False)
    if (pelvis is not None and pelvis["volume_ml"] >= params.pelvis_min_volume_ml
            and pelvis["reach_mm"] >= params.rib_min_reach_mm):
        anchors.append(Anchor("sacrum", len(ids) - 1, pelvis))
    excluded = {c for c in (skull_component, pelvis_component) if c}
    boxes = ndimage.find_objects(components)
    ribs = [_rib_reach(components, boxes, instance_map, i, info[k], geo, excluded) for k, i in enumerate(ids)]
    bearing = [r >= params.rib_min_reach_mm for r in ribs]
    if any(bearing):
        last = max(k for k, b in enumerate(bearing) if b)
        if last < len(ids) - 1:
            anchors.append(Anchor("last_rib", last, {"reach_mm": round(ribs[last], 1),
                                                     "rib_bearing": int(sum(bearing))}))
    return anchors, []


def _instance_info(instance_map: np.ndarray, i: int, geo: _Geometry) -> dict:
    points = np.argwhere(instance_map == i)
    heights = geo.height(points[:, geo.si_axis])
    return {"id": i, "centre": points.mean(axis=0), "top": float(heights.max()), "bottom": float(heights.min()),
            "points": points}


def _beyond(components: np.ndarray, volume_ml: np.ndarray, inst: dict, geo: _Geometry, above: bool):
    """(measures, component) of the largest bone component directly above (``above``) or below an instance, or
    (None, 0) when there is none or the field of view ends there."""
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
        return {"volume_ml": 0.0, "reach_mm": 0.0}, 0
    values = slab[tuple(points.T)]
    full = np.insert(np.delete(points, 0, axis=1), si, rows[points[:, 0]], axis=1)  # back to grid axes
    near = geo.radius(full, inst["centre"]) <= AXIS_RADIUS_MM
    if not near.any():
        return {"volume_ml": 0.0, "reach_mm": 0.0}, 0
    chosen = int(max(np.unique(values[near]), key=lambda c: volume_ml[c]))
    return {"volume_ml": round(float(volume_ml[chosen]), 1),
            "reach_mm": round(_reach(components, chosen, inst["centre"], geo), 1)}, chosen


def _reach(components: np.ndarray, component: int, centre: np.ndarray, geo: _Geometry,
           box: Optional[Tuple[slice, ...]] = None) -> float:
    """How far (mm) a component extends from the head-foot line through ``centre``; ``box``: its bounding box."""
    region = components if box is None else components[box]
    offset = np.zeros(3) if box is None else np.array([s.start for s in box])
    points = np.argwhere(region == component) + offset
    return float(geo.radius(points, centre).max()) if len(points) else 0.0


def _rib_reach(components: np.ndarray, boxes: list, instance_map: np.ndarray, i: int, inst: dict, geo: _Geometry,
               excluded: set) -> float:
    """How far (mm from the instance's axis) the farthest-reaching bone component within CONTACT_MM of instance ``i``
    extends; 0 when none comes that close."""
    steps = max(2, int(np.ceil(CONTACT_MM / geo.spacing.min())))
    box = tuple(slice(max(0, int(lo) - steps), int(hi) + steps + 1) for lo, hi in
                zip(inst["points"].min(axis=0), inst["points"].max(axis=0)))
    mask = instance_map[box] == i
    shell = ndimage.binary_dilation(mask, structure=_CUBE, iterations=steps) & ~mask
    touching = components[box][shell]
    touching = set(np.unique(touching[touching > 0]).tolist()) - excluded
    best = 0.0
    for c in touching:
        best = max(best, _reach(components, c, inst["centre"], geo, boxes[c - 1]))
    return best


def _dens(instance_map: np.ndarray, ids: List[int], info: List[dict], geo: _Geometry) -> Optional[Anchor]:
    """The C2 anchor: instance k+1 rising into the hollow middle of instance k (k = 0, 1)."""
    voxel_ml = float(np.prod(geo.spacing)) / 1000.0
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

        dens_ml = int(inside(below["points"], DENS_RADIUS_MM).sum()) * voxel_ml
        own_ml = int(inside(ring["points"], DENS_RADIUS_MM / 2).sum()) * voxel_ml
        if dens_ml >= DENS_MIN_ML and own_ml <= 0.5 * dens_ml:
            return Anchor("dens", k + 1, {"dens_ml": round(dens_ml, 2), "ring_core_ml": round(own_ml, 2)})
    return None
