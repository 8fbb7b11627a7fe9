"""From fitted real vertebrae to the shape model's level table (vertebraformer_nn/phantoms/vertebra_params.py).

Used by tools/fit_vertebra_shapes.py. ``Fit``: (parameters, 4x4 pose model frame -> LPS mm with the subject's
size as its scale, soft Dice). Per level, the parameters are those of the joint fit to every usable subject
(one shape, each subject its own pose and size) or, for a level with one usable subject, that subject's own fit;
levels without a real mask (T6-T8) and parameters a fracture misstates are interpolated along the spine. Disc
heights come from the poses of neighbouring vertebrae of one subject; C1 is re-expressed on C2's dens axis.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from vertebraformer_nn.phantoms import shape_model as sm
from vertebraformer_nn.phantoms.shape_check import FRACTURED

LEVEL_NAMES = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
Fit = Tuple[Dict[str, np.ndarray], np.ndarray, float]
Fits = Dict[Tuple[str, str], Fit]
#: Parameters a collapsed body misstates: taken from healthy vertebrae (or neighbours) instead.
HEIGHT_KEYS = ("body_h", "body_cv")


def usable(subject: str, name: str, key: str) -> bool:
    """Whether a subject's vertebra may give parameter ``key``: a collapsed body (Genant 2) not its heights, a
    severely collapsed one (Genant 3) nothing."""
    grade = FRACTURED.get((subject, name), 0)
    return grade == 0 or (grade < 3 and key not in HEIGHT_KEYS)


def _scale(pose: np.ndarray) -> float:
    return float(np.cbrt(abs(np.linalg.det(pose[:3, :3]))))


def disc_heights(heights: Dict[Tuple[str, str], float], poses: Dict[Tuple[str, str], np.ndarray]
                 ) -> Dict[str, List[float]]:
    """Per level, the height of the disc below it in each subject: the distance between neighbouring body centres
    along their mean axis, less the two fitted half heights (``heights``, at the model's size; each pose scales its
    own), in the model's size."""
    out: Dict[str, List[float]] = {}
    for (subject, name), pose in poses.items():
        k = LEVEL_NAMES.index(name)
        if name == "C1" or k + 1 == len(LEVEL_NAMES) or (subject, LEVEL_NAMES[k + 1]) not in poses:
            continue
        below_key = (subject, LEVEL_NAMES[k + 1])
        below = poses[below_key]
        u = pose[:3, 2] / _scale(pose) + below[:3, 2] / _scale(below)
        u /= np.linalg.norm(u)
        gap = (float((pose[:3, 3] - below[:3, 3]) @ u) - heights[(subject, name)] * _scale(pose)
               - heights[below_key] * _scale(below))
        out.setdefault(name, []).append(gap / (0.5 * (_scale(pose) + _scale(below))))
    return out


def atlas_on_dens_axis(p1: Dict[str, np.ndarray], m: np.ndarray) -> Tuple[Dict[str, np.ndarray], float]:
    """C1's parameters in a frame on C2's body axis at the ring's height, and that height above C2's centre, given
    ``m``: C1's model frame -> C2's. The small yaw and roll of C1 against C2 are dropped (the model is
    symmetric); its pitch is kept."""
    pitch = np.arctan2(m[2, 1], m[1, 1])
    c, s = np.cos(pitch), np.sin(pitch)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    shift = np.array([0.0, m[1, 3], 0.0])  # the ring's centre sits behind C2's body centre
    out = dict(p1)
    for key in ("aa_l", "lm_c", "pa_l", "tp_a", "tp_tip"):
        out[key] = rx @ p1[key] + shift
    for key in ("aa_m", "pa_m"):
        out[key] = (rx @ np.array([0.0, *p1[key]]) + shift)[1:]
    return out, float(m[2, 3])


