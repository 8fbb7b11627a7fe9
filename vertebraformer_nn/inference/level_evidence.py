"""Reduction of the identification branch's dense output to one level distribution per vertebra instance (the
numbering's level evidence; pure numpy, it works on what the predictor saved, so it lives with inference).

The identification head predicts, at every voxel, logits over the ``num_levels`` vertebra levels in
anatomical order (channel k = ``labels.ANATOMICAL_ORDER[k]`` = training label k + 1: C1..C7, T1..T12,
T13, L1..L5, L6). The numbering decoder needs one vector of level log-probabilities per vertebra
instance; :func:`instance_level_log_probs` computes it.

Reduction rule: **log of the mean softmax** over the instance's voxels,
``log p_i(l) = log( (1/|V_i|) sum_{v in V_i} softmax(logits_v)(l) )``, renormalised.
Why not the mean of per-voxel log-softmax (a renormalised geometric mean, i.e. a tempered product of
experts)? The voxels of one instance are not independent evidence (they are outputs of one network
over overlapping context), and the product form is dominated by its most confident dissenters: a
rim of boundary voxels that bleed into the neighbour's level (or a few voxels whose true level has
probability 1e-6) can veto the level that most of the vertebra votes for. The arithmetic mean is a
vote weighted by confidence: robust to such outliers, a proper distribution without renormalisation
tricks, never -inf for a level that any voxel supports, and its spread stays meaningful for the
dynamic programme (an instance split between T12 and L1 keeps both alternatives). It is also the
rule that fold and test-time-augmentation ensembling already use (probabilities are averaged), so
ensembled and single-model vectors mean the same thing.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from scipy import ndimage

from .. import labels as L

#: the transitional levels and the levels beside them (in anatomical order) whose evidence may stand in for theirs
TRANSITIONAL_NEIGHBOURS = {"T13": ("T12", "L1"), "L6": ("L5",)}


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":
            array = array.float()
        array = array.numpy()
    return np.asarray(array)


def instance_level_log_probs(
    id_logits,
    instance_map,
    *,
    inputs: str = "logits",
    floor: float = 1e-8,
) -> Dict[int, np.ndarray]:
    """One vector of level log-probabilities per vertebra instance.

    Args:
        id_logits: (num_levels, *spatial) array (numpy or torch, any float dtype), channel-first, no batch
            axis: the identification head's logits (``inputs="logits"``) or per-voxel probabilities
            (``inputs="probabilities"``, e.g. fold/TTA-averaged softmax, or segmentation probabilities
            without the background channel for the segmentation-only ablation; voxels whose
            probabilities sum to less than 1 then simply weigh less).
        instance_map: (*spatial) integer array; 0 is background, every positive value one instance.
        inputs: "logits" or "probabilities".
        floor: probabilities are floored at this value before the log, then renormalised, so no entry
            is -inf.

    Returns:
        {instance_id: float64 array (num_levels,)} for every positive id present in ``instance_map``,
        each a normalised log-distribution (``logsumexp == 0``), computed as the log of the mean of the
        per-voxel softmax over the instance's voxels (see the module docstring for why).
    """
    if inputs not in ("logits", "probabilities"):
        raise ValueError(f"inputs must be 'logits' or 'probabilities', not {inputs!r}")
    values = _to_numpy(id_logits)
    instances = _to_numpy(instance_map)
    if values.ndim != instances.ndim + 1 or values.shape[1:] != instances.shape:
        raise ValueError(
            f"id_logits must be (num_levels, *spatial) with spatial == instance_map.shape; "
            f"got {values.shape} and {instances.shape}"
        )
    if not np.issubdtype(instances.dtype, np.integer):
        if not np.all(np.mod(instances, 1) == 0):
            raise ValueError("instance_map must hold integer instance ids")
    instances = instances.astype(np.int64, copy=False)
    if instances.min(initial=0) < 0:
        raise ValueError("instance_map must not hold negative ids")

    result: Dict[int, np.ndarray] = {}
    if instances.size == 0 or instances.max(initial=0) == 0:
        return result
    for index, box in enumerate(ndimage.find_objects(instances)):
        if box is None:
            continue
        instance_id = index + 1
        mask = instances[box] == instance_id
        voxels = values[(slice(None),) + box][:, mask].astype(np.float64)  # (num_levels, n)
        if inputs == "logits":
            voxels = voxels - voxels.max(axis=0, keepdims=True)
            np.exp(voxels, out=voxels)
            voxels /= voxels.sum(axis=0, keepdims=True)
        result[instance_id] = _log_normalised(voxels.mean(axis=1), floor)
    return result


def _log_normalised(mean: np.ndarray, floor: float) -> np.ndarray:
    mean = np.maximum(mean, floor)
    return np.log(mean / mean.sum())


def rows_level_log_probs(rows, instance_ids, *, floor: float = 1e-8) -> Dict[int, np.ndarray]:
    """:func:`instance_level_log_probs` (``inputs="probabilities"``) over per-voxel rows instead of a dense map:
    ``rows`` (n, num_levels) probabilities of n voxels (e.g. ``GridProbabilities.id`` at its foreground voxels),
    ``instance_ids`` (n,) the instance each voxel belongs to (0: none). The same rule: log of the mean, floored,
    renormalised."""
    rows = _to_numpy(rows)
    ids = np.asarray(instance_ids).astype(np.int64, copy=False)
    if rows.ndim != 2 or ids.shape != (rows.shape[0],):
        raise ValueError(f"rows must be (n, num_levels) with n instance ids; got {rows.shape} and {ids.shape}")
    if ids.min(initial=0) < 0:
        raise ValueError("instance ids must not be negative")
    if not ids.size or ids.max() == 0:
        return {}
    counts = np.bincount(ids)
    sums = np.stack([np.bincount(ids, weights=rows[:, k].astype(np.float64), minlength=len(counts))
                     for k in range(rows.shape[1])], axis=1)
    return {int(i): _log_normalised(sums[i] / counts[i], floor) for i in np.flatnonzero(counts[1:]) + 1}


def transitional_as_neighbours(log_probs: np.ndarray) -> np.ndarray:
    """Per-instance level log-probabilities (n, ``len(labels.ANATOMICAL_ORDER)``) with T13's and L6's replaced by the
    larger of the levels' beside them (:data:`TRANSITIONAL_NEIGHBOURS`), renormalised: for evidence from a model
    that never learned transitional vertebrae, whose sequences it then neither supports nor penalises."""
    out = np.array(log_probs, dtype=np.float64, copy=True)
    if out.ndim != 2 or out.shape[1] != len(L.ANATOMICAL_ORDER):
        raise ValueError(f"log_probs must be (n, {len(L.ANATOMICAL_ORDER)}), got {out.shape}")
    for level, beside in TRANSITIONAL_NEIGHBOURS.items():
        out[:, L.ANATOMICAL_ORDER.index(level)] = out[:, [L.ANATOMICAL_ORDER.index(b) for b in beside]].max(axis=1)
    return out - np.logaddexp.reduce(out, axis=1, keepdims=True)
