"""Subject geometry -> solids: each structure as a union of SDF primitives in its own frame, with a material.

A solid is what the renderer paints: vertebrae (labelled with their VerSe code; their shapes from the fitted
shape model, shape_model.py), discs, the spinal canal's contents, the skull base and metal here; the rib cage,
shoulder girdle (thorax.py), sacrum, pelvis and hips (pelvis.py) beside them; all but the vertebrae unlabelled,
as in every source. Coordinates of parts are in the solid's local frame (x left, y posterior, z superior), see
anatomy.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np

from . import shape_model
from .anatomy import Lesion, Subject, Vertebra, frame_from_up
from .texture import Texture
from .sdf import Capsule, Ellipsoid, EllipsoidShell, EllipticCylinder, VertebralBody, occupancy

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
    endplate_mm: float = 0.0  # cortex at a vertebral body's endplates, thicker than its side walls
    texture: Optional[Texture] = None  # trabecular texture added to ``hu``


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


def bone_material(subject: Subject, trabecular: float) -> Material:
    """The subject's bone (cortex, texture, density) with trabecular value ``trabecular``."""
    b = subject.bone
    return Material("bone", trabecular, b.cortical_hu, b.cortex_mm, b.posterior_extra_hu, CORTEX, b.endplate_mm,
                    b.texture)


# --- vertebrae ------------------------------------------------------------------------------------------------


def body_part(v: Vertebra) -> VertebralBody:
    return shape_model.body(v.shape, v.fracture_loss, v.fracture_kind)


def atlas_centroid_local(v: Vertebra) -> np.ndarray:
    """The point that stands for C1's "body" centroid: C1 has no body, and the centre of its ring lies in the dens
    (C2); the middle of the anterior arch is inside C1 and on the same axial level."""
    y, z = v.shape["aa_m"]
    return np.array([0.0, y + 0.3 * v.shape["aa_r"][0], z])


@lru_cache(maxsize=4096)
def _centroid_of(body: VertebralBody) -> Tuple[float, float, float]:
    # A 1 mm grid weighted by each point's partial occupancy: centroid exact to about 0.1 mm at a third of the
    # cost of a finer grid.
    lo, hi = body.bbox()
    axes = [np.arange(lo[i] + 0.5, hi[i], 1.0, dtype=np.float32) for i in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    w = occupancy(body.sdf(x, y, z), 1.0)
    total = float(w.sum())
    return float((x * w).sum() / total), float((y * w).sum() / total), float((z * w).sum() / total)


def body_centroid_local(v: Vertebra) -> np.ndarray:
    """Exact (0.7 mm sampled) centroid of the vertebral body as drawn, fractures included; see C1 above."""
    if v.name == "C1":
        return atlas_centroid_local(v)
    return np.array(_centroid_of(body_part(v)))


def body_centroid_subject(v: Vertebra) -> np.ndarray:
    return v.centre + v.rot @ body_centroid_local(v)


def lesion_parts(les: Lesion) -> Tuple:
    c = np.asarray(les.centre)
    return (Ellipsoid(tuple(c), tuple(les.radii)),
            Ellipsoid(tuple(c + les.lobe_offset), tuple(np.asarray(les.radii) * les.lobe_scale)))


def vertebra_solid(subject: Subject, v: Vertebra) -> Solid:
    body, other = shape_model.parts(v.shape, v.name, v.fracture_loss, v.fracture_kind)
    lesions = tuple((les, lesion_parts(les)) for les in subject.lesions if les.vertebra == v.code)
    return Solid(v.name, v.centre, v.rot, body + other, bone_material(subject, v.trabecular_hu), label=v.code, body=body,
                 lesions=lesions)


# --- soft solids around the spine ------------------------------------------------------------------------------


def _mid_frame(a: Vertebra, b: Vertebra) -> Tuple[np.ndarray, np.ndarray, float]:
    top = a.centre - a.up * a.hb
    bottom = b.centre + b.up * b.hb
    up = a.up + b.up
    rot = frame_from_up(up)
    gap = float(np.dot(top - bottom, rot[:, 2]))
    return 0.5 * (top + bottom), rot, gap


def _disc_outline(a: Vertebra, b: Optional[Vertebra]) -> Tuple:
    """Cosine coefficients of a disc's outline: the mean of the two endplates' outlines, bulging 3 % beyond them."""
    ra, rb = np.asarray(a.shape["body_r"]), np.asarray((b or a).shape["body_r"])
    return shape_model.profile_coefficients(tuple(1.03 * 0.5 * (ra + rb)))


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
        else:
            centre, rot, gap = _mid_frame(a, b)
        ra, rl = 0.5 * (a.ra + (b or a).ra), 0.5 * (a.rl + (b or a).rl)
        hz = max(gap, 1.0) / 2 + 3.0
        annulus = VertebralBody(ra=1.03 * ra, rl=1.03 * rl, hb=hz, concavity=0.0, waist=0.0,
                                profile=_disc_outline(a, b))
        nucleus = Ellipsoid((0.0, 0.1 * ra, 0.0), (0.5 * rl, 0.45 * ra, max(gap, 1.0) * 0.35))
        out.append(Solid(f"disc_{a.name}", centre, rot, (annulus,), Material("soft", HU_DISC_ANNULUS, tissue=DISC)))
        out.append(Solid(f"nucleus_{a.name}", centre, rot, (nucleus,), Material("soft", HU_DISC_NUCLEUS, tissue=DISC)))
    return out


def canal_solids(subject: Subject) -> List[Solid]:
    """CSF and cord in the canal, one segment per vertebra, overlapping the next so the tube is continuous."""
    out = []
    for v in subject.vertebrae:
        y_cc = v.canal_y
        hz = v.hb + 0.5 * max(v.disc_below, v.disc_above) + 3.0
        cyl = EllipticCylinder((0.0, y_cc, 0.0), 0.9 * v.rcl, 0.9 * v.rca, hz)
        out.append(Solid(f"canal_{v.name}", v.centre, v.rot, (cyl,), Material("soft", HU_CANAL, tissue=CANAL)))
    return out


# --- skull, metal ---------------------------------------------------------------------------------------------


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
    mat = bone_material(subject, c1.trabecular_hu + 80.0)
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
        a, b = np.asarray(v.shape["ped_a"], float), np.asarray(v.shape["ped_b"], float)
        a[2] = b[2] = 0.5 * (a[2] + b[2])  # screws run along the pedicle's axial course, parallel to the endplates
        axis = (a - b) / np.linalg.norm(a - b)  # from the pillar into the body
        parts = []
        for sx in (-1.0, 1.0):
            flip = np.array([sx, 1.0, 1.0])
            entry = flip * (b - 8.0 * axis)
            end = flip * (a + (a[1] + 0.35 * v.ra) / max(-axis[1], 0.3) * axis)
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
