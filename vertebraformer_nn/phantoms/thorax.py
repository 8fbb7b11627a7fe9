"""The bony thorax around the thoracic spine (all unlabelled, as in every source): ribs that articulate with the
vertebrae, costal cartilages, the sternum, scapulae and clavicles.

Each rib k starts with its head at the costovertebral joint (beside the body at the level of the disc above T_k
for ribs 2-9, on the body of T_k for 1 and 10-12), a joint space away from the bone, runs back and out along
its neck to the tubercle, which rests in front of the tip of T_k's transverse process (the costotransverse
joint), and then follows an ellipse around the chest, dropping as it runs forward, to its anterior end; a
cartilage carries ribs 1-7 on to the sternum and ribs 8-10 to the cartilage above; 11 and 12 float. A T13
carries a short rib. The scapulae lie on the back of ribs 2-7 and the clavicles run from the manubrium out
to the acromion, so that a chest scan holds the bones a network must learn to leave unlabelled.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .anatomy import Subject, Vertebra
from . import shape_model
from .sdf import Capsule, Ellipsoid, cosine_series
from .shapes import SOFT, Material, Solid, bone_material

# Half width of the chest ellipse each rib follows (T1..T12), its half depth as a fraction of that (the upper
# chest is rounder), how far the rib's front end drops (mm), and the angle (degrees on that ellipse, 90 = front)
# where the bone ends.
RIB_WIDTH = (55, 75, 90, 100, 108, 112, 115, 115, 112, 108, 100, 90)
RIB_DEPTH = (1.2, 1.0, 0.92, 0.86, 0.82, 0.8, 0.78, 0.76, 0.75, 0.75, 0.75, 0.75)
_RIB_DROP = (45, 55, 60, 62, 64, 66, 66, 64, 58, 50, 40, 30)
_RIB_END_DEG = (62, 66, 68, 70, 70, 70, 70, 58, 55, 52, 15, -10)
_START_DEG = -40.0
JOINT_GAP = 1.6  # mm of joint space between a rib and the vertebra it articulates with
HU_CARTILAGE = 110.0


def chest_centre_y(canal_y: float, depth: float) -> float:
    """y of the centre of the ellipse a rib of half depth ``depth`` follows, for a vertebra whose canal centre is
    at ``canal_y`` (where the rib leaves its tubercle, the ellipse passes 11 mm behind the canal centre)."""
    return canal_y + 11.0 - depth * np.sin(np.deg2rad(-_START_DEG))


def _rib_number(v: Vertebra) -> int:
    return 12 if v.name == "T13" else int(v.name[1:])


def _clear_of(v: Vertebra, start: np.ndarray, direction: np.ndarray, clearance: float) -> np.ndarray:
    """The first point from ``start`` along ``direction`` at least ``clearance`` from every part of ``v``."""
    body, other = shape_model.parts(v.shape, v.name)
    d = direction / np.linalg.norm(direction)
    ray = (np.asarray(start, float) + np.arange(0.0, 60.0, 0.25)[:, None] * d).astype(np.float32)
    dist = np.min([q.sdf(ray[:, 0], ray[:, 1], ray[:, 2]) for q in body + other], axis=0)
    clear = np.flatnonzero(dist >= clearance)
    return ray[clear[0] if len(clear) else -1].astype(float)


def _head(v: Vertebra, k: int, rr: float) -> np.ndarray:
    """Left rib head: beside the body's posterolateral wall at the disc above (ribs 2-9) or on the body (1, 10-12),
    a joint space off the vertebra."""
    theta = np.deg2rad(118.0)
    r = float(cosine_series(float(np.cos(theta)), v.body_profile))
    z = v.hb + 0.5 * v.disc_above if 2 <= k <= 9 else 0.35 * v.hb
    direction = np.array([np.sin(theta), -np.cos(theta), 0.0])
    return _clear_of(v, direction * r + [0.0, 0.0, z], direction, JOINT_GAP + rr)


def _tubercle(v: Vertebra, rr: float) -> np.ndarray:
    """Left rib tubercle: in front of the transverse process tip, a joint space away."""
    tip = np.asarray(v.shape["tp_tip"], float)
    return _clear_of(v, tip, np.array([0.15, -1.0, 0.0]), JOINT_GAP + rr)


def rib_path(subject: Subject, v: Vertebra) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(bone points, cartilage points) of the left rib of ``v`` in its frame (mirror x for the right)."""
    k = _rib_number(v)
    rr = 3.6 * subject.scale
    head, tub = _head(v, k, rr), _tubercle(v, rr)
    if v.name == "T13":
        return [head, tub, tub + np.array([30.0, 6.0, -8.0])], []  # a stub: T13 carries a short rib
    wc = RIB_WIDTH[k - 1] * subject.habitus * subject.scale
    dc = RIB_DEPTH[k - 1] * wc
    yc = chest_centre_y(v.canal_y, dc)
    th0, th1 = np.deg2rad(_START_DEG), np.deg2rad(_RIB_END_DEG[k - 1])
    n = max(int(np.ceil((th1 - th0) / np.deg2rad(12.0))), 2)
    pts = [head, tub]
    drop = _RIB_DROP[k - 1] * subject.scale

    def at(t):
        f = (t - th0) / (th1 - th0)
        return np.array([wc * np.cos(t), yc - dc * np.sin(t), tub[2] - drop * max(f, 0.0) ** 1.2])

    pts += [at(t) for t in np.linspace(th0, th1, n + 1)]
    cart: List[np.ndarray] = []
    if k <= 10:
        # Costal cartilage: on round the ellipse to the sternum's edge (1-7), or up to the cartilage above (8-10).
        end = np.deg2rad(84.0) if k <= 7 else np.deg2rad(80.0)
        cart = [pts[-1], at(0.5 * (th1 + end)), at(end) + np.array([0.0, 0.0, 6.0 if k <= 7 else 14.0 + 2.0 * k])]
    return pts, cart


