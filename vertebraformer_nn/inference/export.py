"""From probabilities on the model grid to a case's files on the input's own grid and orientation.

:func:`export_case` runs what follows the network for one case, for ``predict`` and ``ensemble`` alike:
numbering at the model's spacing (``numbering.number_vertebrae``, with the coarse stage's levels when the
probabilities hold them and the CT sampled onto the model grid for the anchors, ``model_grid_hu``; or with
``numbering="argmax"`` the per-voxel argmax without the decoder, ``numbering.argmax_numbering``, for ablations and
baselines), VerSe codes, the input grid, and ``case_outputs.write_case_outputs``, with the post-processing values
of ``postprocessing.resolve``;
:func:`case_meta` is what it needs to know about the case (kept in the probabilities file, so ``ensemble`` can
export without the model), including the axis the numbering orders along (:func:`numbering_axis`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .. import labels
from ..geometry import front_axis_after_transpose, lateral_axis_after_transpose, superior_axis_after_transpose
from . import model_grid_hu
from .bone_boundary import snap_to_bone
from .boundaries import axis_orders, spine_labels_to_input
from .case_outputs import write_case_outputs
from .ct_discs import InputCT
from .cases import Reorientation
from .grid_map import LESION_FLOOR, GridMap, probability_to_input
from .grid_probabilities import GridProbabilities
from .numbering import argmax_numbering, number_vertebrae
from .postprocessing import Resolved, resolve

__all__ = ["NUMBERING_MODES", "superior_axis", "numbering_axis", "model_spacing", "case_meta", "grid_map",
           "input_model_spacing", "export_case"]

#: ``export_case(numbering=...)``: the structure-aware decoder (default), or the per-voxel argmax without it
NUMBERING_MODES = ("decoder", "argmax")


def superior_axis(direction: Sequence[float], transpose_forward: Sequence[int]) -> Tuple[int, int]:
    """(model axis, sign) whose index grows towards the head (+1) or the feet (-1), from the direction of the
    image nnU-Net's reader returns (``properties['sitk_stuff']['direction']``)."""
    return superior_axis_after_transpose(direction, transpose_forward)


def numbering_axis(direction: Sequence[float], transpose_forward: Sequence[int],
                   plans_axis: Optional[int] = None) -> Tuple[int, int, Optional[str]]:
    """(model axis, sign, note) along which the numbering orders a case's vertebrae.

    The model's head-foot axis is a fact of its plans (``plans_facts.anatomical_axes(plans)["si"]``, ``plans_axis``);
    the sign, which end is the head, is the case's own (its direction). With a reorienting reader the case's
    head-foot axis is always the plans' one. Without (e.g. stock ``SimpleITKIO``), a case stored in another
    orientation than the training data has its head-foot along another array axis: the network then sees it
    turned against everything it was trained on. Decision: such a case is still numbered, along its own head-foot
    axis (ordering by physical position stays right whatever the network makes of it), and the note says that its
    labels may be wrong and why."""
    axis, sign = superior_axis(direction, transpose_forward)
    if plans_axis is None or axis == int(plans_axis):
        return axis, sign, None
    return axis, sign, (f"orientation: this case's head-foot axis is model array axis {axis}, the model's (its "
                        f"plans) is axis {int(plans_axis)}: the model's reader does not reorient, so the network "
                        f"saw this case turned against its training data and its labels may be wrong; the "
                        f"vertebrae were ordered along the case's own head-foot axis")


def model_spacing(properties: Mapping, model_shape: Sequence[int], transpose_forward: Sequence[int]) -> list:
    """The model grid's actual spacing (mm per model axis): the cropped extent over the resampled size (the target
    spacing up to nnU-Net's rounding of the new shape)."""
    spacing = [float(properties["spacing"][int(t)]) for t in transpose_forward]
    crop = properties["shape_after_cropping_and_before_resampling"]
    return [s * int(c) / int(n) for s, c, n in zip(spacing, crop, model_shape)]


