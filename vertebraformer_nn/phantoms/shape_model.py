"""The vertebra shape model: a few dozen numbers per level -> the solid parts of a vertebra in its own frame.

A vertebra (C2..L6) is a body and its posterior elements. The body is a ``VertebralBody`` whose mid-height
outline is a profile of radii at 0, 30, ... 180 degrees from anterior (mirrored left-right: the lumbar
kidney shape, the cervical rectangle and the thoracic heart shape all fit), with its half height, the wedge of
each endplate, endplate concavity and waist. Each posterior part is a capsule between two landmarks with a radius and a
vertical stretch: pedicle, lamina (pillar to the midline), spinous process, transverse process, superior and
inferior articular processes; cervical levels add the anterior bar of the transverse process (meant to
enclose the transverse foramen; the current fit lays it against the pedicle), uncinate processes on the upper
endplate and, C2-C6, a bifid spinous tip; C2 adds the dens. The atlas (C1) is its own part set: anterior arch,
lateral masses, posterior arch and transverse processes. Landmarks are in the vertebra frame (x left, y posterior, z superior, origin at the
body centre; C1: on C2's dens axis at the height of its ring) and given for the left side; the right side is
their mirror image.

The numbers (``vertebra_params.LEVELS``) are our own model's parameters, fitted by
``tools/fit_vertebra_shapes.py`` to real manual vertebra masks of the VerSe data set (Sekuboyina et al.,
Medical Image Analysis 2021; Löffler et al., Radiology: AI 2020; data CC BY-SA 4.0, subjects ``sub-gl*``
CC BY-NC-ND 4.0): per-level dimensions, profile radii and landmark positions, never a mask or a mesh made
from one. A level held by two subjects' masks has one shape fitted to both at once. Levels without a real
mask (T6-T8) are interpolated between their neighbours, and T13 / L6 copy T12 / L5 (anatomy.level_params).

``parts`` works on numbers or on torch tensors alike (see sdf.py), which is how the fitting tool optimises
these same parameters by gradient descent on a soft Dice.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .sdf import Capsule, Ellipsoid, VertebralBody

PROFILE_DEG = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0)

#: Parameters of C2..L6 (name: number of values). Points are (x, y, z) unless the comment says otherwise.
SCHEMA: Dict[str, int] = {
    "body_r": 7,  # outline radii at PROFILE_DEG from anterior
    "body_h": 3,  # half height; how much higher the upper and the lower endplate stand at the back than in front
    "body_cv": 1,  # endplate concavity
    "body_waist": 1,  # side-wall concavity, a fraction of the radius (dimensionless)
    "ped_a": 3, "ped_b": 3, "ped_r": 1, "ped_s": 1,  # pedicle from the body to the articular pillar
    "lam_m": 2, "lam_r": 1, "lam_s": 1,  # lamina from the pillar (ped_b) to the midline point (y, z)
    "sp_tip": 2, "sp_r": 1, "sp_s": 1,  # spinous process from lam_m to its tip (y, z)
    "tp_a": 3, "tp_tip": 3, "tp_r": 1, "tp_s": 1,  # transverse process
    "sap_a": 3, "sap_tip": 3, "sap_r": 1,  # superior articular process
    "iap_a": 3, "iap_tip": 3, "iap_r": 1,  # inferior articular process
}
CERVICAL_SCHEMA: Dict[str, int] = {
    "tpa_a": 3, "tpa_r": 1,  # anterior bar of the transverse process, from the body's side to tp_tip
    "unc": 4,  # uncinate process: x, y front, y back, height above the upper endplate
}
AXIS_SCHEMA: Dict[str, int] = {"dens": 4}  # y of its base (on C2's body), y and z of its tip, radius
ATLAS_SCHEMA: Dict[str, int] = {
    "aa_m": 2, "aa_l": 3, "aa_r": 1, "aa_s": 1,  # anterior arch: midline tubercle (y, z) to the lateral mass
    "lm_c": 3, "lm_r": 3,  # lateral mass: centre and semi-axes
    "pa_l": 3, "pa_m": 2, "pa_r": 1, "pa_s": 1,  # posterior arch: lateral mass to the posterior tubercle (y, z)
    "tp_a": 3, "tp_tip": 3, "tp_r": 1, "tp_s": 1,
}
#: Values that are ratios, not lengths: a subject's size scale leaves them alone.
DIMENSIONLESS = frozenset({"body_waist", "ped_s", "lam_s", "sp_s", "tp_s", "aa_s", "pa_s"})
BIFID = ("C2", "C3", "C4", "C5", "C6")  # spinous processes that end in two tubercles


def schema(name: str) -> Dict[str, int]:
    """The parameter names and sizes of a level (C1, C2, C3..C7, T1.., L1.., T13, L6)."""
    if name == "C1":
        return ATLAS_SCHEMA
    out = dict(SCHEMA)
    if name[0] == "C":
        out.update(CERVICAL_SCHEMA)
        if name == "C2":
            del out["unc"]  # C2's upper surface carries the dens and the atlas' joints, no uncinate lips
            out.update(AXIS_SCHEMA)
    return out


def _profile_matrix() -> np.ndarray:
    th = np.deg2rad(PROFILE_DEG)
    return np.linalg.inv(np.cos(np.outer(th, np.arange(len(th)))))


_PROFILE_INV = _profile_matrix()


def profile_coefficients(radii: Sequence) -> Tuple:
    """Cosine-series coefficients through the outline radii at PROFILE_DEG (numbers or torch tensors)."""
    return tuple(sum(float(_PROFILE_INV[n, k]) * radii[k] for k in range(len(radii))) for n in range(len(radii)))


def scaled(params: Mapping[str, Sequence[float]], scale: float) -> Dict[str, Tuple[float, ...]]:
    """The parameters of a vertebra ``scale`` times as large (ratios unchanged)."""
    return {k: tuple(float(v) * (1.0 if k in DIMENSIONLESS else scale) for v in vals) for k, vals in params.items()}


def _mirror(p) -> Tuple:
    return (-p[0], p[1], p[2])


def _pair(a, b, r, s=1.0) -> List[Capsule]:
    """A capsule on the left and its mirror image on the right."""
    st = (1.0, 1.0, s)
    return [Capsule(tuple(a), tuple(b), r, st), Capsule(_mirror(a), _mirror(b), r, st)]


def _num(v) -> float:
    return float(v.detach()) if hasattr(v, "detach") else float(v)


def body(p: Mapping[str, Sequence], loss: float = 0.0, kind: str = "wedge") -> VertebralBody:
    r = p["body_r"]
    ra = max(_num(r[0]), _num(r[-1]))
    rl = max(_num(v) for v in r)
    hb, wedge_top, wedge_bottom = p["body_h"]
    return VertebralBody(ra=ra, rl=rl, hb=hb, wedge=wedge_top, wedge_bottom=wedge_bottom, concavity=p["body_cv"][0],
                         waist=p["body_waist"][0], profile=profile_coefficients(r), loss=loss, kind=kind or "wedge")


def posterior_parts(p: Mapping[str, Sequence], name: str) -> List:
    """Every part of a C2..L6 vertebra but its body."""
    lam_m = (0.0, p["lam_m"][0], p["lam_m"][1])
    tip = (0.0, p["sp_tip"][0], p["sp_tip"][1])
    parts = (_pair(p["ped_a"], p["ped_b"], p["ped_r"][0], p["ped_s"][0])
             + _pair(p["ped_b"], lam_m, p["lam_r"][0], p["lam_s"][0])
             + [Capsule(lam_m, tip, p["sp_r"][0], (1.0, 1.0, p["sp_s"][0]))]
             + _pair(p["tp_a"], p["tp_tip"], p["tp_r"][0], p["tp_s"][0])
             + _pair(p["sap_a"], p["sap_tip"], p["sap_r"][0])
             + _pair(p["iap_a"], p["iap_tip"], p["iap_r"][0]))
    if "tpa_a" in p:
        parts += _pair(p["tpa_a"], p["tp_tip"], p["tpa_r"][0])
    if "unc" in p:
        x, y0, y1, h = p["unc"]
        top = p["body_h"][0]
        r = 1.6
        parts += _pair((x, y0, top), (x, y1, top), r, max(_num(h), r) / r)
    if "dens" in p:
        y0, y1, z, r = p["dens"]
        parts.append(Capsule((0.0, y0, 0.0), (0.0, y1, z), r))
    if name in BIFID:
        # The two tubercles of a bifid tip: short spurs out to either side.
        r = 0.8 * p["sp_r"][0]
        end = (2.2 * r, tip[1] + 1.0, tip[2] - 0.5 * r)
        parts += _pair((0.0, tip[1] - 2.0 * r, tip[2]), end, r)
    return parts


def atlas_parts(p: Mapping[str, Sequence]) -> List:
    """C1: anterior arch, lateral masses, posterior arch and transverse processes around the dens; no body."""
    aa_m = (0.0, p["aa_m"][0], p["aa_m"][1])
    pa_m = (0.0, p["pa_m"][0], p["pa_m"][1])
    c, r = p["lm_c"], p["lm_r"]
    return (_pair(aa_m, p["aa_l"], p["aa_r"][0], p["aa_s"][0])
            + [Ellipsoid(tuple(c), tuple(r)), Ellipsoid(_mirror(c), tuple(r))]
            + _pair(p["pa_l"], pa_m, p["pa_r"][0], p["pa_s"][0])
            + _pair(p["tp_a"], p["tp_tip"], p["tp_r"][0], p["tp_s"][0]))


def parts(p: Mapping[str, Sequence], name: str, loss: float = 0.0, kind: str = "wedge") -> Tuple[Tuple, Tuple]:
    """(body parts, other parts) of vertebra ``name`` with parameters ``p`` (C1: no body part)."""
    if name == "C1":
        return (), tuple(atlas_parts(p))
    return (body(p, loss, kind),), tuple(posterior_parts(p, name))
