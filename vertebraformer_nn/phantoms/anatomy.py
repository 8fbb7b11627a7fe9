"""Pure geometry of a sampled phantom subject: which vertebrae exist, where they sit, how big they are,
and what pathology they carry. Nothing here touches an image grid (see render.py for that).

Frames. The subject frame is LPS millimetres (x = left, y = posterior, z = superior) with C1 near z = 0 and
the spine running down to negative z. Each vertebra has its own frame: a centre (the vertebral-body centre,
or the centre of the ring for C1) and a rotation whose columns are its local left, posterior and superior
axes, tilted with the curvature of the spine.

Shapes and sizes come from the vertebra shape model (shape_model.py), whose per-level parameters and disc
heights were fitted to real manual VerSe masks (vertebra_params.py); one scale factor per subject, a few
percent of size jitter per vertebra and a little independent jitter of every landmark make subjects and
vertebrae differ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import labels
from . import shape_model
from .texture import Texture, make_texture
from .vertebra_params import LEVELS
from .viscera import Viscera, sample_viscera

#: Position of each vertebra on the nominal level axis used for body-outline profiles. Thoracic and lumbar
#: positions are rescaled per subject (see ``level_coordinates``) so that a T13 or L6 stretches the region
#: instead of shifting everything below it.
NOMINAL_POSITION: Dict[str, float] = {
    **{f"C{i}": float(i - 1) for i in range(1, 8)},
    **{f"T{i}": float(i + 6) for i in range(1, 13)},
    "T13": 18.6,
    **{f"L{i}": float(i + 18) for i in range(1, 6)},
    "L6": 23.6,
}
SACRUM_POSITION = 24.6  # S1 on the same axis

#: Transitional vertebrae take the shape of their neighbour (a T13 a thoracic one, an L6 a lumbar one).
_SHAPE_OF = {"T13": "T12", "L6": "L5"}


def level_params(structure: str) -> Dict[str, Tuple[float, ...]]:
    """The fitted shape-model parameters of an average adult vertebra (C1..L6, T13), in mm."""
    return dict(LEVELS[_SHAPE_OF.get(structure, structure)])


def _jittered(params: Dict[str, Tuple[float, ...]], rng: np.random.Generator,
              size: float) -> Dict[str, Tuple[float, ...]]:
    """``params`` scaled by ``size``, each landmark and radius varied by a few percent on its own (the outline of
    the body as a whole), so that no two vertebrae are alike."""
    out = shape_model.scaled(params, size)
    for key in sorted(out):
        if key in ("disc", "c2_offset"):
            continue
        n = len(out[key])
        f = np.full(n, rng.normal(1.0, 0.025)) if key == "body_r" else rng.normal(1.0, 0.04, size=n)
        out[key] = tuple(float(v) * float(g) for v, g in zip(out[key], f))
    return out


@dataclass(frozen=True)
class Vertebra:
    code: int
    name: str
    centre: np.ndarray  # subject frame, mm
    rot: np.ndarray  # columns: local left, posterior, superior
    shape: Dict[str, Tuple[float, ...]]  # shape-model parameters of this vertebra (mm), see shape_model.py
    hb: float  # body half height
    ra: float  # body radius to its anterior surface
    back: float  # body radius to its posterior wall (the canal's front)
    rl: float  # body half width
    disc_below: float
    disc_above: float
    rca: float  # canal half depth and half width
    rcl: float
    rp: float  # pedicle radius
    trabecular_hu: float
    fracture_grade: int = 0
    fracture_kind: str = ""
    fracture_loss: float = 0.0

    @property
    def region(self) -> str:
        return labels.region(self.code)

    @property
    def up(self) -> np.ndarray:
        return self.rot[:, 2]

    @property
    def body_profile(self) -> Tuple:
        """Cosine coefficients of the body's mid-height outline (shape_model.profile_coefficients)."""
        return shape_model.profile_coefficients(self.shape["body_r"])

    @property
    def canal_y(self) -> float:
        """y of the canal's centre in the vertebra frame."""
        return self.back + self.rca

    @property
    def pedicle(self) -> np.ndarray:
        """Centre of the left pedicle in the vertebra frame (C1: of its lateral mass)."""
        if self.name == "C1":
            return np.asarray(self.shape["lm_c"], float)
        return 0.5 * (np.asarray(self.shape["ped_a"], float) + np.asarray(self.shape["ped_b"], float))


