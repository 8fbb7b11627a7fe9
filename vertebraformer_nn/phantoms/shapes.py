"""Subject geometry -> solids: each structure as a union of SDF primitives in its own frame, with a material.

A solid is what the renderer paints: vertebrae (labelled with their VerSe code), discs, the spinal canal's
contents, ribs, sacrum, pelvis, skull base and metal (all unlabelled, as in every source). Coordinates of
parts are in the solid's local frame (x left, y posterior, z superior), see anatomy.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Tuple

import numpy as np

from .anatomy import Lesion, Segment, Subject, Vertebra, frame_from_up
from .sdf import Capsule, Ellipsoid, EllipsoidShell, EllipticCylinder, VertebralBody

# Tissue classes of the renderer's tissue map (used by tests and previews, never written as truth).
AIR, FAT, SOFT, LUNG, DISC, CORTEX, TRABECULAR, LYTIC, BLASTIC, METAL, CANAL, MUSCLE = range(12)
TISSUE_NAMES = ("air", "fat", "soft", "lung", "disc", "cortex", "trabecular", "lytic", "blastic", "metal",
                "canal", "muscle")

HU_DISC_ANNULUS = 100.0
HU_DISC_NUCLEUS = 75.0
HU_CANAL = 25.0
HU_BRAIN = 35.0
HU_METAL = 3000.0


@dataclass(frozen=True)
class Material:
    kind: str  # "bone" (cortical shell over a trabecular core), "soft" or "metal" (uniform)
    hu: float  # soft / metal value; trabecular value of bone
    cortical_hu: float = 0.0
    cortex_mm: float = 0.0
    posterior_extra_hu: float = 0.0  # bone outside the body core reads denser (thin processes)
    tissue: int = SOFT


@dataclass(frozen=True)
class Solid:
    name: str
    centre: np.ndarray  # subject frame
    rot: np.ndarray  # columns: local axes in the subject frame
    parts: Tuple
    material: Material
    label: int = 0  # VerSe code painted into the vertebra map, 0 = unlabelled
    body: Tuple = ()  # parts forming the trabecular core of a vertebral body
    lesions: Tuple[Tuple[Lesion, Tuple], ...] = ()


def _bone(subject: Subject, trabecular: float) -> Material:
    b = subject.bone
    return Material("bone", trabecular, b.cortical_hu, b.cortex_mm, b.posterior_extra_hu, CORTEX)


# --- vertebrae ------------------------------------------------------------------------------------------------


def body_part(v: Vertebra) -> VertebralBody:
    return VertebralBody(ra=v.ra, rl=v.rl, hb=v.hb, loss=v.fracture_loss, kind=v.fracture_kind or "wedge")


def _canal_centre(v: Vertebra) -> float:
    return 0.78 * v.ra + v.rca


def posterior_parts(v: Vertebra) -> List:
    """Pedicles, laminae, spinous process, transverse and articular processes of a C2..L6 vertebra."""
    y_pw, y_cc = 0.78 * v.ra, _canal_centre(v)
    x_ped, z_ped = v.rcl + 0.45 * v.rp, 0.2 * v.hb
    lam_r = 0.6 * v.rp
    region = v.region
    parts: List = []
    for sx in (-1.0, 1.0):
        parts.append(Capsule((sx * x_ped, y_pw - 2.0, z_ped), (sx * x_ped, y_cc + 0.2 * v.rca, z_ped), v.rp, (1, 1, 1.5)))
        parts.append(Capsule((sx * x_ped, y_cc + 0.3 * v.rca, 0.5 * z_ped), (0.0, y_cc + v.rca + lam_r + 1.0, -0.25 * v.hb),
                             lam_r, (1, 1, 2.2)))
        if region == "cervical":
            tp_back, tp_r, tp_st = -6.0, 2.8, 1.2
        elif region == "thoracic":
            tp_back, tp_r, tp_st = 10.0, 3.8, 1.2
        else:
            tp_back, tp_r, tp_st = 2.0, 3.0, 1.9
        parts.append(Capsule((sx * (x_ped + 0.3 * v.rp), y_cc - 0.1 * v.rca, z_ped),
                             (sx * v.tp_len, y_cc + tp_back, z_ped + 1.0), tp_r, (1, 1, tp_st)))
        # Articular processes interlock with the neighbours' (inferior ones sit just behind the superior ones below).
        parts.append(Capsule((sx * (x_ped + 0.3 * v.rp), y_cc + 0.3 * v.rca, z_ped),
                             (sx * (x_ped + 0.3 * v.rp), y_cc + 0.45 * v.rca, v.hb + 0.6 * v.disc_above + 1.0), 0.75 * v.rp))
        parts.append(Capsule((sx * x_ped, y_cc + 0.7 * v.rca, -0.2 * v.hb),
                             (sx * x_ped, y_cc + 0.85 * v.rca, -v.hb - 0.6 * v.disc_below - 1.0), 0.7 * v.rp))
    ang = np.deg2rad(v.sp_ang)
    root = np.array([0.0, y_cc + v.rca + lam_r, -0.25 * v.hb])
    tip = root + v.sp_len * np.array([0.0, np.cos(ang), -np.sin(ang)])
    sp_r = 0.55 * v.rp + 0.5
    parts.append(Capsule(tuple(root), tuple(tip), sp_r, (1, 1, 2.6 if region == "lumbar" else 1.6)))
    if region == "cervical" and v.name != "C7":
        # C2-C6 spinous processes end bifid: two small tubercles at the tip.
        for sx in (-1.0, 1.0):
            parts.append(Capsule(tuple(tip - [0, 3.0, 0]), tuple(tip + [sx * 3.5, 1.5, -1.0]), 0.8 * sp_r))
    return parts


def atlas_parts(v: Vertebra) -> List:
    """C1: a ring (anterior arch, lateral masses, posterior arch) around the dens and the canal; no body."""
    s = v.rl / 9.0
    parts: List = [Capsule((0.0, -11.0 * s, 0.0), (sx * 10.0 * s, -7.0 * s, 0.0), 4.5 * s, (1, 1, 1.5)) for sx in (-1, 1)]
    for sx in (-1.0, 1.0):
        parts.append(Ellipsoid((sx * 16.0 * s, 1.0 * s, 0.0), (6.5 * s, 9.5 * s, 8.0 * s)))
        parts.append(Capsule((sx * 15.0 * s, 6.0 * s, 0.0), (sx * 12.0 * s, 20.0 * s, 1.0), 3.5 * s, (1, 1, 1.4)))
        parts.append(Capsule((sx * 12.0 * s, 20.0 * s, 1.0), (0.0, 26.0 * s, 1.5), 3.5 * s, (1, 1, 1.4)))
        parts.append(Capsule((sx * 20.0 * s, 0.0, 0.0), (sx * v.tp_len, 2.0 * s, -1.0), 4.0 * s, (1, 1, 1.2)))
    return parts


#: Local point that stands for C1's "body" centroid: C1 has no body, and the centre of its ring lies in the
#: dens (C2); the middle of the anterior arch is inside C1 and on the same axial level.
def atlas_centroid_local(v: Vertebra) -> np.ndarray:
    return np.array([0.0, -11.0 * v.rl / 9.0, 0.0])


@lru_cache(maxsize=4096)
def _body_centroid_cached(ra, rl, hb, loss, kind) -> Tuple[float, float, float]:
    body = VertebralBody(ra=ra, rl=rl, hb=hb, loss=loss, kind=kind or "wedge")
    lo, hi = body.bbox()
    axes = [np.arange(lo[i] + 0.35, hi[i], 0.7) for i in range(3)]  # 0.7 mm: centroid exact to ~0.1 mm
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = body.sdf(x, y, z) < 0
    return float(x[inside].mean()), float(y[inside].mean()), float(z[inside].mean())


def body_centroid_local(v: Vertebra) -> np.ndarray:
    """Exact (0.7 mm sampled) centroid of the vertebral body as drawn, fractures included; see C1 above."""
    if v.name == "C1":
        return atlas_centroid_local(v)
    return np.array(_body_centroid_cached(round(v.ra, 6), round(v.rl, 6), round(v.hb, 6), round(v.fracture_loss, 6),
                                          v.fracture_kind))


def body_centroid_subject(v: Vertebra) -> np.ndarray:
    return v.centre + v.rot @ body_centroid_local(v)


def lesion_parts(les: Lesion) -> Tuple:
    c = np.asarray(les.centre)
    return (Ellipsoid(tuple(c), tuple(les.radii)),
            Ellipsoid(tuple(c + les.lobe_offset), tuple(np.asarray(les.radii) * les.lobe_scale)))


def vertebra_solid(subject: Subject, v: Vertebra) -> Solid:
    if v.name == "C1":
        parts = tuple(atlas_parts(v))
        body: Tuple = ()
    else:
        b = body_part(v)
        parts = (b, *posterior_parts(v))
        if v.name == "C2":
            # The dens rises from C2's body through the ring of C1.
            top = v.hb + v.disc_above + 2.0 * 8.0 * subject.scale + 2.0
            parts = parts + (Capsule((0.0, -0.05 * v.ra, 0.0), (0.0, -0.05 * v.ra, top), 5.0 * subject.scale),)
        body = (b,)
    lesions = tuple((les, lesion_parts(les)) for les in subject.lesions if les.vertebra == v.code)
    return Solid(v.name, v.centre, v.rot, parts, _bone(subject, v.trabecular_hu), label=v.code, body=body, lesions=lesions)


# --- soft solids around the spine ------------------------------------------------------------------------------


def _mid_frame(a: Vertebra, b: Vertebra) -> Tuple[np.ndarray, np.ndarray, float]:
    top = a.centre - a.up * a.hb
    bottom = b.centre + b.up * b.hb
    up = a.up + b.up
    rot = frame_from_up(up)
    gap = float(np.dot(top - bottom, rot[:, 2]))
    return 0.5 * (top + bottom), rot, gap


def disc_solids(subject: Subject) -> List[Solid]:
    """Annulus and nucleus between consecutive bodies (none between C1 and C2, which has a joint, not a disc),
    and the lumbosacral disc. Overfilled in height: the bodies painted afterwards trim them to the endplates."""
    out = []
    verts = list(subject.vertebrae)
    s1 = subject.sacrum[0]
    pairs = list(zip(verts[1:-1], verts[2:]))
    for a, b in pairs + [(verts[-1], None)]:
        if b is None:
            top = a.centre - a.up * a.hb
            bottom = s1.centre + s1.rot[:, 2] * s1.hb
            rot = frame_from_up(a.up + s1.rot[:, 2])
            centre, gap = 0.5 * (top + bottom), float(np.dot(top - bottom, rot[:, 2]))
            ra, rl = 0.5 * (a.ra + s1.ra), 0.5 * (a.rl + s1.rl)
        else:
            centre, rot, gap = _mid_frame(a, b)
            ra, rl = 0.5 * (a.ra + b.ra), 0.5 * (a.rl + b.rl)
        hz = max(gap, 1.0) / 2 + 3.0
        annulus = EllipticCylinder((0.0, 0.0, 0.0), rl * 1.03, ra * 1.03, hz, posterior_flat=0.8)
        nucleus = Ellipsoid((0.0, 0.1 * ra, 0.0), (0.5 * rl, 0.45 * ra, max(gap, 1.0) * 0.35))
        out.append(Solid(f"disc_{a.name}", centre, rot, (annulus,), Material("soft", HU_DISC_ANNULUS, tissue=DISC)))
        out.append(Solid(f"nucleus_{a.name}", centre, rot, (nucleus,), Material("soft", HU_DISC_NUCLEUS, tissue=DISC)))
    return out


def canal_solids(subject: Subject) -> List[Solid]:
    """CSF and cord in the canal, one segment per vertebra, overlapping the next so the tube is continuous."""
    out = []
    for v in subject.vertebrae:
        y_cc = _canal_centre(v) if v.name != "C1" else 13.0 * v.rl / 9.0
        hz = v.hb + 0.5 * max(v.disc_below, v.disc_above) + 3.0
        cyl = EllipticCylinder((0.0, y_cc, 0.0), 0.9 * v.rcl, 0.9 * v.rca, hz)
        out.append(Solid(f"canal_{v.name}", v.centre, v.rot, (cyl,), Material("soft", HU_CANAL, tissue=CANAL)))
    return out


# --- ribs -----------------------------------------------------------------------------------------------------

# Half width of the chest ellipse each rib follows (T1..T12), and how far its front end drops (mm).
_RIB_WIDTH = (55, 75, 90, 100, 108, 112, 115, 115, 112, 108, 100, 90)
_RIB_DROP = (22, 35, 45, 52, 58, 62, 62, 60, 55, 48, 38, 28)
_RIB_END_DEG = (70, 70, 70, 70, 70, 70, 70, 55, 55, 55, 15, -10)


def rib_solids(subject: Subject) -> List[Solid]:
    """Ribs on every thoracic vertebra (T1..T12) and a short one on a T13: head at the body, tubercle at the
    transverse process, then along an ellipse around the chest, dropping as it runs forward."""
    out = []
    thoracic = [v for v in subject.vertebrae if v.region == "thoracic"]
    mat = _bone(subject, subject.vertebrae[0].trabecular_hu + 40.0)
    for v in thoracic:
        k = 12 if v.name == "T13" else int(v.name[1:])
        wc = _RIB_WIDTH[k - 1] * subject.habitus * subject.scale
        dc = 0.75 * wc
        y_cc, z_ped = _canal_centre(v), 0.2 * v.hb
        rr = 3.8 * subject.scale
        for sx in (-1.0, 1.0):
            head = np.array([sx * 0.9 * v.rl, 0.55 * v.ra, 0.55 * v.hb])
            tub = np.array([sx * 0.9 * v.tp_len, y_cc + 3.0, z_ped + 2.0])
            pts = [head, tub]
            if v.name == "T13":
                pts.append(tub + np.array([sx * 30.0, 6.0, -8.0]))  # a stub: T13 carries a short rib
            else:
                th0, th1 = np.deg2rad(-40.0), np.deg2rad(_RIB_END_DEG[k - 1])
                yc = tub[1] + 8.0 - dc * np.sin(-th0)
                n = max(int(np.ceil((th1 - th0) / np.deg2rad(12.0))), 2)
                for t in np.linspace(th0, th1, n + 1):
                    f = (t - th0) / (th1 - th0)
                    pts.append(np.array([sx * wc * np.cos(t), yc - dc * np.sin(t), tub[2] - _RIB_DROP[k - 1] * f ** 1.2]))
            parts = tuple(Capsule(tuple(p), tuple(q), rr, (1, 1, 1.5)) for p, q in zip(pts[:-1], pts[1:]))
            out.append(Solid(f"rib_{v.name}_{'L' if sx > 0 else 'R'}", v.centre, v.rot, parts, mat))
    return out


# --- sacrum, pelvis, skull --------------------------------------------------------------------------------------


def sacrum_solids(subject: Subject) -> List[Solid]:
    """The sacrum as one solid in S1's frame, so its five fused segments share one cortex (a continuous, curved,
    tapering bone, as on CT), plus the coccygeal pieces as separate small bones."""
    segs = subject.sacrum
    s1, last = segs[0], subject.vertebrae[-1]
    r0, c0 = s1.rot, s1.centre

    def to_s1(seg: Segment, p) -> np.ndarray:
        return r0.T @ (seg.centre + seg.rot @ np.asarray(p, float) - c0)

    parts: List = [VertebralBody(ra=s1.ra, rl=s1.rl, hb=s1.hb, concavity=0.0, waist=0.0)]
    sacral = segs[:5]
    for a, b in zip(sacral[:-1], sacral[1:]):
        # Lower segments: a tapered chain along the sacral curve (flattened front to back, wide left to right).
        parts.append(Capsule(tuple(to_s1(a, (0, 0, -0.3 * a.hb))), tuple(to_s1(b, (0, 0, 0))), 0.85 * b.ra,
                             (b.rl / b.ra, 1.0, 1.0)))
    for k, seg in enumerate(sacral):
        # Fused posterior arch: a plate behind the sacral canal with a median crest.
        y_post = 0.78 * seg.ra + 1.2 * last.rca * (1.0 - 0.15 * k) + 2.0
        parts.append(Capsule(tuple(to_s1(seg, (-0.8 * seg.rl, y_post, 0))), tuple(to_s1(seg, (0.8 * seg.rl, y_post, 0))),
                             3.5, (1, 1, 2.5)))
        parts.append(Capsule(tuple(to_s1(seg, (0, y_post, 0))), tuple(to_s1(seg, (0, y_post + 6.0, -2.0))), 3.0, (1, 1, 2.0)))
        for sx in (-1.0, 1.0):
            parts.append(Capsule(tuple(to_s1(seg, (sx * 0.6 * seg.rl, 0.5 * seg.ra, 0))),
                                 tuple(to_s1(seg, (sx * 0.75 * seg.rl, y_post, 0))), 4.0, (1, 1, 2.0)))
    for sx in (-1.0, 1.0):
        # Alae (the wings meeting the ilia) at S1-S2, and S1's superior articular processes facing the last lumbar.
        parts.append(Ellipsoid((sx * (s1.rl + 20.0), 0.3 * s1.ra, -4.0), (26.0, 16.0, 22.0)))
        parts.append(Ellipsoid(tuple(to_s1(segs[1], (sx * (segs[1].rl + 16.0), 0.4 * segs[1].ra, 0))), (22.0, 13.0, 16.0)))
        x = last.rcl + 0.6 * last.rp
        parts.append(Capsule((sx * x, 0.78 * s1.ra + last.rca, 0.0), (sx * x, 0.78 * s1.ra + 0.5 * last.rca, s1.hb + 10.0),
                             0.75 * last.rp))
    out = [Solid("sacrum", c0, r0, tuple(parts), _bone(subject, last.trabecular_hu))]
    for k, seg in enumerate(segs[5:], start=1):
        body = VertebralBody(ra=seg.ra, rl=seg.rl, hb=seg.hb, concavity=0.0, waist=0.0)
        out.append(Solid(f"coccyx_{k}", seg.centre, seg.rot, (body,), _bone(subject, last.trabecular_hu)))
    return out


def pelvis_solids(subject: Subject) -> List[Solid]:
    """Iliac wings flaring anterolaterally from the sacroiliac joints, and the femoral heads (unlabelled)."""
    s1 = subject.sacrum[0]
    rot = frame_from_up(np.array([0.0, -0.15, 1.0]))  # a mild anterior pelvic tilt
    sc = subject.scale * subject.habitus
    mat = _bone(subject, subject.vertebrae[-1].trabecular_hu + 20.0)
    parts = []
    for sx in (-1.0, 1.0):
        # Wings: thin plates (y-radius large, x-radius a few mm) turned so their front swings outward.
        parts.append(Ellipsoid((sx * (s1.rl + 50.0 * sc), -2.0, 28.0 * sc), (6.0, 52.0 * sc, 46.0 * sc),
                               yaw=sx * np.deg2rad(-35.0), roll=sx * np.deg2rad(28.0)))
        parts.append(Ellipsoid((sx * (s1.rl + 30.0 * sc), 14.0, -6.0), (14.0, 16.0, 22.0)))  # sacroiliac region of the ilium
        parts.append(Ellipsoid((sx * 92.0 * sc, -30.0 * sc, -88.0 * sc), (23.0, 23.0, 23.0)))  # femoral head
        parts.append(Ellipsoid((sx * 84.0 * sc, -28.0 * sc, -80.0 * sc), (20.0, 30.0, 30.0)))  # acetabular roof
    return [Solid("pelvis", s1.centre, rot, tuple(parts), mat)]


def skull_solids(subject: Subject) -> List[Solid]:
    """Skull base above C1: an occipital shell with the foramen magnum over the canal, condyles on C1's lateral
    masses, the clivus sloping forward, and the brain inside."""
    c1 = subject.vertebrae[0]
    sc = subject.scale
    centre = (0.0, -8.0 * sc, 76.0 * sc)
    radii = (72.0 * sc, 88.0 * sc, 68.0 * sc)
    shell = EllipsoidShell(centre, radii, thickness=7.0, hole_c=(0.0, 9.0 * sc), hole_r=(15.0 * sc, 19.0 * sc))
    parts = [shell, Capsule((0.0, -13.0 * sc, 14.0 * sc), (0.0, -34.0 * sc, 48.0 * sc), 6.5 * sc)]
    for sx in (-1.0, 1.0):
        parts.append(Ellipsoid((sx * 15.0 * sc, 2.0 * sc, 10.0 * sc), (7.0 * sc, 10.0 * sc, 5.0 * sc)))  # occipital condyles
        parts.append(Ellipsoid((sx * 48.0 * sc, 8.0 * sc, 22.0 * sc), (10.0, 12.0, 14.0)))  # mastoids
    brain = Ellipsoid(centre, tuple(r - 7.0 for r in radii))
    mat = _bone(subject, c1.trabecular_hu + 80.0)
    return [Solid("brain", c1.centre, c1.rot, (brain,), Material("soft", HU_BRAIN, tissue=SOFT)),
            Solid("skull", c1.centre, c1.rot, tuple(parts), mat)]


def metal_solids(subject: Subject) -> List[Solid]:
    """Pedicle screws through the pedicles of the instrumented levels, and two rods joining their heads."""
    if not subject.metal_levels:
        return []
    out = []
    heads = {-1.0: [], 1.0: []}
    mat = Material("metal", HU_METAL, tissue=METAL)
    for code in subject.metal_levels:
        v = subject.vertebra(code)
        y_cc, x_ped, z_ped = _canal_centre(v), v.rcl + 0.45 * v.rp, 0.2 * v.hb
        parts = []
        for sx in (-1.0, 1.0):
            entry = np.array([sx * (x_ped + 5.0), y_cc + v.rca + 4.0, z_ped])
            end = np.array([sx * 0.2 * v.rl, -0.35 * v.ra, z_ped])
            parts.append(Capsule(tuple(entry), tuple(end), 2.8))
            parts.append(Ellipsoid(tuple(entry + [0.0, 5.0, 0.0]), (5.0, 5.0, 5.0)))
            heads[sx].append(v.centre + v.rot @ (entry + [0.0, 6.0, 0.0]))
        out.append(Solid(f"screws_{v.name}", v.centre, v.rot, tuple(parts), mat))
    for sx, pts in heads.items():
        if len(pts) >= 2:
            a, b = pts[0], pts[-1]
            ext = (a - b) / np.linalg.norm(a - b) * 6.0
            out.append(Solid(f"rod_{sx:+.0f}", np.zeros(3), np.eye(3), (Capsule(tuple(a + ext), tuple(b - ext), 2.8),), mat))
    return out


def all_solids(subject: Subject) -> List[Solid]:
    """Everything in painting order: soft solids first, then bone (labelled vertebrae last among bones, so that a
    rib head or a facet does not overwrite a body), then metal."""
    return (skull_solids(subject)[:1] + disc_solids(subject) + canal_solids(subject) + skull_solids(subject)[1:]
            + rib_solids(subject) + sacrum_solids(subject) + pelvis_solids(subject)
            + [vertebra_solid(subject, v) for v in subject.vertebrae] + metal_solids(subject))