def _plain(value):
    """JSON-safe copy (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


PROPERTY_KEYS = ("spacing", "sitk_stuff", "shape_before_cropping", "bbox_used_for_cropping",
                 "shape_after_cropping_and_before_resampling")


def case_meta(case: str, source, kind: str, image: sitk.Image, properties: Mapping, model_shape: Sequence[int],
              transpose_forward: Sequence[int], reorientation: Reorientation, plans_axis: Optional[int] = None,
              **extra) -> dict:
    """Everything :func:`export_case` needs besides the probabilities (JSON-safe; saved in the probabilities
    file). ``plans_axis``: the model's head-foot axis (see :func:`numbering_axis`); ``extra``: provenance (model
    folder, folds, checkpoint)."""
    axis, sign, note = numbering_axis(properties["sitk_stuff"]["direction"], transpose_forward, plans_axis)
    return _plain({
        "case": case, "source": str(Path(source).absolute()), "kind": kind,  # absolute: ensemble runs elsewhere
        "input_geometry": {"size": image.GetSize(), "spacing": image.GetSpacing(), "origin": image.GetOrigin(),
                           "direction": image.GetDirection()},
        "properties": {k: properties[k] for k in PROPERTY_KEYS},
        "model_shape": model_shape, "model_spacing": model_spacing(properties, model_shape, transpose_forward),
        "transpose_forward": transpose_forward,
        "reorientation": {"axes": reorientation.axes, "flip": reorientation.flip},
        "superior": [axis, sign],
        "orientation_note": note,
        **extra,
    })


def grid_map(meta: Mapping) -> GridMap:
    reo = Reorientation(tuple(meta["reorientation"]["axes"]), tuple(meta["reorientation"]["flip"]))
    return GridMap.from_properties(meta["properties"], meta["model_shape"], meta["transpose_forward"], reo)


def input_model_spacing(meta: Mapping, grid: GridMap) -> list:
    """The model grid's spacing (mm) along each input array axis (z, y, x): the model axis that feeds it."""
    return [float(meta["model_spacing"][m]) for m in grid.model_axis]


def export_case(out_dir, ct: sitk.Image, probs: Mapping[str, np.ndarray], meta: Mapping, *, preview: bool = True,
                seconds: Optional[Dict[str, float]] = None, numbering: str = "decoder",
                postprocessing: Optional[Resolved] = None) -> dict:
    """Numbering, input grid and files of one case (module docstring); returns the report. ``probs``: a
    ``grid_probabilities.GridProbabilities`` (what ``predict`` and ``ensemble`` hand over), or head -> (C, X, Y, Z)
    on the model grid; ``seconds`` (if given) gets the "numbering" and "export" times; ``numbering``:
    one of :data:`NUMBERING_MODES` ("argmax" ignores the identification head: the labels are the segmentation
    argmax); ``postprocessing``: the values to use and their sources (default: the documented defaults), recorded
    in the report. The vertebra labels go back to the input grid from the probabilities
    (``boundaries.spine_labels_to_input``), then onto the bone edge the CT shows (``bone_boundary.snap_to_bone``,
    ``bone_edge_band_mm``), the lesion probability by nnU-Net's probability rule, both with its separate-z rule
    for anisotropic grids (``boundaries.axis_orders``)."""
    if numbering not in NUMBERING_MODES:
        raise ValueError(f"numbering must be one of {', '.join(NUMBERING_MODES)}, got {numbering!r}")
    postprocessing = postprocessing or resolve()
    params = postprocessing.values
    seconds = seconds if seconds is not None else {}
    grid = grid_map(meta)
    if tuple(ct.GetSize()[::-1]) != grid.input_shape:
        raise ValueError(f"{meta['source']}: image size {ct.GetSize()} differs from the one predicted "
                         f"{grid.input_shape[::-1]}")
    t = time.perf_counter()
    if not isinstance(probs, GridProbabilities):
        probs = GridProbabilities.from_dense(probs)
    if numbering == "argmax":
        result = argmax_numbering(probs)
    else:
        axis, sign = meta["superior"]
        direction = meta["properties"]["sitk_stuff"]["direction"]
        ct_array = sitk.GetArrayViewFromImage(ct)
        result = number_vertebrae(probs, meta["model_spacing"], int(axis), int(sign), params=params,
                                  hu=model_grid_hu.from_input(ct_array, grid),
                                  lateral_axis=lateral_axis_after_transpose(direction, meta["transpose_forward"]),
                                  ct=InputCT.from_grid(ct_array, ct.GetSpacing()[::-1], grid, meta["model_spacing"],
                                                       front_axis_after_transpose(direction,
                                                                                  meta["transpose_forward"])))
        result.report["coarse_stage"] = (meta.get("prediction") or {}).get("coarse")
    if meta.get("orientation_note"):
        result.notes.append(meta["orientation_note"])
    codes = labels.training_to_verse(result.labels)
    seconds["numbering"] = time.perf_counter() - t

    t = time.perf_counter()
    orders = axis_orders(meta, grid)
    network_vertebrae = spine_labels_to_input(codes, probs, grid, orders)
    vertebrae, bone_edge = snap_to_bone(network_vertebrae, sitk.GetArrayViewFromImage(ct), ct.GetSpacing()[::-1],
                                        params.bone_edge_band_mm, input_model_spacing(meta, grid),
                                        params.bone_edge_grow_mm)
    # below the floor no voxel can reach a candidate (interpolation never exceeds its neighbours)
    floor = min(LESION_FLOOR, 0.5 * params.lesion_candidate_floor)
    lesion = probability_to_input(probs.lesion, grid, floor, orders) if probs.lesion is not None else None
    report = write_case_outputs(out_dir, meta["case"], ct, vertebrae, lesion, result, preview=preview,
                                source=meta["source"], postprocessing=postprocessing, bone_edge=bone_edge,
                                centroid_labels=network_vertebrae)
    seconds["export"] = time.perf_counter() - t
    return report