def derived_sizes(name: str, p: Dict[str, Tuple[float, ...]]) -> Dict[str, float]:
    """Body and canal dimensions that the rest of the phantom (discs, canal, ribs, soft tissue, lesions) uses."""
    if name == "C1":
        # The ring: height of the lateral masses, the anterior arch in front, the canal between the arches.
        front, rear = -p["aa_m"][0], p["pa_m"][0] - p["pa_r"][0]
        return {"hb": p["lm_r"][2], "ra": front, "back": 0.0, "rl": p["lm_c"][0] + p["lm_r"][0],
                "rca": 0.5 * rear, "rcl": p["lm_c"][0] - p["lm_r"][0], "rp": p["lm_r"][0]}
    r = p["body_r"]
    th = np.deg2rad(shape_model.PROFILE_DEG)
    back = r[-1]
    return {"hb": p["body_h"][0], "ra": r[0], "back": back, "rl": float(np.max(np.asarray(r) * np.sin(th))),
            "rca": max(0.5 * (p["lam_m"][0] - p["lam_r"][0] - back), 3.0),
            "rcl": max(min(p["ped_a"][0], p["ped_b"][0]) - p["ped_r"][0], 4.0), "rp": p["ped_r"][0]}


@dataclass(frozen=True)
class Segment:
    """A sacral or coccygeal segment: a small vertebral body in its own frame (never labelled)."""

    centre: np.ndarray
    rot: np.ndarray
    hb: float
    ra: float
    rl: float


@dataclass(frozen=True)
class Lesion:
    id: int  # 1..n within the subject
    vertebra: int  # VerSe code
    kind: str  # "lytic" | "blastic"
    centre: np.ndarray  # vertebra frame, mm
    radii: np.ndarray
    lobe_offset: np.ndarray  # second lobe centre relative to the first (irregular outline)
    lobe_scale: float
    hu: float
    site: str  # "body" | "pedicle"


@dataclass(frozen=True)
class Bone:
    cortical_hu: float
    cortex_mm: float  # side walls of bodies, processes, ribs
    posterior_extra_hu: float  # posterior elements and ribs are denser than the body's trabecular core
    endplate_mm: float = 0.0  # the endplates' cortex (with the subchondral bone) is thicker
    texture: Optional[Texture] = None  # trabecular texture


@dataclass(frozen=True)
class Subject:
    subject_id: str
    levels: Tuple[int, ...]  # VerSe codes head to foot
    transitional: Optional[str]  # None, "T13" or "L6"
    vertebrae: Tuple[Vertebra, ...]
    sacrum: Tuple[Segment, ...]  # S1..S5 then coccyx pieces
    centreline: np.ndarray  # (N, 3) samples head to foot, subject frame
    bone: Bone
    scale: float
    habitus: float  # body outline size factor
    fat: float  # subcutaneous / visceral fat factor
    viscera: Viscera  # organs, vessels and bowel (viscera.py)
    organ_texture: Texture  # parenchyma of liver and spleen
    faeces_texture: Texture
    lesions: Tuple[Lesion, ...] = ()
    metal_levels: Tuple[int, ...] = ()
    pelvic_tilt: float = 0.0  # degrees the pelvis is tilted forward about left-right
    pelvis_width: float = 1.0  # width factor of the pelvis (wider in women)
    cartilage_calcification: float = 0.3  # 0 (none) .. 1 (costal cartilages as dense as bone's core)

    def vertebra(self, code: int) -> Vertebra:
        for v in self.vertebrae:
            if v.code == code:
                return v
        raise KeyError(f"{self.subject_id} has no vertebra {labels.name(code)}")

    @property
    def fractures(self) -> List[Tuple[int, int, str]]:
        return [(v.code, v.fracture_grade, v.fracture_kind) for v in self.vertebrae if v.fracture_grade > 0]

    def level_anchors(self) -> Tuple[np.ndarray, np.ndarray]:
        """(z of each vertebra / sacral segment centre, its level coordinate), head to foot."""
        zs = [v.centre[2] for v in self.vertebrae] + [s.centre[2] for s in self.sacrum]
        ls = level_coordinates([v.name for v in self.vertebrae])
        ls = ls + [SACRUM_POSITION + 0.95 * k for k in range(len(self.sacrum))]
        return np.array(zs), np.array(ls)


# --- levels -------------------------------------------------------------------------------------------------


def level_names(transitional: Optional[str] = None) -> List[str]:
    """C1..L5 head to foot with T13 after T12 or L6 after L5."""
    names = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
    if transitional == "T13":
        names.append("T13")
    names += [f"L{i}" for i in range(1, 6)]
    if transitional == "L6":
        names.append("L6")
    return names


