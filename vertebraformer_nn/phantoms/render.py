"""Rasterise a subject onto an image grid: ideal HU (before the scanner), the complete vertebra label map,
lesion instances, metal, a tissue map, and exact vertebral-body centroids.

The subject sits in the scanner through a rigid ``Placement`` (subject frame -> world LPS). Each solid is
evaluated only in the voxels of its parts' bounding boxes: the index -> local-coordinate map is affine, so a
part's box in index space is the hull of its local box's corners, and its local coordinates are three
broadcast sums. Partial volume is a linear occupancy ramp over one voxel (wider or narrower by a scan's
``pv_factor``); bone is a cortical shell of the subject's cortex thickness (thicker at vertebral endplates) over a
trabecular core with the subject's trabecular texture (texture.py). Organ and vessel HU follow the scan's
contrast phase (organs.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import labels
from .anatomy import Subject
from .grid import Grid
from .sdf import occupancy
from .organs import organ_solids
from .pelvis import pelvis_solids, sacrum_solids
from .shapes import (BLASTIC, CORTEX, LYTIC, TRABECULAR, Solid, body_centroid_subject, canal_solids, disc_solids,
                     metal_solids, skull_solids, vertebra_solid)
from .softtissue import paint_background
from .thorax import thorax_solids
from .viscera import NO_CONTRAST, Contrast


@dataclass(frozen=True)
class Placement:
    """Rigid pose of the subject in the scanner: world = rot @ subject + shift."""

    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def to_world(self, p) -> np.ndarray:
        return self.rot @ np.asarray(p, float) + self.shift

    def to_subject(self, p) -> np.ndarray:
        return self.rot.T @ (np.asarray(p, float) - self.shift)


def small_rotation(rng: np.random.Generator, max_deg: float = 4.0) -> np.ndarray:
    """Patient not perfectly straight on the table: a few degrees about each axis."""
    a = np.deg2rad(np.clip(rng.normal(0.0, max_deg / 2.5, size=3), -max_deg, max_deg))
    cx, sx, cy, sy, cz, sz = np.cos(a[0]), np.sin(a[0]), np.cos(a[1]), np.sin(a[1]), np.cos(a[2]), np.sin(a[2])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def all_solids(subject: Subject, contrast: Contrast = NO_CONTRAST) -> List[Solid]:
    """Everything in painting order: soft solids first (organs, brain, discs, canal), then bone (labelled vertebrae
    last among bones, so that a rib head or a facet does not overwrite a body), then metal."""
    brain, skull = skull_solids(subject)
    return (organ_solids(subject, contrast) + [brain] + disc_solids(subject) + canal_solids(subject) + [skull]
            + thorax_solids(subject) + sacrum_solids(subject) + pelvis_solids(subject)
            + [vertebra_solid(subject, v) for v in subject.vertebrae] + metal_solids(subject))


@dataclass
class Rendered:
    grid: Grid
    hu: np.ndarray  # float32 (k, j, i), ideal HU
    vertebrae: np.ndarray  # uint8, every vertebra (partial ones too), VerSe codes
    lesions: np.ndarray  # uint8, lesion instances 1..n (numbered within this image)
    metal: np.ndarray  # bool
    tissue: np.ndarray  # uint8 tissue classes (shapes.TISSUE_NAMES)
    centroids: Dict[int, np.ndarray]  # VerSe code -> body centroid, world LPS mm (those inside the grid)
    levels: List[int]  # codes present in the label map, head to foot
    partial: List[int]  # codes touching the head or foot border slice
    lesion_info: List[dict]  # per instance: id, subject_id, type, vertebra, centre_mm, voxels


class _Mapper:
    """index (i, j, k) -> local coordinates of one frame (affine), and boxes of local boxes in index space."""

    def __init__(self, grid: Grid, placement: Placement, centre: np.ndarray, rot: np.ndarray):
        full = placement.rot @ rot  # local -> world rotation
        origin_w = placement.to_world(centre)
        self.A = full.T @ grid.matrix  # index -> local
        self.b = full.T @ (np.asarray(grid.origin) - origin_w)
        self.A_inv = np.linalg.inv(self.A)
        self.size = np.asarray(grid.size)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Optional[Tuple[slice, slice, slice]]:
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        ijk = (corners - self.b) @ self.A_inv.T
        a = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
        b = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, self.size)
        if np.any(b <= a):
            return None
        return slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0])  # (k, j, i)

    def coords(self, box) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None, None]
        j = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :, None]
        i = np.arange(box[2].start, box[2].stop, dtype=np.float32)[None, None, :]
        A = self.A.astype(np.float32)
        b = self.b.astype(np.float32)
        return tuple(b[c] + A[c, 0] * i + A[c, 1] * j + A[c, 2] * k for c in range(3))


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _sub(box, outer):
    return tuple(slice(x.start - o.start, x.stop - o.start) for x, o in zip(box, outer))


def evaluate(mapper: _Mapper, parts: Sequence, outer=None):
    """Union SDF of ``parts`` on the union of their boxes (or on ``outer``): (box, sdf block) or (None, None)."""
    boxes = [mapper.box(*p.bbox()) for p in parts]
    box = outer
    if box is None:
        for bx in boxes:
            box = _union(box, bx)
    if box is None:
        return None, None
    shape = tuple(s.stop - s.start for s in box)
    d = np.full(shape, np.inf, np.float32)
    for p, bx in zip(parts, boxes):
        if bx is None:
            continue
        # Clip the part's box to the outer box (lesion lobes may reach outside their vertebra).
        bx = tuple(slice(max(x.start, o.start), min(x.stop, o.stop)) for x, o in zip(bx, box))
        if any(s.stop <= s.start for s in bx):
            continue
        x, y, z = mapper.coords(bx)
        sub = _sub(bx, box)
        np.minimum(d[sub], p.sdf(x, y, z), out=d[sub])
    return box, d


def world_coords(grid: Grid, placement: Placement):
    """Subject-frame coordinates of every voxel (three float32 arrays of the grid's shape)."""
    m = _Mapper(grid, placement, np.zeros(3), np.eye(3))
    return m.coords((slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2])))


