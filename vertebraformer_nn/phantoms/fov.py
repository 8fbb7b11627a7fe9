"""Field of view of one scan: head and foot borders (cut through vertebrae, as real scans are), axial extent
around the spine, the patient's pose on the table, and the image grid that results."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .anatomy import Subject
from .grid import Grid, direction_from_axcodes, make_grid
from .render import Placement, small_rotation
from .styles import ScanParams, ScannerStyle

#: For each field-of-view kind: candidate top borders and bottom borders ("skull" = above C1; "S2" = sacral).
FOV_KINDS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "cervical": (("skull",), ("C7", "T1", "T2", "T3")),
    "cervicothoracic": (("skull", "C1", "C2"), ("T5", "T6", "T7", "T8")),
    "thoracic": (("C6", "C7", "T1", "T2"), ("T11", "T12", "L1", "L2")),
    "thoracolumbar": (("T5", "T6", "T7", "T8", "T9"), ("L3", "L4", "L5", "S1")),
    "lumbar": (("T10", "T11", "T12", "L1"), ("S2", "S3", "S4")),
    "whole": (("skull",), ("S1", "S2", "S3")),
}


def _landmark_z(subject: Subject, name: str, rng: np.random.Generator) -> float:
    if name == "skull":
        c1 = subject.vertebrae[0]
        return float(c1.centre[2] + rng.uniform(25.0, 55.0) * subject.scale)
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


def levels_inside(subject: Subject, z_top: float, z_bot: float) -> Tuple[int, ...]:
    """Codes of vertebrae whose body lies wholly between the borders (candidates for pathology)."""
    return tuple(v.code for v in subject.vertebrae if v.centre[2] + v.hb < z_top and v.centre[2] - v.hb > z_bot)


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
    centre = np.array([cx + rng.uniform(-8.0, 8.0), cy + 22.0 + rng.uniform(-8.0, 8.0), 0.5 * (z_top + z_bot)])
    half = np.array([max(params.axial_mm[0] * rng.uniform(0.95, 1.05), hi[0] - lo[0] + 150.0) / 2,
                     max(params.axial_mm[1] * rng.uniform(0.95, 1.05), hi[1] - lo[1] + 170.0) / 2,
                     (z_top - z_bot) / 2])
    placement = Placement(rot=small_rotation(rng, 3.0),
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
    sp[slice_axis] = params.slice_mm
    n = float(np.prod(extent / sp))
    if n > style.max_voxels:
        # A larger field of view is reconstructed on coarser pixels (the matrix stays about the same).
        f = np.sqrt(n / style.max_voxels)
        for ax in range(3):
            if ax != slice_axis:
                sp[ax] = round(sp[ax] * f, 3)
    return sp