def level_coordinates(names: Sequence[str]) -> List[float]:
    """Continuous level coordinate of each name: C1 = 0 ... T1 = 7, last thoracic = 18, L1 = 19, last lumbar
    = 23, so body-outline profiles (lungs end at the last thoracic, psoas grows to the last lumbar) follow
    the subject's own segmentation even with a T13 or an L6."""
    thor = [n for n in names if n[0] == "T"]
    lumb = [n for n in names if n[0] == "L"]
    out = []
    for n in names:
        if n[0] == "C":
            out.append(float(int(n[1:]) - 1))
        elif n[0] == "T":
            out.append(7.0 + 11.0 * thor.index(n) / max(len(thor) - 1, 1))
        else:
            out.append(19.0 + 4.0 * lumb.index(n) / max(len(lumb) - 1, 1))
    return out


# --- centre line --------------------------------------------------------------------------------------------


def _bump(s: np.ndarray, a: float, b: float) -> np.ndarray:
    """sin^2 bump on [a, b]: zero value and slope at both ends, so regions join at inflexion points."""
    t = np.clip((s - a) / (b - a), 0.0, 1.0)
    return np.sin(np.pi * t) ** 2


def frame_from_up(up: np.ndarray) -> np.ndarray:
    """Rotation whose third column is ``up`` and whose second points as posterior (+y) as possible."""
    u = up / np.linalg.norm(up)
    p = np.array([0.0, 1.0, 0.0]) - u[1] * u
    p /= np.linalg.norm(p)
    left = np.cross(p, u)
    return np.column_stack([left, p, u])


def rot_x(angle: float) -> np.ndarray:
    """Rotation about the local left axis; positive tilts the superior axis anteriorly (towards -y)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class Curvature:
    lordosis_cervical: float  # mm of anterior bulge
    kyphosis: float  # mm of posterior bulge
    lordosis_lumbar: float
    balance: float  # overall sagittal lean (mm per mm)
    scoliosis: Tuple[float, ...]  # lateral bulge amplitudes (mm): one (C curve) or two of opposite sign (S curve)


def centreline(stations: Dict[str, float], curv: Curvature, s_max: float, step: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Centre line as (s, points): s is the straight-spine depth below C1 (mm), points (N, 3) in the subject frame.

    ``stations`` gives s of region landmarks: 'cerv_end', 'thor_start', 'thor_end', 'lumb_start', 'lumb_end'.
    Sagittal profile: cervical lordosis (anterior bulge, -y), thoracic kyphosis (+y), lumbar lordosis whose
    bump runs past L5 so that the lowest lumbar levels are tilted like a real lumbosacral junction.
    """
    s = np.arange(-120.0, s_max + step, step)
    y = (
        -curv.lordosis_cervical * _bump(s, 0.0, stations["cerv_end"])
        + curv.kyphosis * _bump(s, stations["thor_start"] - 10.0, stations["thor_end"] + 10.0)
        - curv.lordosis_lumbar * _bump(s, stations["lumb_start"] - 15.0, stations["lumb_end"] + 45.0)
        + curv.balance * np.clip(s, 0.0, None)
    )
    x = np.zeros_like(s)
    a, b = stations["thor_start"] + 40.0, stations["lumb_end"]
    if len(curv.scoliosis) == 1:
        x += curv.scoliosis[0] * _bump(s, a, b)
    elif len(curv.scoliosis) >= 2:
        mid = 0.5 * (a + b) + 20.0
        x += curv.scoliosis[0] * _bump(s, a, mid) + curv.scoliosis[1] * _bump(s, mid - 20.0, b)
    return s, np.column_stack([x, y, -s])


