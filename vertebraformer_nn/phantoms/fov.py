"""Field of view of one scan: head and foot borders (cut through vertebrae, as real scans are), axial extent
around the spine, the patient's pose on the table, and the image grid that results."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from . import shape_model
from .anatomy import Subject, Vertebra
from .grid import Grid, direction_from_axcodes, make_grid
from .render import Placement, small_rotation
from .sdf import union_bbox
from .styles import ScanParams, ScannerStyle

#: For each field-of-view kind: candidate top borders and bottom borders ("skull" = above C1; "S2" = sacral;
#: "hips" = the femoral heads, "ischium" = the ischial tuberosities: abdominal and pelvic scans reach them).
FOV_KINDS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "cervical": (("skull",), ("C7", "T1", "T2", "T3")),
    "cervicothoracic": (("skull", "C1", "C2"), ("T5", "T6", "T7", "T8")),
    "thoracic": (("C6", "C7", "T1", "T2"), ("T11", "T12", "L1", "L2")),
    "thoracolumbar": (("T5", "T6", "T7", "T8", "T9"), ("L3", "L4", "L5", "S1")),
    "lumbar": (("T10", "T11", "T12", "L1"), ("S2", "S3", "S4", "hips")),
    "whole": (("skull",), ("S1", "S2", "S3", "hips")),
    "abdomen": (("T9", "T10", "T11", "T12"), ("S2", "S4", "hips")),
    "pelvis": (("L2", "L3", "L4"), ("hips", "ischium")),
}
MAX_SLICES = 500  # a finer slice spacing over a long field of view is coarsened to this many slices


def _landmark_z(subject: Subject, name: str, rng: np.random.Generator) -> float:
    if name == "skull":
        c1 = subject.vertebrae[0]
        return float(c1.centre[2] + rng.uniform(25.0, 55.0) * subject.scale)
    if name in ("hips", "ischium"):
        lo, hi = (80.0, 120.0) if name == "hips" else (140.0, 175.0)
        return float(subject.sacrum[0].centre[2] - rng.uniform(lo, hi) * subject.scale)
    if name[0] == "S" and name[1:].isdigit():
        seg = subject.sacrum[int(name[1:]) - 1]
        return float(seg.centre[2] + rng.uniform(-1.0, 1.0) * seg.hb)
    v = next(v for v in subject.vertebrae if v.name == name)
    # Anywhere from the body's upper to lower endplate: most borders cut a vertebra, as in real scans.
    return float(v.centre[2] + rng.uniform(-1.0, 1.0) * v.hb)


def z_range(subject: Subject, kind: str, rng: np.random.Generator) -> Tuple[float, float]:
    """(z_top, z_bottom) of a field of view of ``kind`` in the subject frame."""
    tops, bottoms = FOV_KINDS[kind]
    z_top = _landmark_z(subject, tops[int(rng.integers(len(tops)))], rng)
    z_bot = _landmark_z(subject, bottoms[int(rng.integers(len(bottoms)))], rng)
    return z_top, z_bot


def z_extent(v: Vertebra) -> Tuple[float, float]:
    """(lowest, highest) subject-frame z of a whole vertebra, processes included (from its parts' boxes)."""
    body, other = shape_model.parts(v.shape, v.name)
    lo, hi = union_bbox(body + other)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    z = v.centre[2] + corners @ v.rot[2, :]
    return float(z.min()), float(z.max())


def levels_inside(subject: Subject, z_top: float, z_bot: float) -> Tuple[int, ...]:
    """Codes of vertebrae that lie wholly between the borders, processes included (candidates for pathology, so
    that every source's files, partial vertebrae dropped or not, show it)."""
    return tuple(v.code for v in subject.vertebrae if z_bot < z_extent(v)[0] and z_extent(v)[1] < z_top)


def plan_grid(subject: Subject, params: ScanParams, style: ScannerStyle, rng: np.random.Generator,
              zr: Optional[Tuple[float, float]] = None) -> Tuple[Grid, Placement, Tuple[float, float]]:
    """Grid and placement of one scan. ``zr`` fixes the head/foot borders (subject frame); else drawn for params.fov."""
    z_top, z_bot = zr if zr is not None else z_range(subject, params.fov, rng)
    cl = subject.centreline
    inside = (cl[:, 2] <= z_top) & (cl[:, 2] >= z_bot)
    lo, hi = cl[inside, :2].min(axis=0), cl[inside, :2].max(axis=0)
    cx, cy = 0.5 * (lo + hi)
    # The box is centred a little behind the spine, so that the back and its muscles are in view, and widened
    # where the curvature of a long field of view would carry the spine out of it.
    o = params.fov_offset_mm
    centre = np.array([cx + rng.uniform(-o, o), cy + 22.0 + rng.uniform(-o, o), 0.5 * (z_top + z_bot)])
    # At least the spine's own sway plus a margin (smaller for a small, tightly cropped field of view).
    margin = [min(150.0, params.axial_mm[0] - 20.0), min(170.0, params.axial_mm[1] - 20.0)]
    half = np.array([max(params.axial_mm[0] * rng.uniform(0.95, 1.05), hi[0] - lo[0] + margin[0]) / 2,
                     max(params.axial_mm[1] * rng.uniform(0.95, 1.05), hi[1] - lo[1] + margin[1]) / 2,
                     (z_top - z_bot) / 2])
    placement = Placement(rot=small_rotation(rng, params.tilt_deg),
                          shift=np.array([rng.uniform(-15.0, 15.0), rng.uniform(-40.0, 40.0), rng.uniform(-900.0, 100.0)]))
    centre_w = placement.to_world(centre)
    spacing = _spacing(params, style, 2.0 * half)
    grid = make_grid(centre_w - half, centre_w + half, spacing, params.axcodes)
    return grid, placement, (z_top, z_bot)


def _spacing(params: ScanParams, style: ScannerStyle, extent: np.ndarray) -> np.ndarray:
    """Spacing along the L, P, S world axes: the slice spacing on the axis the third axis code names."""
    d = direction_from_axcodes(params.axcodes)
    slice_axis = int(np.argmax(np.abs(d[:, 2])))
    sp = np.full(3, params.pixel_mm)
    sp[slice_axis] = max(params.slice_mm, round(float(extent[slice_axis]) / MAX_SLICES, 2))
    n = float(np.prod(extent / sp))
    if n > style.max_voxels:
        # A larger field of view is reconstructed on coarser pixels (the matrix stays about the same).
        f = np.sqrt(n / style.max_voxels)
        for ax in range(3):
            if ax != slice_axis:
                sp[ax] = round(sp[ax] * f, 3)
    return sp
