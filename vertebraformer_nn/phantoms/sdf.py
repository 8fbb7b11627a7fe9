"""Signed-distance primitives for the phantom anatomy (pure numpy, millimetres, negative inside).

Every anatomical structure is a union of a few primitives described in its own local frame
(x = left, y = posterior, z = superior, the LPS convention tilted with the spine). A renderer evaluates
a primitive only inside its bounding box, on arrays of local coordinates, so each primitive carries
``bbox()`` (local min / max corners) and ``sdf(x, y, z)``.

The distances are exact for spheres and capsules and approximate (but monotone and of the right scale)
for ellipsoids and stretched capsules; the renderer only needs the sign and, near the surface, roughly
millimetres, to blend partial-volume voxels and to draw a cortical shell of a given thickness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

Vec = Tuple[float, float, float]


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


@dataclass(frozen=True)
class Capsule:
    """Segment a-b with radius r. ``stretch`` scales the cross-section per local axis (e.g. (1, 1, 2.5):
    a plate twice and a half as tall as it is thick), which turns one capsule into a lamina or a rib."""

    a: Vec
    b: Vec
    r: float
    stretch: Vec = (1.0, 1.0, 1.0)

    def bbox(self):
        a, b, s = _arr(self.a), _arr(self.b), _arr(self.stretch)
        pad = self.r * s
        return np.minimum(a, b) - pad, np.maximum(a, b) + pad

    def sdf(self, x, y, z):
        s = _arr(self.stretch)
        a = _arr(self.a) / s
        ab = _arr(self.b) / s - a
        px, py, pz = x / s[0] - a[0], y / s[1] - a[1], z / s[2] - a[2]
        denom = float(ab @ ab) or 1.0
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / denom, 0.0, 1.0)
        dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        return np.sqrt(dx * dx + dy * dy + dz * dz) - self.r


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid with semi-axes ``radii`` along its own axes, turned by ``yaw`` about z and then tilted by ``roll``
    about y (radians): the iliac wings flare forward (yaw) and outward at the crest (roll)."""

    c: Vec
    radii: Vec
    yaw: float = 0.0
    roll: float = 0.0

    def bbox(self):
        c, r = _arr(self.c), _arr(self.radii)
        if self.yaw or self.roll:
            r = np.full(3, r.max())  # a turned ellipsoid fits in the sphere of its largest radius
        return c - r, c + r

    def sdf(self, x, y, z):
        c, r = _arr(self.c), _arr(self.radii)
        px, py, pz = x - c[0], y - c[1], z - c[2]
        if self.yaw:
            cs, sn = np.cos(self.yaw), np.sin(self.yaw)
            px, py = cs * px + sn * py, -sn * px + cs * py
        if self.roll:
            cs, sn = np.cos(self.roll), np.sin(self.roll)
            px, pz = cs * px - sn * pz, sn * px + cs * pz
        k = np.sqrt((px / r[0]) ** 2 + (py / r[1]) ** 2 + (pz / r[2]) ** 2)
        return (k - 1.0) * float(r.min())


@dataclass(frozen=True)
class EllipsoidShell:
    """The bone between two concentric ellipsoids (a skull), minus an elliptic hole along z (foramen magnum)."""

    c: Vec
    radii: Vec
    thickness: float
    hole_c: Vec = (0.0, 0.0)
    hole_r: Vec = (0.0, 0.0)

    def bbox(self):
        c, r = _arr(self.c), _arr(self.radii)
        return c - r, c + r

    def sdf(self, x, y, z):
        outer = Ellipsoid(self.c, self.radii).sdf(x, y, z)
        inner_r = tuple(float(v) - self.thickness for v in self.radii)
        inner = Ellipsoid(self.c, inner_r).sdf(x, y, z)
        d = np.maximum(outer, -inner)
        if self.hole_r[0] > 0:
            k = np.sqrt(((x - self.hole_c[0]) / self.hole_r[0]) ** 2 + ((y - self.hole_c[1]) / self.hole_r[1]) ** 2)
            d = np.maximum(d, -(k - 1.0) * min(self.hole_r))
        return d


