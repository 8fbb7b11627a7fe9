"""Signed-distance primitives for the phantom anatomy (millimetres, negative inside).

Every anatomical structure is a union of a few primitives described in its own local frame
(x = left, y = posterior, z = superior, the LPS convention tilted with the spine). A renderer evaluates
a primitive only inside its bounding box, on arrays of local coordinates, so each primitive carries
``bbox()`` (local min / max corners) and ``sdf(x, y, z)``.

The distances are exact for spheres and capsules and approximate (but monotone and of the right scale)
for ellipsoids, stretched capsules and profiled bodies; the renderer only needs the sign and, near the
surface, roughly millimetres, to blend partial-volume voxels and to draw a cortical shell of a given thickness.

The ``sdf`` of capsules, axis-aligned ellipsoids and vertebral bodies uses only arithmetic and the helpers
below, so the same code evaluates numpy arrays (rendering) and torch tensors whose parameters carry gradients
(tools/fit_vertebra_shapes.py fits the shape model that way): one implementation for both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

Vec = Tuple[float, float, float]


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _is_numpy(*xs) -> bool:
    return all(isinstance(x, np.ndarray) or np.isscalar(x) for x in xs)


def vmax(a, b):
    """Element-wise maximum of numpy arrays or torch tensors (either may be a number)."""
    if _is_numpy(a, b):
        return np.maximum(a, b)
    import torch

    return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))


def vmin(a, b):
    if _is_numpy(a, b):
        return np.minimum(a, b)
    import torch

    return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))


def vsqrt(a):
    """Square root; the tiny offset keeps a torch gradient finite at 0."""
    return np.sqrt(a) if _is_numpy(a) else (a + 1e-9) ** 0.5


def capsule_sdf(x, y, z, a, b, r, stretch=(1.0, 1.0, 1.0)):
    """Distance to the segment a-b minus r, measured after dividing each axis by ``stretch``."""
    sx, sy, sz = stretch
    ax, ay, az = a[0] / sx, a[1] / sy, a[2] / sz
    ex, ey, ez = b[0] / sx - ax, b[1] / sy - ay, b[2] / sz - az
    px, py, pz = x / sx - ax, y / sy - ay, z / sz - az
    t = ((px * ex + py * ey + pz * ez) / (ex * ex + ey * ey + ez * ez + 1e-9)).clip(0.0, 1.0)
    dx, dy, dz = px - t * ex, py - t * ey, pz - t * ez
    return vsqrt(dx * dx + dy * dy + dz * dz) - r


def ellipsoid_sdf(x, y, z, c, radii):
    """Approximate distance to an axis-aligned ellipsoid (its normalised radius, scaled by the smallest semi-axis)."""
    k = vsqrt(((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((z - c[2]) / radii[2]) ** 2)
    return (k - 1.0) * vmin(vmin(radii[0], radii[1]), radii[2])


def cosine_series(c, coeffs):
    """sum_n coeffs[n] cos(n theta), given c = cos(theta), by the Chebyshev recursion T_n+1 = 2 c T_n - T_n-1."""
    t_prev, t = 1.0, c
    out = coeffs[0] + coeffs[1] * c
    for a in coeffs[2:]:
        t_prev, t = t, 2.0 * c * t - t_prev
        out = out + a * t
    return out


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
        return capsule_sdf(x, y, z, self.a, self.b, self.r, self.stretch)


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
        if not (self.yaw or self.roll):
            return ellipsoid_sdf(x, y, z, self.c, self.radii)
        c = _arr(self.c)
        px, py, pz = x - c[0], y - c[1], z - c[2]
        if self.yaw:
            cs, sn = np.cos(self.yaw), np.sin(self.yaw)
            px, py = cs * px + sn * py, -sn * px + cs * py
        if self.roll:
            cs, sn = np.cos(self.roll), np.sin(self.roll)
            px, pz = cs * px - sn * pz, sn * px + cs * pz
        return ellipsoid_sdf(px, py, pz, (0.0, 0.0, 0.0), self.radii)


@dataclass(frozen=True)
class EllipsoidShell:
    """The bone between two concentric ellipsoids (a skull, an iliac blade, an acetabular cup), minus an elliptic
    hole along z (the foramen magnum), cut by half-spaces: each plane (n, o) keeps the side where n.p <= o
    (n a unit vector). ``box`` (lo, hi), where given, bounds the part more tightly than the ellipsoid."""

    c: Vec
    radii: Vec
    thickness: float
    hole_c: Vec = (0.0, 0.0)
    hole_r: Vec = (0.0, 0.0)
    planes: Tuple = ()
    box: Tuple = ()

    def bbox(self):
        if self.box:
            return _arr(self.box[0]), _arr(self.box[1])
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
        for n, o in self.planes:
            d = np.maximum(d, n[0] * x + n[1] * y + n[2] * z - o)
        return d


@dataclass(frozen=True)
class VertebralBody:
    """A vertebral body along z: an outline (an ellipse with a flattened posterior wall, or a fitted profile),
    concave side walls (the waist), concave endplates, and a compression fracture where there is one.

    ``ra``/``rl``: antero-posterior / left-right semi-axes; ``hb``: half height (the mean of front and back).
    ``profile``: cosine coefficients of the mid-height outline radius against the angle from anterior (0) to
    posterior (pi), symmetric left-right (shape_model.profile_coefficients makes them from radii); it replaces
    the ellipse and its flat back. ``wedge``: how much higher the upper endplate stands at the back than at the
    front (thoracic bodies are wedged), ``wedge_bottom`` the same for the lower endplate (default: the same).
    A compression fracture lowers the upper endplate: ``wedge`` kind (anterior height lost, posterior kept),
    ``biconcave`` (centre lost) or ``crush`` (uniform), by ``loss`` (fraction of the full height at its
    deepest point).
    """

    ra: float
    rl: float
    hb: float
    posterior_flat: float = 0.78
    loss: float = 0.0
    kind: str = "wedge"
    concavity: float = 0.8  # mm of endplate concavity at the centre, a cue real bodies show
    waist: float = 0.06  # the side walls are concave: the body is narrower at mid-height than at its endplates
    profile: Tuple = ()
    wedge: float = 0.0
    wedge_bottom: Optional[float] = None

    def bbox(self):
        r = max(float(self.ra), float(self.rl))
        h = float(self.hb) + 0.5 * max(abs(float(self.wedge)), abs(float(self._wedge_bottom)))
        return np.array([-r, -r, -h]), np.array([r, r, h])

    @property
    def _wedge_bottom(self):
        return self.wedge if self.wedge_bottom is None else self.wedge_bottom

    @property
    def front(self):
        return cosine_series(1.0, self.profile) if len(self.profile) else self.ra

    @property
    def back(self):
        return cosine_series(-1.0, self.profile) if len(self.profile) else self.posterior_flat * self.ra

    def _outline(self, x, y, w=1.0):
        """(signed radial distance to the mid-height outline scaled by ``w``, squared normalised radius <= 1)."""
        if len(self.profile):
            rho = vsqrt(x * x + y * y)
            r = cosine_series(-y / (rho + 1e-6), self.profile)
            return rho / w - r, ((rho / r) ** 2).clip(0.0, 1.0)
        k2 = (x / self.rl) ** 2 + (y / self.ra) ** 2
        radial = (vsqrt(k2) / w - 1.0) * min(self.ra, self.rl)
        return vmax(radial, y - self.posterior_flat * self.ra), k2.clip(0.0, 1.0)

    def _half_height(self, y, wedge):
        """Half height at y of an endplate that stands ``wedge`` higher at the back than at the front."""
        if isinstance(wedge, (int, float)) and not wedge:  # (a torch tensor always takes the general path)
            return self.hb
        front, back = self.front, self.back
        return self.hb + 0.5 * wedge * ((2.0 * y - (back - front)) / (back + front)).clip(-1.0, 1.0)

    def top(self, x, y, r2=None):
        """Height of the upper endplate above the body centre at (x, y)."""
        if r2 is None:
            r2 = self._outline(x, y)[1]
        top = self._half_height(y, self.wedge) - self.concavity * (1.0 - r2)
        if self.loss > 0:
            full = 2.0 * self.hb
            if self.kind == "wedge":
                # y < 0 is anterior: the anterior wall loses the most height, the posterior wall none.
                w = ((self.back - y) / (self.back + self.front)).clip(0.0, 1.0)
            elif self.kind == "biconcave":
                w = 1.0 - r2
            else:
                w = 1.0
            top = top - self.loss * full * w
        return top

    def _height_sdf(self, x, y, z, r2):
        bottom = -self._half_height(y, self._wedge_bottom) + self.concavity * (1.0 - r2)
        return vmax(z - self.top(x, y, r2), bottom - z)

    def endplate_sdf(self, x, y, z):
        """Signed distance to the two endplates alone (the renderer thickens the cortex there)."""
        return self._height_sdf(x, y, z, self._outline(x, y)[1])

    def sdf(self, x, y, z):
        w = 1.0 - self.waist * (1.0 - ((z / self.hb) ** 2).clip(0.0, 1.0))
        radial, r2 = self._outline(x, y, w)
        return vmax(radial, self._height_sdf(x, y, z, r2))


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
