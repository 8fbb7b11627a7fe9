"""The coarse whole-field configuration, ``3d_lowres`` (issue 15 part 1): one patch that holds the whole scan, the long
ones included (:func:`whole_field_shape`), so that one pass of the network sees the whole field of view with its
anchors (skull base, ribs, pelvis) and gives level evidence for every vertebra at once; the fine ``3d_fullres`` patch
sees ~30 cm of it at a time.

It is a configuration of the same plans, planned by the same ``plan-and-preprocess`` (its own data folder
``<plans>_3d_lowres``), trained by the same ``vertebraformer train DATASET FOLD -c 3d_lowres`` (same network class and
trainer: it predicts the same heads at coarse resolution), and used by ``predict`` when the sibling model folder
``<Trainer>__<Plans>__3d_lowres`` exists (``inference/coarse_stage.py``). It is no nnU-Net cascade: the fine stage
does not take the coarse segmentation as input, so the plans write no ``next_stage`` (which would make nnU-Net's
validation export cascade inputs) and no ``3d_cascade_fullres``.

Spacing (:func:`coarse_spacing`):

* CPU preset: :data:`CPU_COARSE_SPACING_MM` (7 mm) isotropic, never finer than the fine stage's: a 60 cm scan is
  ~90 x 50 x 50 voxels, ~600 tokens of 56 mm, a forward pass of the CPU network in well under a second;
* GPU presets: the finest spacing, at least :data:`MIN_COARSE_FACTOR` times the fine one on every axis (nnU-Net's own
  rule for a low-resolution stage worth having), at which the shape to hold fits in one patch within the preset's
  token budget (grown by nnU-Net's factor 1.03 per step).

The patch is then the planner's own token grid over that shape at that spacing (``planner.plan_token_grid``): the
median scan across, the :data:`HEAD_FOOT_PERCENTILE`-th percentile head-foot, when it fits the budget, else the
budget's largest patch, elongated head-foot (prediction slides a window over larger scans). Head-foot the median is
not enough: the scans longer than it (a whole spine, 60-75 cm) are those whose levels most need the whole field, and
a patch of the median (28 cm in the quick protocol's phantoms) saw no more of them than a fine patch does (record
benchmarks/results/coarse_field_2026-12-07).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np

from .presets import COARSE_CONFIGURATION
from .tokens import token_size_for_spacing

CPU_COARSE_SPACING_MM = 7.0
MIN_COARSE_FACTOR = 2.0
SPACING_STEP = 1.03
#: head-foot, the coarse patch holds this percentile of the scans (the median across): in the quick protocol's
#: phantoms 64 cm where the median is 28 cm; the longest (76 cm) still slide a window
HEAD_FOOT_PERCENTILE = 90.0


def tokens_needed(median_shape: Sequence[float], token_size: Sequence[int]) -> int:
    """Tokens of the smallest whole-token patch that holds ``median_shape``."""
    return int(np.prod([max(1, math.ceil(float(m) / t - 1e-6)) for m, t in zip(median_shape, token_size)]))


def whole_field_shape(shapes, head_foot_axis: int, percentile: float = HEAD_FOOT_PERCENTILE) -> np.ndarray:
    """The shape the coarse patch is planned to hold, of the scans' ``shapes`` (n, 3): their median on every axis but
    ``head_foot_axis``, their ``percentile``-th percentile along it."""
    shapes = np.asarray(shapes, dtype=np.float64)
    shape = np.median(shapes, 0)
    shape[head_foot_axis] = np.percentile(shapes[:, head_foot_axis], percentile)
    return shape


def coarse_spacing(fine_spacing: Sequence[float], shape_fine: Sequence[float], cpu: bool,
                   fits: Optional[Callable[[np.ndarray, np.ndarray], bool]] = None) -> np.ndarray:
    """The coarse spacing (module docstring); ``shape_fine``: the shape to hold (:func:`whole_field_shape`) at
    ``fine_spacing``; ``fits(spacing, shape)``: whether that shape fits one patch of the budget (GPU presets)."""
    fine = np.asarray(fine_spacing, dtype=np.float64)
    if cpu:
        return np.maximum(fine, CPU_COARSE_SPACING_MM)
    spacing = fine * MIN_COARSE_FACTOR
    extent = fine * np.asarray(shape_fine, dtype=np.float64)
    for _ in range(200):  # 1.03^200 ~ 370: far beyond any scan
        if fits is None or fits(spacing, extent / spacing):
            break
        spacing = spacing * SPACING_STEP
    return spacing


def plan_whole_field(planner, fine_spacing: np.ndarray, transpose_forward: Sequence[int]) -> Optional[dict]:
    """The ``3d_lowres`` entry of the plans for ``planner`` (a VertebraFormerPlanner), or None when the coarse
    spacing would not be coarser than ``fine_spacing`` (untransposed) on any axis. Leaves the planner's summary of it
    in ``planner.summary_lowres``."""
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape


    tf = list(transpose_forward)
    fingerprint = planner.dataset_fingerprint
    shapes_at = lambda spacing: np.array([compute_new_shape(shape, sp, spacing) for sp, shape in  # noqa: E731
                                          zip(fingerprint["spacings"], fingerprint["shapes_after_crop"])])
    head_foot = tf[planner.determine_anatomical_axes()["si"]]  # of the untransposed shapes
    held_at = lambda spacing: whole_field_shape(shapes_at(spacing), head_foot)  # noqa: E731

    def fits(spacing: np.ndarray, shape: np.ndarray) -> bool:
        token_size = token_size_for_spacing(spacing[tf])
        return tokens_needed(shape[tf], token_size) <= planner.token_budget(token_size)[0]

    spacing = coarse_spacing(fine_spacing, held_at(fine_spacing), planner.preset == "cpu", fits)
    if np.all(spacing <= np.asarray(fine_spacing) * 1.0001):
        return None
    shapes = shapes_at(spacing)
    median, held = np.median(shapes, 0), whole_field_shape(shapes, head_foot)
    n_voxels = float(np.prod(median, dtype=np.float64) * planner.dataset_json["numTraining"])
    entry = planner.get_plans_for_configuration(spacing[tf], held[tf],
                                                planner.generate_data_identifier(COARSE_CONFIGURATION), n_voxels, {})
    entry["median_image_size_in_voxels"] = [float(m) for m in median[tf]]  # the planned-for shape is held's
    entry["batch_dice"] = False
    # numbering cuts the fine stage's instances only: a disc head here would be trained and never read
    entry["architecture"]["arch_kwargs"]["use_boundary_head"] = False
    planner.summary_lowres = dict(planner.summary, median_shape=[float(m) for m in median[tf]],
                                  held_shape=[float(h) for h in held[tf]])
    return entry