def level_table(fits: Fits, joint: Dict[str, Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]
                ) -> Dict[str, Dict[str, np.ndarray]]:
    """``fits``: each subject's own fits; ``joint``: level -> (shared parameters, subject -> pose)."""
    samples: Dict[str, Dict[str, List[np.ndarray]]] = {}
    poses: Dict[Tuple[str, str], np.ndarray] = {}
    heights: Dict[Tuple[str, str], float] = {}  # the body as fitted, a fractured one too, for the disc heights
    for (subject, name), (p, pose, _) in fits.items():
        if name in joint or FRACTURED.get((subject, name), 0) >= 3:
            continue
        poses[(subject, name)] = pose
        heights[(subject, name)] = float(p["body_h"][0]) if "body_h" in p else 0.0
        for key, value in p.items():
            if usable(subject, name, key):
                samples.setdefault(name, {}).setdefault(key, []).append(np.asarray(value, float))
    for name, (p, subject_poses) in joint.items():
        samples[name] = {key: [np.asarray(v, float)] for key, v in p.items()}
        for subject, pose in subject_poses.items():
            poses[(subject, name)] = pose
            heights[(subject, name)] = float(p["body_h"][0]) if "body_h" in p else 0.0
    params = {name: {k: np.mean(v, axis=0) for k, v in keys.items()} for name, keys in samples.items()}
    if "C1" in params:
        subjects = [s for (s, n) in poses if n == "C1" and (s, "C2") in poses]
        m = np.mean([np.linalg.inv(poses[(s, "C2")]) @ poses[(s, "C1")] for s in subjects], axis=0)
        c1, height = atlas_on_dens_axis(params["C1"], m)
        samples["C1"] = {**{k: [v] for k, v in c1.items()}, "c2_offset": [np.array([height])]}
    for name, gaps in disc_heights(heights, poses).items():
        samples.setdefault(name, {})["disc"] = [np.array([np.mean(gaps)])]
    table: Dict[str, Dict[str, np.ndarray]] = {}
    for k, name in enumerate(LEVEL_NAMES):
        keys = list(sm.schema(name)) + (["c2_offset"] if name == "C1" else ["disc"])
        table[name] = {}
        for key in keys:
            if samples.get(name, {}).get(key):
                table[name][key] = np.mean(samples[name][key], axis=0)
                continue
            # Interpolate between the nearest levels above and below that have the parameter (same region schema).
            above = next((j for j in range(k - 1, 0, -1) if samples.get(LEVEL_NAMES[j], {}).get(key)), None)
            below = next((j for j in range(k + 1, len(LEVEL_NAMES)) if samples.get(LEVEL_NAMES[j], {}).get(key)), None)
            if above is None and below is None:
                raise ValueError(f"no real mask gives {key} for {name} or its neighbours")
            va = np.mean(samples[LEVEL_NAMES[above]][key], axis=0) if above is not None else None
            vb = np.mean(samples[LEVEL_NAMES[below]][key], axis=0) if below is not None else None
            if va is None or vb is None:
                table[name][key] = va if vb is None else vb
            else:
                f = (k - above) / (below - above)
                table[name][key] = (1 - f) * va + f * vb
    return table


def write_params(table: Dict[str, Dict[str, np.ndarray]], dice: Dict[str, float], path: Path) -> None:
    """Write the level table as a Python module of numbers, with the fits' Dice in its docstring."""
    doc = ("Parameters of the phantoms' vertebra shape model (shape_model.py), one entry per level, in mm (``_s`` "
           "entries and body_waist are ratios). Generated by tools/fit_vertebra_shapes.py from real manual VerSe "
           "vertebra masks (VerSe: Sekuboyina et al. 2021, Löffler et al. 2020; CC BY-SA 4.0, sub-gl* CC BY-NC-ND "
           "4.0): numbers of our own model fitted to the masks, no mask or mesh. ``disc``: height of the disc below; "
           "C1's ``c2_offset``: height of its ring above C2's body centre. Do not edit by hand; re-run the tool.")
    fit = "Soft Dice of the fits (subject:level, 'joint' for the shared shape of a level): " + ", ".join(
        f"{k} {v:.3f}" for k, v in sorted(dice.items()))
    lines = ['"""' + "\n".join(textwrap.wrap(doc, 116))]
    lines += ["", "\n".join(textwrap.wrap(fit, 116)) + '\n"""', "", "LEVELS = {"]
    for name, params in table.items():
        lines.append(f'    "{name}": {{')
        for key, value in params.items():
            digits = 3 if key in sm.DIMENSIONLESS else 2
            vals = ", ".join(f"{float(v):.{digits}f}" for v in np.atleast_1d(value))
            lines.append(f'        "{key}": ({vals},),')
        lines.append("    },")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
