"""The body around the spine, painted on the whole grid before any bone: air, skin fat, muscle, viscera,
lungs, heart, aorta, airway, psoas, kidneys, liver, bowel gas.

Everything is a function of the subject-frame height z through the *level coordinate* (C1 = 0, T1 = 7, last
thoracic = 18, L1 = 19, last lumbar = 23, S1 = 24.6), so the thorax ends where this subject's thoracic spine
ends, whatever its length. Per-height parameters are tabulated once on a 1 mm table and gathered per voxel, so
the cost is a handful of vectorised ellipse tests over the grid.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .anatomy import Subject
from .sdf import occupancy
from .shapes import AIR, FAT, LUNG, MUSCLE, SOFT
from .thorax import RIB_DEPTH, RIB_WIDTH, chest_centre_y

HU_AIR, HU_FAT, HU_MUSCLE, HU_VISCERA, HU_LUNG = -1000.0, -100.0, 50.0, 35.0, -850.0

# Body outline against the level coordinate: half width W, half depth D, distance from the spine to the
# posterior skin B, subcutaneous fat F (mm, before the subject's habitus and fat factors).
_L = [-4.0, -1.0, 0.0, 3.0, 5.5, 7.0, 9.0, 12.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.6, 27.0, 31.0]
_W = [75, 68, 60, 52, 58, 140, 150, 150, 148, 145, 142, 140, 148, 162, 170, 170]
_D = [92, 85, 62, 52, 55, 80, 95, 108, 112, 112, 110, 108, 105, 105, 100, 100]
_B = [78, 72, 62, 56, 60, 72, 80, 82, 84, 86, 88, 90, 92, 90, 86, 86]
_F = [4, 5, 6, 7, 8, 10, 10, 10, 12, 14, 16, 18, 20, 22, 22, 22]


def _interp(x, xp, fp):
    return np.interp(x, xp, np.asarray(fp, dtype=float))


def _level_table(subject: Subject, zs: np.ndarray) -> np.ndarray:
    """Level coordinate at each height, extrapolated linearly above the skull base and below the coccyx."""
    z, l = subject.level_anchors()
    order = np.argsort(z)
    z, l = z[order], l[order]
    out = np.interp(zs, z, l)
    top_slope = (l[-1] - l[-2]) / (z[-1] - z[-2])
    bot_slope = (l[1] - l[0]) / (z[1] - z[0])
    out = np.where(zs > z[-1], l[-1] + (zs - z[-1]) * top_slope, out)
    return np.where(zs < z[0], l[0] + (zs - z[0]) * bot_slope, out)


def profiles(subject: Subject, z0: float, z1: float) -> dict:
    """Per-millimetre table of every height-dependent parameter between z0 and z1."""
    zs = np.arange(np.floor(z0) - 2.0, np.ceil(z1) + 3.0, 1.0)
    cl = subject.centreline[::-1]  # ascending z for np.interp
    vz = np.array([v.centre[2] for v in subject.vertebrae])[::-1]
    lev = _level_table(subject, zs)
    h, f = subject.habitus, subject.fat
    t = {
        "z0": zs[0],
        "n": len(zs),
        "cx": np.interp(zs, cl[:, 2], cl[:, 0]),
        "cy": np.interp(zs, cl[:, 2], cl[:, 1]),
        "lev": lev,
        "ra": np.interp(zs, vz, np.array([v.ra for v in subject.vertebrae])[::-1]),
        "rl": np.interp(zs, vz, np.array([v.rl for v in subject.vertebrae])[::-1]),
        "F": _interp(lev, _L, _F) * f,
    }
    t["W"] = _interp(lev, _L, _W) * h + 0.5 * t["F"]
    t["D"] = _interp(lev, _L, _D) * h + 0.5 * t["F"]
    t["B"] = _interp(lev, _L, _B) * subject.scale + 0.6 * t["F"]
    # Lungs: from the apex just above T1 to the posterior costophrenic recess just below the last thoracic level.
    tau = (lev - 6.3) / (19.4 - 6.3)
    t["lung_w"] = _interp(tau, [0.0, 0.15, 0.5, 0.85, 1.0], [18, 42, 56, 56, 22]) * h * (tau > 0) * (tau < 1)
    t["lung_a"] = _interp(tau, [0.0, 0.15, 0.5, 0.8, 1.0], [18, 45, 75, 72, 22]) * h * (tau > 0) * (tau < 1)
    t["lung_y"] = _interp(tau, [0.0, 0.15, 0.5, 0.8, 1.0], [2, -18, -38, -32, 18]) * h
    # The rib cage the lungs sit in: the ellipse the ribs follow (shapes.rib_solids), inset by a rib's thickness.
    rib_lev = [7.0 + 11.0 * k / 11.0 for k in range(12)]
    t["rib_w"] = _interp(lev, rib_lev, RIB_WIDTH) * h * subject.scale
    t["rib_d"] = t["rib_w"] * _interp(lev, rib_lev, RIB_DEPTH)
    t["canal_y"] = np.interp(zs, vz, np.array([v.canal_y for v in subject.vertebrae])[::-1])
    t["airway"] = _interp(lev, [-0.8, -0.4, 9.8, 10.2], [0, 1, 1, 0])
    t["retro"] = _interp(lev, [17.0, 18.5, 23.5, 25.5], [0, 1, 1, 0])
    t["psoas"] = _interp(lev, [18.0, 19.0, 21.0, 23.0, 24.6, 25.8], [0, 8, 15, 21, 23, 0]) * h
    return {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in t.items()}


def _ellipse_d(dx, dy, rx, ry):
    """Approximate signed distance (mm) to an axis-aligned ellipse of semi-axes rx, ry."""
    rx = np.maximum(rx, 1e-3)
    ry = np.maximum(ry, 1e-3)
    return (np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) - 1.0) * np.minimum(rx, ry)


def paint_background(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, subject: Subject, width: float,
                     axis: int = 0, slab: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """(HU, tissue class) of the soft-tissue body on voxels at subject-frame coordinates X, Y, Z.

    Painted in slabs along the head-foot array ``axis``, so that an organ is only evaluated where its level
    range is in view (the lungs cost nothing in a lumbar scan)."""
    t = profiles(subject, float(Z.min()), float(Z.max()))
    hu = np.full(X.shape, HU_AIR, np.float32)
    tissue = np.full(X.shape, AIR, np.uint8)
    for start in range(0, X.shape[axis], slab):
        sl = [slice(None)] * 3
        sl[axis] = slice(start, start + slab)
        sl = tuple(sl)
        _paint_slab(X[sl], Y[sl], Z[sl], subject, t, width, hu[sl], tissue[sl])
    return hu, tissue


def _paint_slab(X, Y, Z, subject: Subject, t: dict, width: float, hu: np.ndarray, tissue: np.ndarray) -> None:
    r = np.clip((Z - t["z0"]).astype(np.int32), 0, t["n"] - 1)

    def g(key):
        return t[key][r]

    dx = X - g("cx")
    dy = Y - g("cy")
    lev = g("lev")
    W, D, B, F = g("W"), g("D"), g("B"), g("F")
    ra, rl = g("ra"), g("rl")

    def paint(o, value, cls):
        hu[...] += (np.float32(value) - hu) * o
        tissue[o >= 0.5] = cls

    ey = dy - (B - D)  # relative to the body-outline centre
    paint(occupancy(_ellipse_d(dx, ey, W, D), width), HU_FAT, FAT)
    inner = occupancy(_ellipse_d(dx, ey, W - F, D - F), width)
    # Neck and back are muscle, split at the midline by a fat septum behind the spinous processes; the thoracic
    # and abdominal cavities in front of the spine hold fat around the organs (organs.py paints those), more of it
    # in the abdomen and in a fatter subject.
    # The cavity: an ellipse from 15 mm inside the front wall back to just behind the vertebral bodies' front.
    front, back = (B - D) - (D - F) + 15.0, -ra + 6.0
    cavity = _ellipse_d(dx, dy - 0.5 * (front + back), W - F - 18.0, np.maximum(0.5 * (back - front), 1.0))
    visceral = occupancy(cavity, 8.0) * (lev > 6.5)
    paint(inner, HU_MUSCLE, MUSCLE)
    paint(occupancy(np.abs(dx) - 1.2, width) * (dy > g("canal_y") + 14.0) * inner, HU_FAT, FAT)
    f = np.clip(0.3 * subject.fat, 0.1, 0.75) * np.clip((lev - 12.0) / 8.0, 0.5, 1.0)
    paint(inner * visceral, HU_VISCERA + (HU_FAT - HU_VISCERA) * f, SOFT)

    lev_lo, lev_hi = float(lev.min()), float(lev.max())
    if lev_hi > 17.0 and lev_lo < 25.5:
        retro = g("retro")
        # Retroperitoneal fat in front of and beside the lumbar spine, around the psoas, kidneys and aorta.
        band = occupancy(np.maximum(_ellipse_d(dx, dy + 0.3 * ra, 105.0, ra + 32.0), dy - 5.0 + 0.004 * dx * dx), width)
        paint(band * retro * inner, -80.0, FAT)
        pr = g("psoas")
        for sx in (-1.0, 1.0):
            paint(occupancy(_ellipse_d(dx - sx * (rl + 0.8 * pr), dy + 0.2 * ra, pr, 0.85 * pr), width) * (pr > 1.0),
                  HU_MUSCLE, MUSCLE)
    if lev_hi > 6.3 and lev_lo < 19.4:
        # Lungs: inside the body wall, inside the ribs (whose posterior arcs run at the level of the transverse
        # processes: behind that lie the paraspinal muscles), beside the spine.
        wc = g("rib_w")
        y_cc = g("canal_y")  # canal centre; the rib necks run from there out to the rib angles
        dc = g("rib_d")
        yc = chest_centre_y(y_cc, dc)  # centre of the ribs' ellipse (thorax.rib_path)
        cage = np.maximum(np.maximum(_ellipse_d(dx, ey, W - F - 18.0, D - F - 18.0),
                                     _ellipse_d(dx, dy - yc, wc - 9.0, dc - 9.0)),
                          dy - (y_cc - 3.0 - 0.002 * dx * dx))  # posterior arcs curve forward laterally
        ribcage = occupancy(cage, width)
        lw, la, ly = g("lung_w"), g("lung_a"), g("lung_y")
        for sx in (-1.0, 1.0):
            d = _ellipse_d(dx - sx * (rl + 5.0 + lw), dy - ly, lw, la)
            paint(occupancy(d, width) * ribcage * (lw > 1.0), HU_LUNG, LUNG)
    if lev_lo < 10.2 and lev_hi > -0.8:
        aw = g("airway")
        paint(occupancy(_ellipse_d(dx, dy + ra + 23.0, 8.5 * aw, 7.5 * aw), width) * (aw > 0.05) * inner, HU_AIR, AIR)
