"""Pathology of a subject: lytic and blastic lesions, compression fractures graded by Genant, and spinal
instrumentation (pedicle screws and rods), placed on vertebrae a planned scan shows whole."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Tuple

import numpy as np

from .. import labels
from .anatomy import Lesion, Subject, Vertebra

# Genant semi-quantitative grades: fraction of vertebral height lost (grade 1: 20-25 %, 2: 25-40 %, 3: > 40 %).
GENANT_LOSS = {1: (0.20, 0.25), 2: (0.26, 0.40), 3: (0.41, 0.55)}
FRACTURE_KINDS = ("wedge", "biconcave", "crush")


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
        centre = np.array([rng.uniform(-0.35, 0.35) * v.rl, rng.uniform(-0.45, 0.25) * v.ra,
                           rng.uniform(-0.3, 0.3) * v.hb])
        rmax = max(5.5, 0.6 * min(v.ra, v.rl, 1.3 * v.hb))
        radii = rng.uniform(5.0, rmax, size=3)
    else:
        site = "pedicle"
        side = float(rng.choice([-1.0, 1.0]))
        centre = v.pedicle * [side, 1.0, 1.0]
        radii = np.full(3, max(5.0, 1.4 * v.rp)) * rng.uniform(0.9, 1.2, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    hu = float(rng.uniform(15.0, 90.0)) if kind == "lytic" else float(rng.uniform(1000.0, 1450.0))
    return Lesion(id=lid, vertebra=v.code, kind=kind, centre=centre, radii=radii,
                  lobe_offset=direction * 0.55 * float(radii.min()), lobe_scale=float(rng.uniform(0.5, 0.8)), hu=hu,
                  site=site)