def _chain(points: List[np.ndarray], r: float, stretch=(1.0, 1.0, 1.45), mirror: bool = False) -> Tuple:
    f = np.array([-1.0, 1.0, 1.0]) if mirror else np.ones(3)
    return tuple(Capsule(tuple(f * p), tuple(f * q), r, stretch) for p, q in zip(points[:-1], points[1:]))


def rib_solids(subject: Subject) -> List[Solid]:
    out = []
    mat = bone_material(subject, subject.vertebrae[0].trabecular_hu + 40.0)
    cart_mat = Material("soft", HU_CARTILAGE + 60.0 * subject.cartilage_calcification, tissue=SOFT)
    for v in (v for v in subject.vertebrae if v.region == "thoracic"):
        bone, cart = rib_path(subject, v)
        rr = 3.6 * subject.scale
        for side, mirror in (("L", False), ("R", True)):
            out.append(Solid(f"rib_{v.name}_{side}", v.centre, v.rot, _chain(bone, rr, mirror=mirror), mat))
            if cart:
                out.append(Solid(f"cartilage_{v.name}_{side}", v.centre, v.rot, _chain(cart, 0.9 * rr, mirror=mirror),
                                 cart_mat))
    return out


def _in_subject(v: Vertebra, p) -> np.ndarray:
    return v.centre + v.rot @ np.asarray(p, float)


def sternum_and_shoulders(subject: Subject) -> List[Solid]:
    """Sternum (manubrium, body, xiphoid) where the first seven cartilages end; scapulae behind ribs 2-7;
    clavicles from the manubrium to the acromion. Built in the subject frame."""
    verts: Dict[str, Vertebra] = {v.name: v for v in subject.vertebrae}
    if not all(f"T{k}" in verts for k in range(1, 8)):
        return []
    sc = subject.scale * subject.habitus
    ends = []
    for k in range(1, 8):
        _, cart = rib_path(subject, verts[f"T{k}"])
        ends.append(_in_subject(verts[f"T{k}"], cart[-1] * [0.0, 1.0, 1.0]))
    ends = np.array(ends)
    front = ends + np.array([0.0, -4.0 * sc, 0.0])  # the sternum lies just in front of the cartilages' ends
    top = front[0] + np.array([0.0, 4.0, 22.0 * sc])
    xiphoid = front[-1] + np.array([0.0, -6.0 * sc, -40.0 * sc])
    chain = [top, *front[1:], xiphoid]
    mat = bone_material(subject, subject.vertebrae[0].trabecular_hu + 30.0)
    parts = [Capsule(tuple(p), tuple(q), 5.0 * sc, (2.6, 1.0, 1.0)) for p, q in zip(chain[:-1], chain[1:])]
    parts.append(Ellipsoid(tuple(top + [0.0, 2.0, -8.0 * sc]), (26.0 * sc, 7.0 * sc, 14.0 * sc)))  # manubrium
    out = [Solid("sternum", np.zeros(3), np.eye(3), tuple(parts), mat)]
    t2, t7 = verts["T2"], verts["T7"]
    back = 0.5 * (t2.centre + t7.centre)
    for sx in (-1.0, 1.0):
        # Scapula: medial and lateral borders, spine and glenoid, as plates in the subject frame.
        sup = t2.centre + np.array([sx * 55.0 * sc, 62.0 * sc, 8.0])
        inf = t7.centre + np.array([sx * 70.0 * sc, 58.0 * sc, -10.0])
        glen = back + np.array([sx * 130.0 * sc, 10.0 * sc, 55.0 * sc + 0.5 * (t2.centre[2] - t7.centre[2])])
        acrom = glen + np.array([sx * 8.0 * sc, 35.0 * sc, 22.0 * sc])
        spine_root = sup + 0.25 * (inf - sup)
        scap = [Capsule(tuple(sup), tuple(inf), 3.0 * sc), Capsule(tuple(inf), tuple(glen), 4.0 * sc),
                Capsule(tuple(sup), tuple(glen), 2.5 * sc),
                Capsule(tuple(spine_root), tuple(acrom), 3.5 * sc, (1, 1.6, 1)),  # the spine of the scapula
                Ellipsoid(tuple(glen), (9.0 * sc, 14.0 * sc, 18.0 * sc))]
        for f in (0.3, 0.55, 0.8):  # the thin blade between the borders
            scap.append(Capsule(tuple(glen), tuple(sup + f * (inf - sup)), 1.6 * sc, (1.0, 1.0, 3.0)))
        out.append(Solid(f"scapula_{'L' if sx > 0 else 'R'}", np.zeros(3), np.eye(3), tuple(scap), mat))
        medial = top + np.array([sx * 22.0 * sc, 2.0, -4.0 * sc])
        mid = medial + np.array([sx * 60.0 * sc, -6.0 * sc, 10.0 * sc])
        clav = [Capsule(tuple(medial), tuple(mid), 6.0 * sc), Capsule(tuple(mid), tuple(acrom), 5.5 * sc)]
        out.append(Solid(f"clavicle_{'L' if sx > 0 else 'R'}", np.zeros(3), np.eye(3), tuple(clav), mat))
    return out


def thorax_solids(subject: Subject) -> List[Solid]:
    return rib_solids(subject) + sternum_and_shoulders(subject)
