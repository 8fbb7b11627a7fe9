"""Organ solids (viscera.py's geometry) with the HU of one scan: unenhanced, arterial or portal-venous phase,
with or without oral contrast. Painted after the body's soft tissue (softtissue.py) and before any bone."""
from __future__ import annotations

from typing import List

import numpy as np

from .anatomy import Subject
from .sdf import Capsule, Ellipsoid
from .shapes import AIR, FAT, SOFT, Material, Solid
from .viscera import NO_CONTRAST, Blob, Contrast

HU_BLOOD, HU_LIVER, HU_SPLEEN, HU_KIDNEY, HU_MYOCARDIUM, HU_URINE, HU_FLUID, HU_GAS, HU_FAT = (
    42.0, 58.0, 48.0, 32.0, 45.0, 10.0, 18.0, -950.0, -95.0)


def _soft(hu: float, tissue: int = SOFT, texture=None) -> Material:
    return Material("soft", float(hu), tissue=tissue, texture=texture)


def _tube_material(kind: str, c: Contrast, subject: Subject) -> Material:
    if kind == "arterial":
        return _soft(HU_BLOOD + c.arterial_hu)
    if kind == "venous":
        return _soft(HU_BLOOD + c.venous_hu)
    if kind == "gas":
        return _soft(HU_GAS, AIR)
    if kind == "fluid":
        return _soft(HU_FLUID if c.oral_hu is None else c.oral_hu)
    # Faeces: gas bubbles in a soft mass, a coarse mottle (hundreds of HU) around a low mean.
    return _soft(-120.0, AIR, subject.faeces_texture)


def _blob_solids(b: Blob, c: Contrast, subject: Subject) -> List[Solid]:
    ell = lambda scale=1.0, shift=(0.0, 0.0, 0.0): (Ellipsoid(tuple(np.add(b.centre, shift)),  # noqa: E731
                                                              tuple(r * scale for r in b.radii)),)
    if b.kind == "liver":
        return [Solid(b.name, np.zeros(3), np.eye(3), ell(),
                      _soft(HU_LIVER + c.liver_hu, texture=subject.organ_texture))]
    if b.kind == "spleen":
        return [Solid(b.name, np.zeros(3), np.eye(3), ell(),
                      _soft(HU_SPLEEN + 0.8 * c.venous_hu + 0.3 * c.arterial_hu))]
    if b.kind == "kidney":
        # Enhancing cortex round the medulla, and the fat of the renal sinus on the medial side.
        medial = -np.sign(b.centre[0] - subject.vertebrae[0].centre[0]) * 0.45 * b.radii[0]
        return [Solid(b.name, np.zeros(3), np.eye(3), ell(), _soft(HU_KIDNEY + c.kidney_hu)),
                Solid(b.name + "_medulla", np.zeros(3), np.eye(3), ell(0.62), _soft(HU_KIDNEY + 0.35 * c.kidney_hu)),
                Solid(b.name + "_sinus", np.zeros(3), np.eye(3), ell(0.32, (medial, 0.0, 0.0)), _soft(HU_FAT, FAT))]
    if b.kind == "stomach":
        # Supine: the gas rises to the front of the stomach.
        gas = (Ellipsoid(tuple(np.add(b.centre, (0.0, -0.45 * b.radii[1], 0.0))), tuple(r * 0.6 for r in b.radii)),)
        return [Solid(b.name, np.zeros(3), np.eye(3), ell(), _soft(HU_FLUID if c.oral_hu is None else c.oral_hu)),
                Solid(b.name + "_gas", np.zeros(3), np.eye(3), gas, _soft(HU_GAS, AIR))]
    if b.kind == "heart":
        # Epicardial fat, myocardium, then the blood of the right (front, right) and left (back, left) chambers.
        rx, ry, rz = b.radii
        return [Solid("pericardial_fat", np.zeros(3), np.eye(3), ell(1.04), _soft(HU_FAT, FAT)),
                Solid(b.name, np.zeros(3), np.eye(3), ell(), _soft(HU_MYOCARDIUM + 0.25 * c.arterial_hu)),
                Solid("right_heart", np.zeros(3), np.eye(3), ell(0.5, (-0.3 * rx, -0.25 * ry, 0.0)),
                      _soft(HU_BLOOD + c.venous_hu)),
                Solid("left_heart", np.zeros(3), np.eye(3), ell(0.45, (0.3 * rx, 0.2 * ry, -0.1 * rz)),
                      _soft(HU_BLOOD + c.arterial_hu))]
    return [Solid(b.name, np.zeros(3), np.eye(3), ell(), _soft(HU_URINE))]


def organ_solids(subject: Subject, contrast: Contrast = NO_CONTRAST) -> List[Solid]:
    out: List[Solid] = []
    for b in subject.viscera.blobs:
        out += _blob_solids(b, contrast, subject)
    for t in subject.viscera.tubes:
        parts = tuple(Capsule(p, q, t.radius) for p, q in zip(t.points[:-1], t.points[1:]))
        out.append(Solid(t.name, np.zeros(3), np.eye(3), parts, _tube_material(t.content, contrast, subject)))
    return out
