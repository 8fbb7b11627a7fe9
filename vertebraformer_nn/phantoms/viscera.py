"""The organs of a sampled subject, as geometry (subject frame, mm) drawn once per subject: liver, spleen,
kidneys, stomach, bladder, heart, the aorta with its arch and iliac arteries, the inferior vena cava, the
colon and small-bowel loops (random walks through the abdomen, each with its own content: fluid, gas or
faeces), and the pulmonary vessel trees. organs.py turns them into solids with HU that depend on the scan's
contrast phase (``Contrast``: none, arterial or portal-venous, plus oral contrast in the bowel).

Positions are taken from the subject's own vertebrae (a kidney beside L1-L2, the heart in front of T7-T8), so
they follow its size, curvature and any transitional vertebra.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

Point = Tuple[float, float, float]


@dataclass(frozen=True)
class Contrast:
    """Intravenous contrast of one scan: HU added to arterial blood, venous blood, renal cortex and liver; oral
    contrast (HU of bowel fluid) where given."""

    phase: str = "none"  # "none" | "arterial" | "portal"
    arterial_hu: float = 0.0
    venous_hu: float = 0.0
    kidney_hu: float = 0.0
    liver_hu: float = 0.0
    oral_hu: Optional[float] = None


NO_CONTRAST = Contrast()


def sample_contrast(rng: np.random.Generator, p_enhanced: float, wide: bool = False) -> Contrast:
    """A contrast phase: unenhanced, arterial or portal-venous (with a chance of oral contrast); ``wide`` draws
    enhancement beyond the usual."""
    k = 1.6 if wide else 1.0
    u = rng.uniform
    oral = float(u(150.0, 500.0 * k)) if rng.random() < (0.25 if wide else 0.1) else None
    phase = rng.random()
    if phase >= p_enhanced:
        return Contrast(oral_hu=oral)
    if phase < 0.4 * p_enhanced:
        return Contrast("arterial", arterial_hu=float(u(180.0, 380.0 * k)), venous_hu=float(u(10.0, 60.0)),
                        kidney_hu=float(u(80.0, 200.0 * k)), liver_hu=float(u(5.0, 25.0)), oral_hu=oral)
    return Contrast("portal", arterial_hu=float(u(100.0, 200.0 * k)), venous_hu=float(u(100.0, 180.0 * k)),
                    kidney_hu=float(u(100.0, 180.0 * k)), liver_hu=float(u(40.0, 90.0 * k)), oral_hu=oral)


@dataclass(frozen=True)
class Tube:
    """A chain of points with one radius: a vessel or a bowel loop; ``content`` names what fills it."""

    name: str
    points: Tuple[Point, ...]
    radius: float
    content: str  # "arterial", "venous", "fluid", "gas", "faeces"


@dataclass(frozen=True)
class Blob:
    """An ellipsoid organ (centre, semi-axes) of a kind (organs.py knows each kind's HU)."""

    name: str
    centre: Point
    radii: Point
    kind: str


@dataclass(frozen=True)
class Viscera:
    blobs: Tuple[Blob, ...]
    tubes: Tuple[Tube, ...]


def _p(v) -> Point:
    return tuple(float(t) for t in v)


def _random_walk(rng: np.random.Generator, start: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: int,
                 step_mm: float) -> Tuple[Point, ...]:
    """A smooth random walk kept inside the box [lo, hi] (a bowel loop's course)."""
    pts = [start]
    d = rng.normal(size=3)
    for _ in range(steps):
        d = 0.6 * d / np.linalg.norm(d) + 0.4 * rng.normal(size=3)
        d[2] *= 0.6
        nxt = np.clip(pts[-1] + step_mm * d / np.linalg.norm(d), lo, hi)
        pts.append(nxt)
    return tuple(_p(q) for q in pts)


def sample_viscera(rng: np.random.Generator, vertebrae: Sequence, sacrum: Sequence, size: float) -> Viscera:
    """The organs of one subject. ``vertebrae``: its anatomy.Vertebra list; ``size``: scale x habitus."""
    by: Dict[str, object] = {v.name: v for v in vertebrae}
    last_t = "T13" if "T13" in by else "T12"
    last_l = "L6" if "L6" in by else "L5"

    def at(name: str, dx: float, dy_front: float, dz: float = 0.0) -> np.ndarray:
        """A point beside vertebra ``name``: dx to the left, dy_front in front of its body, dz up."""
        v = by[name]
        return v.centre + np.array([dx, -(v.ra + dy_front), dz])

    j = lambda s=1.0: float(rng.normal(1.0, 0.08 * s))  # noqa: E731 - a few percent of jitter
    h = size
    def blob(name: str, centre, radii, kind: str) -> Blob:
        return Blob(name, _p(centre), tuple(float(r) * h for r in radii), kind)

    blobs = [
        blob("liver", at("T11", -62.0 * h, 40.0 * h, 10.0), (90.0 * j(), 72.0 * j(), 70.0 * j()), "liver"),
        blob("liver_left", at("T11", 18.0 * h, 75.0 * h, 20.0), (48.0 * j(), 28.0, 32.0), "liver"),
        blob("spleen", at(last_t, 82.0 * h, -18.0 * h, 10.0), (20.0, 42.0 * j(), 48.0 * j()), "spleen"),
        blob("stomach", at(last_t, 50.0 * h, 70.0 * h, 25.0), (42.0 * j(), 30.0 * j(), 40.0), "stomach"),
        blob("heart", at("T7", 16.0 * h, 72.0 * h, -10.0), (60.0 * j(0.5), 50.0 * j(0.5), 55.0), "heart"),
    ]
    for sx, dz in ((1.0, 0.0), (-1.0, -15.0)):  # the right kidney sits lower, under the liver
        v = by["L1"]
        c = v.centre + np.array([sx * (v.rl + 46.0 * h), 6.0 * h, dz - 10.0])
        blobs.append(blob(f"kidney_{'L' if sx > 0 else 'R'}", c, (25.0 * j(), 22.0, 55.0 * j()), "kidney"))
    s3 = sacrum[min(2, len(sacrum) - 1)]
    fill = float(rng.uniform(0.35, 1.2))
    blobs.append(blob("bladder", s3.centre + np.array([0.0, -95.0 * h, -25.0 * h]),
                      (42.0 * fill, 32.0 * fill, 30.0 * fill), "bladder"))

    tubes = []
    # Aorta: ascending from the heart, the arch over the left main bronchus, descending left of the thoracic
    # spine and in front of the lumbar spine, dividing at L4 into the common iliac arteries.
    arch = [at("T6", 0.0, 75.0 * h, 0.0), at("T4", -5.0 * h, 70.0 * h, 15.0), at("T3", 8.0 * h, 45.0 * h, 12.0),
            at("T4", 22.0 * h, 14.0 * h, 0.0)]
    desc = [at(n, (0.55 * by[n].rl + 12.0) if n[0] == "T" else 6.0, 13.0 * h) for n in
            [f"T{k}" for k in range(5, 13)] + ([last_t] if last_t == "T13" else []) + ["L1", "L2", "L3", "L4"]]
    tubes.append(Tube("aorta", tuple(_p(q) for q in arch + desc), 12.0 * h * j(0.5), "arterial"))
    for sx in (1.0, -1.0):
        iliac = (desc[-1], at(last_l, sx * 35.0 * h, 8.0 * h, -30.0),
                 s3.centre + np.array([sx * 60.0 * h, -55.0 * h, -10.0]))
        tubes.append(Tube(f"iliac_{sx:+.0f}", tuple(_p(q) for q in iliac), 6.5 * h, "arterial"))
    ivc = [at(n, -(0.5 * by[n].rl + 16.0 * h), 8.0 * h) for n in ["L4", "L3", "L2", "L1", last_t, "T11"]]
    ivc.append(at("T10", -30.0 * h, 45.0 * h, 0.0))
    tubes.append(Tube("ivc", tuple(_p(q) for q in ivc), 11.0 * h * j(0.5), "venous"))
    # Colon: ascending on the right, transverse in front, descending on the left, sigmoid into the pelvis; each
    # stretch with its own content.
    colon = [s3.centre + np.array([-72.0 * h, -75.0 * h, 40.0]), at("L3", -78.0 * h, 40.0 * h),
             at("L1", -68.0 * h, 55.0 * h), at("L2", -20.0 * h, 105.0 * h, 10.0), at("L2", 30.0 * h, 105.0 * h, 20.0),
             at(last_t, 70.0 * h, 45.0 * h), at("L2", 82.0 * h, 35.0 * h), at("L4", 80.0 * h, 40.0 * h),
             s3.centre + np.array([35.0 * h, -60.0 * h, 20.0]), s3.centre + np.array([0.0, -35.0 * h, -10.0])]
    colon = [q + rng.normal(0.0, 6.0, size=3) for q in colon]
    radius = 20.0 * h * j()
    for name, a, b in (("ascending", 0, 3), ("transverse", 2, 6), ("descending", 5, len(colon))):
        content = str(rng.choice(["faeces", "gas", "faeces", "fluid"]))
        tubes.append(Tube(f"colon_{name}", tuple(_p(q) for q in colon[a:b]), radius, content))
    lo = at("L4", -70.0 * h, 110.0 * h, -30.0)
    hi = at("L1", 70.0 * h, 25.0 * h, 0.0)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    for k in range(int(rng.integers(6, 13))):
        start = lo + rng.random(3) * (hi - lo)
        content = str(rng.choice(["fluid", "fluid", "gas", "faeces"]))
        tubes.append(Tube(f"bowel_{k}", _random_walk(rng, start, lo, hi, int(rng.integers(5, 10)), 24.0 * h),
                          float(rng.uniform(9.0, 15.0)) * h, content))
    # Pulmonary vessels: trees from each hilum, thinning outwards.
    for sx in (1.0, -1.0):
        hilum = at("T6", sx * (by["T6"].rl + 22.0 * h), 20.0 * h, 0.0)
        for _ in range(7):
            d = rng.normal(size=3) * [1.0, 0.8, 1.6]
            d[0] = sx * abs(d[0]) + sx * 0.6
            d /= np.linalg.norm(d)
            mid = hilum + d * rng.uniform(35.0, 60.0) * h
            tubes.append(Tube("pulmonary", (_p(hilum), _p(mid)), 3.8 * h, "venous"))
            for _ in range(2):
                e = d + rng.normal(0.0, 0.5, size=3)
                tubes.append(Tube("pulmonary", (_p(mid), _p(mid + e / np.linalg.norm(e) * rng.uniform(25.0, 50.0) * h)),
                                  2.0 * h, "venous"))
    return Viscera(tuple(blobs), tuple(tubes))