def _arc_length(points: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def point_and_up(points: np.ndarray, arc: np.ndarray, at: float) -> Tuple[np.ndarray, np.ndarray]:
    """Point of the centre line at arc length ``at`` and the unit vector pointing up the spine there."""
    p = np.array([np.interp(at, arc, points[:, k]) for k in range(3)])
    q0 = np.array([np.interp(at - 3.0, arc, points[:, k]) for k in range(3)])
    q1 = np.array([np.interp(at + 3.0, arc, points[:, k]) for k in range(3)])
    up = q0 - q1
    return p, up / np.linalg.norm(up)


# --- sampling -----------------------------------------------------------------------------------------------


def sample_transitional(rng: np.random.Generator, allow_t13: bool = True, p_each: float = 0.03) -> Optional[str]:
    """T13 and L6 each in a few percent of subjects (T13 only where the source has a code for it)."""
    u = rng.random()
    if allow_t13 and u < p_each:
        return "T13"
    if p_each <= u < 2 * p_each:
        return "L6"
    return None


def disc_narrowing(rng: np.random.Generator, n_discs: int, p_subject: float = 0.5, p_disc: float = 0.6,
                   least: float = 0.15, most: float = 0.7) -> np.ndarray:
    """Height factor of each of ``n_discs`` discs (the last one the lumbosacral disc): 1 for a healthy disc.

    Why: real spine CT is mostly of older patients, whose discs are often degenerated to a few millimetres
    (VerSe's verse014 has 2.5-6.5 mm between lumbar bodies where healthy masks have 8-12), and a network trained on
    healthy gaps alone fuses the bodies of such spines across the narrowed discs. With probability ``p_subject``
    a subject's discs degenerate, each with probability ``p_disc``, to ``least``-``most`` of its height.
    """
    factors = np.ones(n_discs)
    if rng.random() < p_subject:
        hit = rng.random(n_discs) < p_disc
        factors[hit] = rng.uniform(least, most, int(hit.sum()))
    return factors


def sample_subject(rng: np.random.Generator, subject_id: str, transitional: Optional[str] = "random",
                   allow_t13: bool = True, degeneration: Optional[np.random.Generator] = None) -> Subject:
    """A subject, healthy but for narrowed discs drawn from ``degeneration`` (``disc_narrowing``; none when
    None). ``transitional``: "random" (a few percent), None, "T13" or "L6"."""
    if transitional == "random":
        transitional = sample_transitional(rng, allow_t13=allow_t13)
    if transitional not in (None, "T13", "L6"):
        raise ValueError(f"transitional must be None, 'T13' or 'L6', not {transitional!r}")
    names = level_names(transitional)
    scale = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    # Trabecular density from osteoporotic to young and dense (L1 trabecular bone reads below ~110 HU in
    # osteoporosis, down to ~40, and above ~160 HU when normal: Pickhardt et al., Ann Intern Med 2013); cortex
    # about 0.5-1 mm, endplates 1-2 mm.
    trab_base = float(rng.uniform(40.0, 300.0))
    bone = Bone(cortical_hu=float(rng.uniform(950.0, 1500.0)), cortex_mm=float(rng.uniform(0.45, 0.9)),
                posterior_extra_hu=float(rng.uniform(40.0, 120.0)), endplate_mm=float(rng.uniform(0.9, 1.8)),
                texture=make_texture(rng, amplitude=float(rng.uniform(50.0, 150.0)),
                                     grain_mm=float(rng.uniform(1.2, 2.8)), elongation=float(rng.uniform(1.0, 2.2)),
                                     detail=72))

    # Per-vertebra shapes: the fitted average x subject scale x a few percent of jitter.
    shapes, sizes = [], []
    for n in names:
        shapes.append(_jittered(level_params(n), rng, scale * float(rng.normal(1.0, 0.03))))
        sizes.append(derived_sizes(n, shapes[-1]))
    # Straight-spine depth of each centre: consecutive bodies separated by their half heights and the fitted disc;
    # C2's centre lies the fitted ring height below C1's.
    discs = [scale * (level_params(n).get("disc") or (0.0,))[0] * float(rng.normal(1.0, 0.05)) for n in names]
    discs[0] = scale * level_params("C1")["c2_offset"][0] - sizes[0]["hb"] - sizes[1]["hb"]
    # C1-C2 is a joint, not a disc; the last factor is the lumbosacral disc's.
    narrowing = disc_narrowing(degeneration, len(names)) if degeneration is not None else np.ones(len(names))
    discs = [d * (f if k else 1.0) for k, (d, f) in enumerate(zip(discs, narrowing))]
    s_pos = [0.0]
    for k in range(1, len(names)):
        s_pos.append(s_pos[-1] + sizes[k - 1]["hb"] + discs[k - 1] + sizes[k]["hb"])
    idx = {n: k for k, n in enumerate(names)}
    last_t = "T13" if "T13" in idx else "T12"
    last_l = "L6" if "L6" in idx else "L5"
    stations = {
        "cerv_end": s_pos[idx["C7"]] + sizes[idx["C7"]]["hb"],
        "thor_start": s_pos[idx["T1"]] - sizes[idx["T1"]]["hb"],
        "thor_end": s_pos[idx[last_t]] + sizes[idx[last_t]]["hb"],
        "lumb_start": s_pos[idx["L1"]] - sizes[idx["L1"]]["hb"],
        "lumb_end": s_pos[idx[last_l]] + sizes[idx[last_l]]["hb"],
    }
    n_scol = rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1])
    if n_scol == 0:
        scol: Tuple[float, ...] = (float(rng.uniform(-4.0, 4.0)),)
    elif n_scol == 1:
        scol = (float(rng.choice([-1, 1]) * rng.uniform(8.0, 30.0)),)
    else:
        a = float(rng.choice([-1, 1]) * rng.uniform(8.0, 22.0))
        scol = (a, -a * float(rng.uniform(0.6, 1.1)))
    curv = Curvature(
        lordosis_cervical=float(rng.uniform(5.0, 14.0)),
        kyphosis=float(rng.uniform(15.0, 32.0)),
        lordosis_lumbar=float(rng.uniform(12.0, 24.0)),
        balance=float(rng.normal(0.0, 0.02)),
        scoliosis=scol,
    )
    s_line, pts = centreline(stations, curv, s_max=s_pos[-1] + 300.0)
    arc = _arc_length(pts)
    arc0 = float(np.interp(0.0, s_line, arc))  # arc length at C1

    vertebrae = []
    for k, n in enumerate(names):
        centre, up = point_and_up(pts, arc, arc0 + s_pos[k])
        rot = frame_from_up(up)
        region_extra = 30.0 if n[0] == "C" else (10.0 if n[0] == "T" else 0.0)  # cervical bodies are denser
        trab = float(np.clip(trab_base + region_extra + rng.normal(0.0, 12.0), 30.0, 360.0))
        vertebrae.append(Vertebra(code=labels.VERSE_CODE[n], name=n, centre=centre, rot=rot, shape=shapes[k],
                                  disc_below=discs[k], disc_above=discs[k - 1] if k else 0.0, trabecular_hu=trab,
                                  **sizes[k]))

    sacrum = _sacrum(vertebrae[-1], rng, scale, float(narrowing[-1]))
    habitus = float(rng.uniform(0.82, 1.25))
    return Subject(
        subject_id=subject_id, levels=tuple(v.code for v in vertebrae), transitional=transitional,
        vertebrae=tuple(vertebrae), sacrum=sacrum, centreline=pts, bone=bone, scale=scale,
        habitus=habitus, fat=float(rng.uniform(0.3, 2.4)),
        viscera=sample_viscera(rng, vertebrae, sacrum, scale * habitus),
        organ_texture=make_texture(rng, amplitude=float(rng.uniform(4.0, 12.0)), grain_mm=6.0, n=12),
        faeces_texture=make_texture(rng, amplitude=float(rng.uniform(220.0, 380.0)), grain_mm=3.5, n=40),
        pelvic_tilt=float(rng.normal(0.0, 6.0)), pelvis_width=float(rng.uniform(0.92, 1.1)),
        cartilage_calcification=float(rng.beta(1.2, 2.5)))


