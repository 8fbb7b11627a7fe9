"""Structure-aware vertebra numbering (DESIGN.md section 7): the steps in order, on one case at the model's spacing.

1. ``instances.vertebra_instances``: vertebra instances from the segmentation probabilities (a
   ``grid_probabilities.GridProbabilities``, what the predictor keeps, or full arrays, reduced to one first).
2. :func:`order_instances`: head first, by the centre of mass (mm) along the superior axis.
3. ``level_evidence.instance_level_log_probs``: one vector of level log-probabilities per instance (log of the
   mean softmax) over the identification head's probabilities, or over the foreground channels of the
   segmentation probabilities (ablation, nnU-Net baseline).
4. ``decoder.decode_levels``: the labels of the whole ordered sequence jointly.
5. :func:`number_vertebrae`: all of it, written back as a training-label map plus per-instance records and
   human-readable notes.

:func:`argmax_numbering` is the ablation / baseline without any of it: the per-voxel argmax as the label map.
Every tuned constant comes in one ``postprocessing.Postprocessing`` (the model folder's, or the defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from .. import labels as L
from .decoder import NUM_LEVELS, decode_levels
from .grid_probabilities import GridProbabilities, as_grid_probabilities
from .instances import check_probabilities, check_spacing, instance_geometry, seg_grid, vertebra_instances
from .level_evidence import rows_level_log_probs
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["NumberingResult", "OrderedInstances", "order_instances", "ordered_instances", "decode_instances",
           "number_vertebrae", "ARGMAX_NOTE", "argmax_numbering"]


@dataclass
class NumberingResult:
    """Output of :func:`number_vertebrae` and :func:`argmax_numbering`."""

    labels: np.ndarray  # uint8 training labels
    instances: List[dict]  # head -> foot
    notes: List[str]


def _check_axis(superior_axis, superior_sign) -> Tuple[int, int]:
    if superior_axis not in (0, 1, 2):
        raise ValueError(f"superior_axis must be 0, 1 or 2, got {superior_axis!r}")
    if superior_sign not in (1, -1):
        raise ValueError(f"superior_sign must be +1 or -1, got {superior_sign!r}")
    return int(superior_axis), int(superior_sign)


def order_instances(centres_mm, superior_axis: int, superior_sign: int = 1) -> np.ndarray:
    """Indices that sort instance centres head first: by ``superior_sign * centre[superior_axis]``,
    descending (``superior_sign=+1``: the index increases towards the head)."""
    axis, sign = _check_axis(superior_axis, superior_sign)
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    return np.argsort(-sign * centres[:, axis], kind="stable")


@dataclass
class OrderedInstances:
    """Steps 1-3 of the numbering (what the decoder's parameters do not change), head to foot."""

    instance_map: np.ndarray  # int32 ids, 0 background
    ids: np.ndarray  # (K,) instance ids, head first
    centres: np.ndarray  # (K, 3) mm
    volumes: np.ndarray  # (K,) mm3
    log_probs: np.ndarray  # (K, 26) level log-probabilities
    majority_label: Dict[int, int]  # id -> voxel-wise majority training label
    notes: List[str] = field(default_factory=list)


def ordered_instances(seg_probs, spacing, superior_axis: int, superior_sign: int = 1, id_probs=None,
                      params: Postprocessing = DEFAULTS) -> OrderedInstances:
    """Steps 1-3 (module docstring) with the instance parameters of ``params``; arguments as
    :func:`number_vertebrae`."""
    probs = _grid(seg_probs, id_probs)
    sp = check_spacing(spacing)
    _check_axis(superior_axis, superior_sign)
    found = vertebra_instances(probs, sp, params)
    instance_map, notes = found.instance_map, list(found.notes)
    ids, centres, volumes = instance_geometry(instance_map, sp)
    if len(ids) > NUM_LEVELS:  # more instances than levels: false positives; keep the largest
        keep = np.sort(np.argsort(-volumes, kind="stable")[:NUM_LEVELS])
        instance_map = np.where(np.isin(instance_map, ids[keep]), instance_map, 0)
        notes.append(f"{len(ids) - NUM_LEVELS} smallest of {len(ids)} instances dropped: "
                     f"only {NUM_LEVELS} levels exist")
        ids, centres, volumes = ids[keep], centres[keep], volumes[keep]
    log_probs = np.zeros((0, NUM_LEVELS))
    if len(ids):
        order = order_instances(centres, superior_axis, superior_sign)
        ids, centres, volumes = ids[order], centres[order], volumes[order]
        evidence = probs.id if probs.id is not None else probs.seg  # instance voxels are foreground voxels
        per_instance = rows_level_log_probs(evidence, instance_map.ravel()[probs.index])
        log_probs = np.stack([per_instance[int(i)] for i in ids])
    return OrderedInstances(instance_map, ids, centres, volumes, log_probs, found.majority_label, notes)


def _grid(seg_probs, id_probs=None) -> GridProbabilities:
    """Full arrays checked, then reduced; a GridProbabilities as it is."""
    if isinstance(seg_probs, GridProbabilities):
        return seg_grid(as_grid_probabilities(seg_probs, id_probs))
    seg = check_probabilities(seg_probs, L.NUM_TRAINING_LABELS, "seg_probs")
    if id_probs is not None:
        id_probs = check_probabilities(id_probs, NUM_LEVELS, "id_probs")
        if id_probs.shape[1:] != seg.shape[1:]:
            raise ValueError(f"id_probs spatial shape {id_probs.shape[1:]} differs from seg_probs' {seg.shape[1:]}")
    return as_grid_probabilities(seg, id_probs)


def decode_instances(found: OrderedInstances, params: Postprocessing = DEFAULTS) -> NumberingResult:
    """Steps 4-5: the decoder (its parameters from ``params``) and the labelled map, records and notes."""
    notes = list(found.notes)
    if len(found.ids) == 0:
        return NumberingResult(np.zeros(found.instance_map.shape, dtype=np.uint8), [], notes)
    ids, centres, log_probs = found.ids, found.centres, found.log_probs
    decoding = decode_levels(log_probs, np.linalg.norm(np.diff(centres, axis=0), axis=1), params)
    lut = np.zeros(int(found.instance_map.max()) + 1, dtype=np.uint8)
    lut[ids] = decoding.levels + 1
    instances, renumbered = [], []
    for k, (i, level) in enumerate(zip(ids, decoding.levels)):
        label = int(level) + 1
        code = L.CODE_OF_TRAINING_LABEL[label]
        majority = found.majority_label[int(i)]
        if majority != label:
            renumbered.append(f"{L.ANATOMICAL_ORDER[majority - 1]} -> {L.name(code)}")
        instances.append({
            "instance_id": k + 1,
            "label": label,
            "code": code,
            "name": L.name(code),
            "confidence": float(decoding.confidence[k]),
            "log_probs": [float(v) for v in log_probs[k]],
            "centre_mm": [float(v) for v in centres[k]],
            "volume_mm3": float(found.volumes[k]),
        })
    notes += decoding.notes
    if renumbered:
        notes.append(f"numbered against the voxel-wise majority level (head to foot): {'; '.join(renumbered)}")
    return NumberingResult(lut[found.instance_map], instances, notes)


def number_vertebrae(seg_probs, spacing, superior_axis: int, superior_sign: int = 1, id_probs=None, *,
                     params: Postprocessing = DEFAULTS) -> NumberingResult:
    """Number the vertebrae of one case at the model's spacing.

    Args:
        seg_probs: (27, X, Y, Z) segmentation softmax, channel c = training label c (float16 or float32), or a
            ``GridProbabilities`` (what the predictor keeps; it carries its identification probabilities).
        spacing: mm per array axis.
        superior_axis, superior_sign: the array axis whose index grows towards the head (sign +1) or the
            feet (sign -1).
        id_probs: optional (26, X, Y, Z) identification softmax (channel k = ``ANATOMICAL_ORDER[k]``); None =
            level evidence from the foreground channels of ``seg_probs`` (ablation, nnU-Net baseline).
        params: the post-processing parameters (instances and decoder).

    Returns:
        NumberingResult: ``labels`` (uint8 training labels), ``instances`` head to foot (instance_id 1..K in
        that order, label, code, name, confidence, log_probs, centre_mm, volume_mm3) and ``notes``.
    """
    found = ordered_instances(seg_probs, spacing, superior_axis, superior_sign, id_probs, params)
    return decode_instances(found, params)


# --- baseline without the decoder ---------------------------------------------------------------------------

#: note of :func:`argmax_numbering`, so reports say which numbering made their labels
ARGMAX_NOTE = "per-voxel argmax, no numbering decoder"


def argmax_numbering(seg_probs) -> NumberingResult:
    """Numbering read off the per-voxel argmax of a (27, X, Y, Z) segmentation softmax, for ablations and the
    nnU-Net baseline: no instances, no fragment cleaning, no sequence decoding, so a level the argmax gives to two
    vertebrae stays duplicated and a vertebra whose argmax flips half-way keeps two labels.

    Returns a :class:`NumberingResult`: ``labels`` = the argmax (uint8 training labels); ``instances`` = one record
    per training label present, head to foot by anatomical order (instance_id, label, code, name, confidence,
    voxels), where confidence is the mean over that label's voxels of their winning probability (the argmax
    label's own probability; the decoder's confidence is a posterior marginal instead, so the two are not
    comparable); ``notes`` = [:data:`ARGMAX_NOTE`]."""
    probs = _grid(seg_probs)
    label_map = probs.argmax.copy()
    at = label_map.ravel()[probs.index]  # the foreground voxels' labels
    voxels = np.bincount(at, minlength=L.NUM_TRAINING_LABELS)
    winning = np.bincount(at, weights=probs.winning().astype(np.float64), minlength=L.NUM_TRAINING_LABELS)
    instances = []
    for label in np.flatnonzero(voxels[1:]) + 1:  # training label order = anatomical order = head to foot
        code = L.CODE_OF_TRAINING_LABEL[int(label)]
        instances.append({"instance_id": len(instances) + 1, "label": int(label), "code": code, "name": L.name(code),
                          "confidence": float(winning[label] / voxels[label]), "voxels": int(voxels[label])})
    return NumberingResult(label_map, instances, [ARGMAX_NOTE])
