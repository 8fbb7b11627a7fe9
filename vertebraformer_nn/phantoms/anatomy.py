"""Pure geometry of a sampled phantom subject: which vertebrae exist, where they sit, how big they are,
and what pathology they carry. Nothing here touches an image grid (see render.py for that).

Frames. The subject frame is LPS millimetres (x = left, y = posterior, z = superior) with C1 near z = 0 and
the spine running down to negative z. Each vertebra has its own frame: a centre (the vertebral-body centre,
or the centre of the ring for C1) and a rotation whose columns are its local left, posterior and superior
axes, tilted with the curvature of the spine.

Sizes follow published adult morphometry (body height, depth and width growing from C3 to L5, discs
thickening towards the lumbar spine); one scale factor per subject and a few percent of jitter per
vertebra make subjects differ.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .. import labels

#: Position of each vertebra on the nominal level axis used for size tables and body-outline profiles.
#: Thoracic and lumbar positions are rescaled per subject (see ``level_coordinate``) so that a T13 or L6
#: stretches the region instead of shifting everything below it.
NOMINAL_POSITION: Dict[str, float] = {
    **{f"C{i}": float(i - 1) for i in range(1, 8)},
    **{f"T{i}": float(i + 6) for i in range(1, 13)},
    "T13": 18.6,
    **{f"L{i}": float(i + 18) for i in range(1, 6)},
    "L6": 23.6,
}
SACRUM_POSITION = 24.6  # S1 on the same axis

# Morphometry anchors (mm): body half height hb, antero-posterior and left-right semi-axes ra / rl, disc height
# below, canal semi-axes rca / rcl, spinous process length and downward angle (deg), transverse process reach
# from the midline, pedicle radius rp. Interpolated linearly on NOMINAL_POSITION.
_SIZE_KEYS = ("hb", "ra", "rl", "disc", "rca", "rcl", "sp_len", "sp_ang", "tp_len", "rp")
_SIZE_ANCHORS = [
    # pos    hb    ra    rl   disc  rca   rcl  sp_len sp_ang tp_len rp
    (1.0, (9.0, 8.0, 9.0, 4.5, 7.5, 12.0, 20.0, 20.0, 28.0, 3.0)),  # C2
    (2.0, (6.5, 7.5, 8.5, 4.5, 7.0, 12.5, 14.0, 15.0, 26.0, 2.8)),  # C3
    (6.0, (7.5, 8.5, 12.0, 5.0, 7.0, 12.0, 32.0, 25.0, 34.0, 3.2)),  # C7
    (7.0, (8.5, 8.5, 13.5, 4.0, 7.5, 10.0, 34.0, 35.0, 40.0, 3.5)),  # T1
    (12.0, (10.0, 12.5, 14.5, 4.5, 7.5, 8.5, 40.0, 58.0, 36.0, 3.6)),  # T6
    (18.0, (12.5, 15.0, 19.0, 7.0, 8.0, 9.5, 32.0, 25.0, 30.0, 4.3)),  # T12
    (19.0, (13.0, 16.0, 21.0, 9.0, 8.5, 10.5, 33.0, 8.0, 36.0, 4.6)),  # L1
    (21.0, (13.5, 17.0, 23.5, 10.5, 8.5, 11.5, 33.0, 3.0, 45.0, 5.2)),  # L3
    (23.0, (13.5, 17.5, 25.0, 10.5, 9.0, 12.5, 28.0, -5.0, 42.0, 5.8)),  # L5
    (24.0, (13.5, 17.5, 25.0, 10.0, 9.0, 12.5, 26.0, -5.0, 40.0, 5.8)),  # past L5 (an L6)
]

# Genant semi-quantitative grades: fraction of vertebral height lost (grade 1: 20-25 %, 2: 25-40 %, 3: > 40 %).
GENANT_LOSS = {1: (0.20, 0.25), 2: (0.26, 0.40), 3: (0.41, 0.55)}
FRACTURE_KINDS = ("wedge", "biconcave", "crush")


def nominal_sizes(structure: str) -> Dict[str, float]:
    """Morphometry of an average adult for one vertebra name (C2..L6, T13)."""
    pos = NOMINAL_POSITION[structure]
    xs = [p for p, _ in _SIZE_ANCHORS]
    table = np.array([v for _, v in _SIZE_ANCHORS])
    return {k: float(np.interp(pos, xs, table[:, i])) for i, k in enumerate(_SIZE_KEYS)}


@dataclass(frozen=True)
class Vertebra:
    code: int
    name: str
    centre: np.ndarray  # subject frame, mm
    rot: np.ndarray  # columns: local left, posterior, superior
    hb: float
    ra: float
    rl: float
    disc_below: float
    disc_above: float
    rca: float
    rcl: float
    sp_len: float
    sp_ang: float
    tp_len: float
    rp: float
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
    cortex_mm: float
    posterior_extra_hu: float  # posterior elements and ribs are denser than the body's trabecular core


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
    gas: Tuple[Tuple[Tuple[float, float, float], Tuple[float, float, float]], ...]  # bowel gas (centre, radii)
    lesions: Tuple[Lesion, ...] = ()
    metal_levels: Tuple[int, ...] = ()

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


def sample_subject(rng: np.random.Generator, subject_id: str, transitional: Optional[str] = "random",
                   allow_t13: bool = True) -> Subject:
    """A healthy subject. ``transitional``: "random" (a few percent), None, "T13" or "L6"."""
    if transitional == "random":
        transitional = sample_transitional(rng, allow_t13=allow_t13)
    if transitional not in (None, "T13", "L6"):
        raise ValueError(f"transitional must be None, 'T13' or 'L6', not {transitional!r}")
    names = level_names(transitional)
    scale = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    trab_base = float(rng.uniform(150.0, 280.0))
    bone = Bone(cortical_hu=float(rng.uniform(950.0, 1350.0)), cortex_mm=float(rng.uniform(0.9, 1.3)),
                posterior_extra_hu=float(rng.uniform(40.0, 100.0)))

    # Per-vertebra sizes: nominal morphometry x subject scale x a few percent of jitter.
    sizes = []
    for n in names:
        if n == "C1":
            base = {"hb": 8.0, "ra": 8.0, "rl": 9.0, "disc": 2.5, "rca": 8.0, "rcl": 13.0, "sp_len": 8.0,
                    "sp_ang": 0.0, "tp_len": 36.0, "rp": 3.2}
        else:
            base = nominal_sizes(n)
        jit = float(rng.normal(1.0, 0.03))
        sz = {k: (v * scale * (jit if k in ("hb", "ra", "rl") else 1.0) if k != "sp_ang" else v) for k, v in base.items()}
        sz["sp_ang"] += float(rng.normal(0.0, 4.0))
        sizes.append(sz)

    # Straight-spine depth of each centre: consecutive bodies separated by their half heights and a disc.
    s_pos = [0.0]
    for k in range(1, len(names)):
        s_pos.append(s_pos[-1] + sizes[k - 1]["hb"] + sizes[k - 1]["disc"] + sizes[k]["hb"])
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
        sz = sizes[k]
        region_extra = 30.0 if n[0] == "C" else (10.0 if n[0] == "T" else 0.0)  # cervical bodies are denser
        trab = float(np.clip(trab_base + region_extra + rng.normal(0.0, 12.0), 150.0, 350.0))
        vertebrae.append(Vertebra(
            code=labels.VERSE_CODE[n], name=n, centre=centre, rot=rot, hb=sz["hb"], ra=sz["ra"], rl=sz["rl"],
            disc_below=sz["disc"], disc_above=sizes[k - 1]["disc"] if k else 0.0, rca=sz["rca"], rcl=sz["rcl"],
            sp_len=sz["sp_len"], sp_ang=sz["sp_ang"], tp_len=sz["tp_len"], rp=sz["rp"], trabecular_hu=trab))

    sacrum = _sacrum(vertebrae[-1], rng, scale)
    gas = _bowel_gas(rng, vertebrae, sacrum)
    return Subject(
        subject_id=subject_id, levels=tuple(v.code for v in vertebrae), transitional=transitional,
        vertebrae=tuple(vertebrae), sacrum=sacrum, centreline=pts, bone=bone, scale=scale,
        habitus=float(rng.uniform(0.88, 1.15)), fat=float(rng.uniform(0.5, 1.8)), gas=gas)


def _sacrum(last: Vertebra, rng: np.random.Generator, scale: float) -> Tuple[Segment, ...]:
    """S1..S5 and three coccygeal pieces below the last lumbar vertebra.

    S1 is tilted anteriorly against the last lumbar level (the lumbosacral angle: the sacral promontory);
    each lower segment tilts back, so the sacrum is concave in front and the coccyx points down and forward.
    """
    beta = np.deg2rad(rng.uniform(12.0, 26.0))
    gamma = np.deg2rad(rng.uniform(9.0, 14.0))
    hbs = np.array([13.5, 11.0, 9.0, 7.0, 5.5, 4.0, 3.5, 3.0]) * scale
    ras = np.array([0.95, 0.80, 0.66, 0.52, 0.42, 0.34, 0.28, 0.24]) * last.ra
    rls = np.array([0.95, 0.75, 0.60, 0.46, 0.36, 0.30, 0.25, 0.21]) * last.rl
    disc = 10.0 * scale
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


def _bowel_gas(rng, vertebrae, sacrum):
    """A few gas pockets in the anterior abdomen (subject frame), a cue of abdominal scans."""
    lumbar = [v for v in vertebrae if v.region == "lumbar"]
    out = []
    for _ in range(int(rng.integers(3, 8))):
        v = lumbar[int(rng.integers(len(lumbar)))] if rng.random() < 0.7 else None
        base = v.centre if v is not None else sacrum[1].centre
        c = base + np.array([rng.uniform(-90.0, 90.0), -rng.uniform(55.0, 120.0), rng.uniform(-20.0, 20.0)])
        r = rng.uniform(6.0, 22.0, size=3)
        out.append((tuple(float(t) for t in c), tuple(float(t) for t in r)))
    return tuple(out)


# --- pathology ----------------------------------------------------------------------------------------------


def with_pathology(subject: Subject, rng: np.random.Generator, candidates: Iterable[int], *, n_lesions: int = 0,
                   n_fractures: int = 0, metal: bool = False, p_lytic: float = 0.6) -> Subject:
    """Add lesions, compression fractures and metal to vertebrae among ``candidates`` (codes, e.g. those inside
    a planned field of view). Lesions go to C2 or below (C1 has no body); fractures to T4 or below, as
    osteoporotic fractures do; metal (pedicle screws and rods) to 2-3 consecutive thoracolumbar levels."""
    cand = [c for c in labels.sort_anatomically(set(candidates) & set(subject.levels))]
    lesion_cand = [c for c in cand if c != labels.VERSE_CODE["C1"]]
    frac_cand = [c for c in cand if labels.region(c) != "cervical" and c not in (8, 9, 10)]
    verts = {v.code: v for v in subject.vertebrae}

    fractured = []
    if n_fractures and frac_cand:
        picks = rng.choice(frac_cand, size=min(n_fractures, len(frac_cand)), replace=False)
        for c in sorted(int(p) for p in picks):
            grade = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
            kind = str(rng.choice(FRACTURE_KINDS, p=[0.6, 0.25, 0.15]))
            loss = float(rng.uniform(*GENANT_LOSS[grade]))
            # A collapsed body is compacted: its trabecular bone reads denser (an endplate sclerosis cue).
            verts[c] = replace(verts[c], fracture_grade=grade, fracture_kind=kind, fracture_loss=loss,
                               trabecular_hu=min(verts[c].trabecular_hu + 60.0, 350.0))
            fractured.append(c)

    lesions = []
    if n_lesions and lesion_cand:
        picks = rng.choice(lesion_cand, size=min(n_lesions, len(lesion_cand)), replace=False)
        for lid, c in enumerate(labels.sort_anatomically(int(p) for p in picks), start=1):
            lesions.append(_sample_lesion(rng, verts[c], lid, p_lytic))

    metal_levels: Tuple[int, ...] = ()
    if metal:
        tl = [c for c in cand if labels.region(c) in ("thoracic", "lumbar") and c >= 15]
        if len(tl) >= 2:
            n = int(min(len(tl), rng.integers(2, 4)))
            start = int(rng.integers(0, len(tl) - n + 1))
            metal_levels = tuple(tl[start:start + n])

    return replace(subject, vertebrae=tuple(verts[v.code] for v in subject.vertebrae), lesions=tuple(lesions),
                   metal_levels=metal_levels)


def _sample_lesion(rng, v: Vertebra, lid: int, p_lytic: float) -> Lesion:
    kind = "lytic" if rng.random() < p_lytic else "blastic"
    if rng.random() < 0.8:
        site = "body"
        centre = np.array([rng.uniform(-0.35, 0.35) * v.rl, rng.uniform(-0.45, 0.25) * v.ra, rng.uniform(-0.3, 0.3) * v.hb])
        rmax = max(5.5, 0.6 * min(v.ra, v.rl, 1.3 * v.hb))
        radii = rng.uniform(5.0, rmax, size=3)
    else:
        site = "pedicle"
        side = float(rng.choice([-1.0, 1.0]))
        centre = np.array([side * (v.rcl + 0.45 * v.rp), 0.78 * v.ra + 0.6 * v.rca, 0.2 * v.hb])
        radii = np.full(3, max(5.0, 1.4 * v.rp)) * rng.uniform(0.9, 1.2, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    hu = float(rng.uniform(15.0, 90.0)) if kind == "lytic" else float(rng.uniform(1000.0, 1450.0))
    return Lesion(id=lid, vertebra=v.code, kind=kind, centre=centre, radii=radii,
                  lobe_offset=direction * 0.55 * float(radii.min()), lobe_scale=float(rng.uniform(0.5, 0.8)), hu=hu, site=site)