def render(subject: Subject, grid: Grid, placement: Placement = Placement(), contrast: Contrast = NO_CONTRAST,
           pv_factor: float = 1.0) -> Rendered:
    """Paint ``subject`` onto ``grid``; ``pv_factor`` widens (> 1) or narrows partial-volume edges."""
    width = grid.voxel_mm * pv_factor
    X, Y, Z = world_coords(grid, placement)
    hu, tissue = paint_background(X, Y, Z, subject, width, axis=grid.head_foot_axis)
    del X, Y, Z
    vert = np.zeros(grid.shape, np.uint8)
    best = np.full(grid.shape, np.inf, np.float32)
    lesion_map = np.zeros(grid.shape, np.uint8)
    metal = np.zeros(grid.shape, bool)
    lesion_ids: Dict[int, int] = {}  # subject lesion id -> instance number in this image
    for solid in all_solids(subject, contrast):
        mapper = _Mapper(grid, placement, solid.centre, solid.rot)
        box, d = evaluate(mapper, solid.parts)
        if box is None:
            continue
        _paint(solid, mapper, box, d, width, hu, tissue, vert, best, lesion_map, metal, lesion_ids)

    present = set(int(c) for c in np.unique(vert)) - {0}
    levels = labels.sort_anatomically(present)
    axis = grid.head_foot_axis
    border = set()
    for idx in (0, grid.shape[axis] - 1):
        border |= set(int(c) for c in np.unique(np.take(vert, idx, axis=axis))) - {0}
    centroids = {}
    for v in subject.vertebrae:
        p = placement.to_world(body_centroid_subject(v))
        if v.code in present and grid.contains(p):
            centroids[v.code] = p
    info = []
    for les in subject.lesions:
        if les.id in lesion_ids:
            n = lesion_ids[les.id]
            voxels = int(np.count_nonzero(lesion_map == n))
            v = subject.vertebra(les.vertebra)
            info.append({"id": n, "subject_lesion": les.id, "type": les.kind, "vertebra": les.vertebra,
                         "site": les.site,
                         "centre_mm": [round(float(c), 2) for c in placement.to_world(v.centre + v.rot @ les.centre)],
                         "voxels": voxels})
    return Rendered(grid, hu, vert, lesion_map, metal, tissue, centroids, levels, labels.sort_anatomically(border), info)


def _paint(solid: Solid, mapper, box, d, width, hu, tissue, vert, best, lesion_map, metal, lesion_ids):
    mat = solid.material
    o_out = occupancy(d, width)
    h = hu[box]
    if mat.kind != "bone":
        value = np.float32(mat.hu)
        if mat.texture is not None:
            inside = o_out > 0
            value = np.full(o_out.shape, value, np.float32)
            value[inside] += mat.texture(*(c[inside] for c in mapper.coords(box)), width)
        h += (value - h) * o_out
        tissue[box][o_out >= 0.5] = mat.tissue
        if mat.kind == "metal":
            metal[box] |= o_out >= 0.5
        return
    o_in = occupancy(d + mat.cortex_mm, width)
    trab = np.float32(mat.hu)
    x, y, z = mapper.coords(box)
    if solid.body:
        # Trabecular core of the body; processes (thin, mostly cortical) read denser; endplates' cortex is thicker.
        _, db = evaluate(mapper, solid.body, outer=box)
        core = occupancy(db, width)
        trab = trab + np.float32(mat.posterior_extra_hu) * (1.0 - core)
        if mat.endplate_mm:
            o_end = occupancy(solid.body[0].endplate_sdf(x, y, z) + mat.endplate_mm, width)
            o_in = np.where(db < 0, np.minimum(o_in, o_end), o_in)
    elif solid.label == 0:
        trab = trab + np.float32(mat.posterior_extra_hu) * 0.5
    if mat.texture is not None:
        inner = o_in > 0
        tex = np.zeros(o_in.shape, np.float32)
        tex[inner] = mat.texture(x[inner], y[inner], z[inner], width)
        trab = trab + tex
    value = np.float32(mat.cortical_hu) * (o_out - o_in) + trab * o_in
    cls = np.where(o_in >= 0.5, TRABECULAR, CORTEX).astype(np.uint8)
    inside = d < 0
    for les, parts in solid.lesions:
        _, dl = evaluate(mapper, parts, outer=box)
        ol = occupancy(dl, width)
        # The lesion replaces bone, cortex included (lytic lesions break through it; blastic ones are dense).
        value = value * (1.0 - ol) + np.float32(les.hu) * o_out * ol
        in_lesion = (dl < 0) & inside
        if np.any(in_lesion):
            n = lesion_ids.setdefault(les.id, len(lesion_ids) + 1)
            lesion_map[box][in_lesion] = n
            cls[(ol >= 0.5) & (o_out >= 0.5)] = LYTIC if les.kind == "lytic" else BLASTIC
    h *= 1.0 - o_out
    h += value
    tissue[box][o_out >= 0.5] = cls[o_out >= 0.5]
    if solid.label:
        b = best[box]
        win = inside & (d < b)
        vert[box][win] = solid.label
        b[win] = d[win]