def _sacrum(last: Vertebra, rng: np.random.Generator, scale: float, narrowing: float = 1.0) -> Tuple[Segment, ...]:
    """S1..S5 and three coccygeal pieces below the last lumbar vertebra.

    S1 is tilted anteriorly against the last lumbar level (the lumbosacral angle: the sacral promontory);
    each lower segment tilts back, so the sacrum is concave in front and the coccyx points down and forward.
    """
    beta = np.deg2rad(rng.uniform(12.0, 26.0))
    gamma = np.deg2rad(rng.uniform(9.0, 14.0))
    hbs = np.array([13.5, 11.0, 9.0, 7.0, 5.5, 4.0, 3.5, 3.0]) * scale
    ras = np.array([0.95, 0.80, 0.66, 0.52, 0.42, 0.34, 0.28, 0.24]) * last.ra
    rls = np.array([0.95, 0.75, 0.60, 0.46, 0.36, 0.30, 0.25, 0.21]) * last.rl
    disc = 10.0 * scale * narrowing
    rot = last.rot @ rot_x(beta)
    centre = last.centre - last.up * (last.hb + disc / 2) - rot[:, 2] * (disc / 2 + hbs[0])
    segs = [Segment(centre, rot, float(hbs[0]), float(ras[0]), float(rls[0]))]
    for k in range(1, len(hbs)):
        prev = segs[-1]
        rot = prev.rot @ rot_x(-gamma)
        gap = 1.0 if k < 5 else 2.5  # fused sacral segments touch; coccygeal pieces are separate
        centre = prev.centre - prev.rot[:, 2] * (prev.hb + gap / 2) - rot[:, 2] * (gap / 2 + hbs[k])
        segs.append(Segment(centre, rot, float(hbs[k]), float(ras[k]), float(rls[k])))
    return tuple(segs)