@dataclass(frozen=True)
class VertebralBody:
    """Elliptic cylinder along z with a flattened posterior wall (the canal's front) and endplates.

    ``ra``/``rl``: antero-posterior / left-right semi-axes; ``hb``: half height. A compression fracture
    lowers the upper endplate: ``wedge`` (anterior height lost, posterior kept), ``biconcave`` (centre
    lost) or ``crush`` (uniform), by ``loss`` (fraction of the full height at its deepest point).
    """

    ra: float
    rl: float
    hb: float
    posterior_flat: float = 0.78
    loss: float = 0.0
    kind: str = "wedge"
    concavity: float = 0.8  # mm of endplate concavity at the centre, a cue real bodies show
    waist: float = 0.06  # the side walls are concave: the body is narrower at mid-height than at its endplates

    def bbox(self):
        return np.array([-self.rl, -self.ra, -self.hb]), np.array([self.rl, self.ra, self.hb])

    def top(self, x, y):
        """Height of the upper endplate above the body centre at (x, y)."""
        r2 = np.clip((x / self.rl) ** 2 + (y / self.ra) ** 2, 0.0, 1.0)
        top = self.hb - self.concavity * (1.0 - r2)
        if self.loss > 0:
            full = 2.0 * self.hb
            if self.kind == "wedge":
                # y < 0 is anterior: the anterior wall loses the most height, the posterior wall none.
                w = np.clip((self.posterior_flat * self.ra - y) / ((1 + self.posterior_flat) * self.ra), 0.0, 1.0)
            elif self.kind == "biconcave":
                w = 1.0 - r2
            else:
                w = np.ones_like(r2)
            top = top - self.loss * full * w
        return top

    def sdf(self, x, y, z):
        w = 1.0 - self.waist * (1.0 - np.clip((z / self.hb) ** 2, 0.0, 1.0))
        radial = (np.sqrt((x / self.rl) ** 2 + (y / self.ra) ** 2) / w - 1.0) * min(self.ra, self.rl)
        back = y - self.posterior_flat * self.ra
        r2 = np.clip((x / self.rl) ** 2 + (y / self.ra) ** 2, 0.0, 1.0)
        bottom = -self.hb + self.concavity * (1.0 - r2)
        height = np.maximum(z - self.top(x, y), bottom - z)
        return np.maximum(np.maximum(radial, back), height)


@dataclass(frozen=True)
class EllipticCylinder:
    """Elliptic cylinder along z centred at c (discs, nucleus, foramen): semi-axes rx, ry, half height hz."""

    c: Vec
    rx: float
    ry: float
    hz: float
    posterior_flat: float = 10.0  # > 1: no flat wall

    def bbox(self):
        c = _arr(self.c)
        r = np.array([self.rx, self.ry, self.hz])
        return c - r, c + r

    def sdf(self, x, y, z):
        px, py, pz = x - self.c[0], y - self.c[1], z - self.c[2]
        radial = (np.sqrt((px / self.rx) ** 2 + (py / self.ry) ** 2) - 1.0) * min(self.rx, self.ry)
        d = np.maximum(radial, np.abs(pz) - self.hz)
        if self.posterior_flat < 1.0:
            d = np.maximum(d, py - self.posterior_flat * self.ry)
        return d


def union_bbox(parts: Sequence) -> Tuple[np.ndarray, np.ndarray]:
    lows, highs = zip(*(p.bbox() for p in parts))
    return np.min(lows, axis=0), np.max(highs, axis=0)


def occupancy(d: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel of size ``width`` (mm) inside a surface at signed distance d: a linear ramp,
    the cheapest partial-volume model that still gives coarse voxels a believable edge."""
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32, copy=False)
