"""The VertebraFormer experiment planner (DESIGN.md section 4).

nnU-Net cannot find an external planner by name (``-pl`` only searches inside nnunetv2), so these classes are
passed *as classes* to nnU-Net's planning API (``plan_experiment_dataset(id, VertebraFormerPlanner, ...)``) or
instantiated directly (:func:`vertebraformer_nn.planners.plan_and_preprocess` does that).

What is kept from nnU-Net (``ExperimentPlanner`` / ``nnUNetPlannerResEncM``): the dataset fingerprint, the
target spacing rule (per-axis median, 10th percentile for a strongly anisotropic axis) and the transpose (the
coarsest axis first), resampling functions, CT normalisation scheme name, reader/writer, label manager and
``preprocessor_name: DefaultPreprocessor`` (so stock ``nnUNetv2_predict`` works on our plans).

What is ours:

* Patch size = a grid of whole tokens (every axis a multiple of the encoder token size), sized by a *token
  budget*: GPU presets derive it from the memory target (``gpu_memory_target_in_gb``) with nnU-Net's own
  reference (8 GB holds a batch of 2 samples of 5.6e8 feature-map elements each; our network's
  ``compute_conv_feature_map_size`` counts in the same unit), the CPU preset uses a fixed small budget
  (:data:`CPU_TOKENS_PER_SAMPLE` tokens per sample, batch 2). GPU budgets are capped at
  :data:`MAX_TOKENS_PER_SAMPLE` tokens (attention compute grows with the square of the token count). The grid
  grows one token at a time along the axis that is shortest in millimetres relative to its target share, with
  the head-foot axis given :data:`HEAD_FOOT_ELONGATION` times the extent of the others, and no axis beyond
  the median image (a patch longer than the image sees nothing more). Numbering needs context along the
  spine, which runs head-foot, while the spine is only ~8-10 cm across: so where the image allows it the
  patch is elongated head-foot.
* The anatomical axes of the preprocessed arrays, decided once, here, from the reader and the images' headers
  (data_facts.py; a dataset of mixed orientations read without reorientation is refused), and written to
  ``plans["vertebraformer"]["anatomical_axes"]``: the elongation above, the trainer's mirroring and rotations,
  the predictor and the evaluation all read them from there (``vertebraformer_nn.plans_facts``).
* The dataset's domains (data_facts.py) in ``plans["vertebraformer"]["domains"]``, their count as the network's
  ``num_domains``.
* Batch size from the same budget (at least 2).
* The CPU preset resamples to :data:`CPU_SPACING_MM` mm isotropic (never finer than nnU-Net's own target).
* Its own CT window in ``foreground_intensity_properties_per_channel`` (ct_window.py: HU in and around the
  spine and in the lesions, not nnU-Net's bone-only window).
* Its own plans name and data identifier (``<plans>_3d_fullres``), so a stock ``nnUNetv2_preprocess`` of
  nnU-Net's own plans cannot overwrite our two-channel seg files.
* The architecture entry of :class:`vertebraformer_nn.network.VertebraFormer` with every size of the network,
  resolved from the planner's preset (presets.py): the plans describe the network completely.
* Two configurations: ``3d_fullres`` (the fine stage) and ``3d_lowres``, the coarse whole-field stage whose patch
  holds the whole scan, the long ones included (whole_field.py: 7 mm at the CPU preset), which the numbering takes
  its level evidence from. No ``2d``: the network is 3D.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    nnUNetPlannerResEncM,
)
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

from ..network import VertebraFormer, architecture_dict
from ..plans_facts import axes_from_transpose
from .ct_window import WINDOW_MARGIN_MM, ct_window
from .data_facts import dataset_domains, untransposed_axes
from .presets import COARSE_CONFIGURATION, CONFIGURATION, CPU_PLANS_NAME, PLANS_NAME, network_arch_kwargs
from .tokens import token_size_for_spacing
from .whole_field import HEAD_FOOT_PERCENTILE, plan_whole_field

#: CPU preset: isotropic target spacing in mm. 3.5 mm makes an 8-voxel token 28 mm, about one vertebral body
#: plus disc, so a 512-token patch elongated head-foot spans 30-40 cm of spine (10 or more vertebrae: enough
#: context to number them) while a binary spine Dice of >0.8 stays reachable (boundary error ~half a voxel on
#: 30-50 mm wide vertebrae); 4 mm would cover more but lose the thin cervical discs.
CPU_SPACING_MM = 3.5
#: CPU preset: tokens per sample (an 8^3-token 64^3 patch) and per batch; the network's cpu preset forwards
#: this in well under a second on two cores.
CPU_TOKENS_PER_SAMPLE = 512
CPU_TOKENS_PER_BATCH = 1024
#: Head-foot extent of the patch relative to the other axes (in mm), where the image allows it.
HEAD_FOOT_ELONGATION = 2.0
#: nnU-Net's memory reference (ExperimentPlanner.UNet_reference_val_3d / _corresp_GB / _corresp_bs_3d):
#: feature-map elements per sample per GB of GPU memory.
ELEMENTS_PER_SAMPLE_PER_GB = 560_000_000 / 8
REFERENCE_BATCH = 2
#: GPU presets: at most this many tokens per sample whatever the memory (global attention costs N^2 compute
#: with flash attention's linear memory; 16384 = a 256x128x128 patch of 8^3 tokens). Memory beyond goes to batch.
MAX_TOKENS_PER_SAMPLE = 16384
MIN_BATCH = 2


# ------------------------------------------------------------------------------------------------ pure rules
def plan_token_grid(median_shape: Sequence[float], spacing: Sequence[float], token_size: Sequence[int],
                    max_tokens: int, head_foot_axis: Optional[int],
                    elongation: float = HEAD_FOOT_ELONGATION) -> List[int]:
    """Tokens per axis of the patch.

    Start from one token per axis; repeatedly add one token along the axis whose patch extent in mm, divided by
    its weight (``elongation`` for the head-foot axis, 1 otherwise), is smallest, among the axes that are still
    shorter than the median image (rounded up to whole tokens) and whose growth keeps the token count within
    ``max_tokens``. Ends when no axis can grow. The result respects the budget, never exceeds the image by a
    token or more, and (budget and image permitting) is ``elongation`` times longer head-foot than across.
    """
    n = len(median_shape)
    caps = [max(1, int(math.ceil(float(m) / t - 1e-6))) for m, t in zip(median_shape, token_size)]
    weights = [elongation if i == head_foot_axis else 1.0 for i in range(n)]
    grid = [1] * n
    if int(np.prod(grid)) > max_tokens:
        raise ValueError(f"a token budget of {max_tokens} cannot hold even one token per axis")
    while True:
        candidates = []
        for i in range(n):
            if grid[i] >= caps[i]:
                continue
            trial = list(grid)
            trial[i] += 1
            if int(np.prod(trial)) > max_tokens:
                continue
            extent_mm = grid[i] * token_size[i] * float(spacing[i])
            candidates.append((extent_mm / weights[i], 0 if i == head_foot_axis else 1, i))
        if not candidates:
            return grid
        grid[min(candidates)[2]] += 1


# ------------------------------------------------------------------------------------------------ planner
class VertebraFormerPlanner(nnUNetPlannerResEncM):
    """GPU preset: nnU-Net's spacing, token budget from ``gpu_memory_target_in_gb``, network preset ``base``."""

    preset = "gpu"
    network_preset = "base"
    default_plans_name = PLANS_NAME
    #: whether the fine configuration carries the disc head (``plan-and-preprocess --disc-head``): off by default,
    #: since trained from the first step beside the other heads it cost unseen scanner styles identification rate
    #: and per-vertebra Dice (benchmarks/results/disc_head_ab_2026-12-03)
    disc_head = False

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: Optional[str] = None,
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False, verbose: bool = True):
        with warnings.catch_warnings():  # nnUNetPlannerResEncM warns about any target but 8 GB: ours is deliberate
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name,
                             plans_name or self.default_plans_name, overwrite_target_spacing, suppress_transpose)
        if preprocessor_name != "DefaultPreprocessor":
            raise ValueError("VertebraFormer plans keep preprocessor_name 'DefaultPreprocessor' so that stock "
                             "nnU-Net inference works; plan-and-preprocess runs our preprocessor itself")
        if "__" in self.plans_identifier:
            raise ValueError(f"plans name {self.plans_identifier!r} must not contain '__' (nnU-Net splits on it)")
        self.verbose = verbose
        self.summary: Dict = {}
        #: the dataset's domains (data_facts.py)
        self.domains: List[str] = dataset_domains(self.dataset_json, self.dataset)
        self.anatomical_axes: Optional[Dict[str, int]] = None  # determine_anatomical_axes
        self.summary_lowres: Optional[Dict] = None  # the coarse configuration's summary (whole_field.py)

    # -------------------------------------------------------------- nnU-Net hooks
    def generate_data_identifier(self, configuration_name: str) -> str:
        # ResEnc planners reuse nnUNetPlans_<config>; ours must not (two-channel seg files)
        return f"{self.plans_identifier}_{configuration_name}"

    def determine_anatomical_axes(self) -> Dict[str, int]:
        """``{"si", "ap", "lr"}`` -> axis of the preprocessed (transposed) arrays, decided once (data_facts.py)."""
        if self.anatomical_axes is None:
            transpose_forward, _ = self.determine_transpose()
            reader = self.determine_reader_writer().__name__
            self.anatomical_axes = axes_from_transpose(transpose_forward, untransposed_axes(reader, self.dataset))
        return self.anatomical_axes

    # -------------------------------------------------------------- budget
    def token_budget(self, token_size: Sequence[int]) -> Tuple[int, float]:
        """(max tokens per sample, cost of one token in feature-map elements) for this preset."""
        per_token = self._estimate(token_size, token_size)
        per_sample = ELEMENTS_PER_SAMPLE_PER_GB * float(self.UNet_vram_target_GB)
        return int(min(per_sample // per_token, MAX_TOKENS_PER_SAMPLE)), per_token

    def _estimate(self, patch: Sequence[int], token_size: Sequence[int]) -> float:
        """The network's own feature-map estimate (batch 1) for ``patch``; one network per token size is built
        (its estimate accepts any patch of whole tokens)."""
        key = tuple(int(t) for t in token_size)
        cache = self.__dict__.setdefault("_net_cache", {})
        if key not in cache:
            cache[key] = self._build_net(key, key)
        return float(cache[key].compute_conv_feature_map_size(patch))

    def _build_net(self, patch, token_size) -> VertebraFormer:
        """The planned network on the meta device (no memory, no initialisation cost): only its estimate is used."""
        import torch

        from nnunetv2.utilities.label_handling.label_handling import LabelManager

        arch = self._architecture(patch, token_size)
        # output channels as nnU-Net counts them: the labels less the ignore label
        num_classes = LabelManager(self.dataset_json["labels"],
                                   self.dataset_json.get("regions_class_order")).num_segmentation_heads
        with torch.device("meta"):
            return VertebraFormer(self._num_input_channels(), num_classes, **arch["arch_kwargs"])

    def batch_size_for(self, patch: Sequence[int], token_size: Sequence[int], n_voxels_dataset: float) -> int:
        per_sample = ELEMENTS_PER_SAMPLE_PER_GB * float(self.UNet_vram_target_GB)
        bs = int(math.floor(per_sample * REFERENCE_BATCH / self._estimate(patch, token_size)))
        # nnU-Net's overfitting cap (max_dataset_covered: 1 for the ResEnc presets)
        cap = int(round(n_voxels_dataset * self.max_dataset_covered / float(np.prod(patch, dtype=np.float64))))
        return max(MIN_BATCH, min(bs, max(cap, MIN_BATCH)))

    def _num_input_channels(self) -> int:
        return len(self.dataset_json["channel_names"])

    def _architecture(self, patch: Sequence[int], token_size: Sequence[int]) -> dict:
        return architecture_dict(network_arch_kwargs(self.network_preset, patch, token_size, len(self.domains),
                                                     use_boundary_head=bool(self.disc_head)))

    # -------------------------------------------------------------- plans
    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache) -> dict:
        if len(spacing) != 3:
            raise ValueError("VertebraFormer is 3D only")
        token_size = token_size_for_spacing(spacing)
        max_tokens, per_token = self.token_budget(token_size)
        grid = plan_token_grid(median_shape, spacing, token_size, max_tokens, self.determine_anatomical_axes()["si"])
        patch = [g * t for g, t in zip(grid, token_size)]
        batch_size = self.batch_size_for(patch, token_size, approximate_n_voxels_dataset)

        resampling_data, resampling_data_kwargs, resampling_seg, resampling_seg_kwargs = self.determine_resampling()
        resampling_softmax, resampling_softmax_kwargs = self.determine_segmentation_softmax_export_fn()
        normalization_schemes, mask_is_used_for_norm = \
            self.determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        self.summary.update(token_size=token_size, token_grid=grid, tokens=int(np.prod(grid)),
                            max_tokens=max_tokens, elements_per_token=per_token, patch_size=patch,
                            batch_size=batch_size, median_shape=[float(m) for m in median_shape],
                            spacing=[float(s) for s in spacing])
        return {
            "data_identifier": data_identifier,
            "preprocessor_name": self.preprocessor_name,
            "batch_size": int(batch_size),
            "patch_size": [int(p) for p in patch],
            "median_image_size_in_voxels": [float(m) for m in median_shape],
            "spacing": [float(s) for s in spacing],
            "normalization_schemes": normalization_schemes,
            "use_mask_for_norm": mask_is_used_for_norm,
            "resampling_fn_data": resampling_data.__name__,
            "resampling_fn_seg": resampling_seg.__name__,
            "resampling_fn_data_kwargs": resampling_data_kwargs,
            "resampling_fn_seg_kwargs": resampling_seg_kwargs,
            "resampling_fn_probabilities": resampling_softmax.__name__,
            "resampling_fn_probabilities_kwargs": resampling_softmax_kwargs,
            "architecture": self._architecture(patch, token_size),
        }

    def plan_experiment(self) -> dict:
        from batchgenerators.utilities.file_and_folder_operations import join
        import shutil
        from nnunetv2.paths import nnUNet_preprocessed

        if len(self.dataset_json["channel_names"]) != 1:
            raise ValueError("VertebraFormer plans one CT channel")
        transpose_forward, transpose_backward = self.determine_transpose()
        reader = self.determine_reader_writer().__name__
        self.determine_anatomical_axes()
        spacing = np.asarray(self.determine_fullres_target_spacing(), dtype=np.float64)
        spacing_t = spacing[transpose_forward]
        new_shapes = [compute_new_shape(shape, sp, spacing) for sp, shape in
                      zip(self.dataset_fingerprint["spacings"], self.dataset_fingerprint["shapes_after_crop"])]
        median_t = np.median(new_shapes, 0)[transpose_forward]
        n_voxels = float(np.prod(median_t, dtype=np.float64) * self.dataset_json["numTraining"])

        lowres = plan_whole_field(self, spacing, transpose_forward)
        fullres = self.get_plans_for_configuration(spacing_t, median_t, self.generate_data_identifier(CONFIGURATION),
                                                   n_voxels, {})
        fullres["batch_dice"] = False  # no lowres stage (nnU-Net's rule)
        window, window_info = ct_window(self.dataset, self.determine_reader_writer()(),
                                        self.dataset_json["labels"].get("ignore"))

        median_spacing = np.median(self.dataset_fingerprint["spacings"], 0)[transpose_forward]
        median_shape = np.median(self.dataset_fingerprint["shapes_after_crop"], 0)[transpose_forward]
        shutil.copy(join(self.raw_dataset_folder, "dataset.json"),
                    join(nnUNet_preprocessed, self.dataset_name, "dataset.json"))
        self.summary.update(preset=self.preset, network_preset=self.network_preset,
                            gpu_memory_gb=None if self.preset == "cpu" else float(self.UNet_vram_target_GB),
                            anatomical_axes=self.anatomical_axes, window=window, window_info=window_info,
                            transpose_forward=[int(i) for i in transpose_forward], reader=reader)
        plans = {
            "dataset_name": self.dataset_name,
            "plans_name": self.plans_identifier,
            "original_median_spacing_after_transp": [float(i) for i in median_spacing],
            "original_median_shape_after_transp": [int(round(i)) for i in median_shape],
            "image_reader_writer": reader,
            "transpose_forward": [int(i) for i in transpose_forward],
            "transpose_backward": [int(i) for i in transpose_backward],
            "configurations": {CONFIGURATION: fullres, **({COARSE_CONFIGURATION: lowres} if lowres else {})},
            "experiment_planner_used": self.__class__.__name__,
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {"0": window},
            "vertebraformer": {
                "preset": self.preset,
                "network_preset": self.network_preset,  # where the sizes came from; they are in arch_kwargs
                "gpu_memory_target_in_gb": self.summary["gpu_memory_gb"],
                "anatomical_axes": dict(self.anatomical_axes),
                "domains": list(self.domains),
                "max_tokens_per_sample": self.summary["max_tokens"],
                "ct_window": window_info,
                "nnunet_foreground_intensity_properties_per_channel":
                    self.dataset_fingerprint["foreground_intensity_properties_per_channel"],
                "lesion_seg_channel": 1,
                "coarse_configuration": COARSE_CONFIGURATION if lowres else None,
            },
        }
        self.plans = plans
        self.save_plans(plans)
        if self.verbose:
            print(self.describe())
        return plans

    # -------------------------------------------------------------- summary
    def describe(self) -> str:
        s = self.summary
        sp = "x".join(f"{v:g}" for v in np.round(s["spacing"], 2))
        patch = "x".join(map(str, s["patch_size"]))
        grid = "x".join(map(str, s["token_grid"]))
        tok = "x".join(map(str, s["token_size"]))
        axes = s["anatomical_axes"]
        mm = [round(p * v) for p, v in zip(s["patch_size"], s["spacing"])]
        med = "x".join(str(int(round(m))) for m in s["median_shape"])
        lo, hi = s["window"]["percentile_00_5"], s["window"]["percentile_99_5"]
        if self.preset == "cpu":
            why_spacing = (f"CPU preset: {CPU_SPACING_MM:g} mm isotropic (never finer than nnU-Net's target) so a "
                           "small patch covers much of the spine")
            why_budget = f"CPU budget {CPU_TOKENS_PER_SAMPLE} tokens/sample, {CPU_TOKENS_PER_BATCH} tokens/batch"
        else:
            why_spacing = "nnU-Net's target spacing rule (median; 10th percentile on a strongly anisotropic axis)"
            why_budget = (f"{s['gpu_memory_gb']:g} GB -> at most {s['max_tokens']} tokens/sample at batch "
                          f"{REFERENCE_BATCH} (nnU-Net's reference: 8 GB = {REFERENCE_BATCH} x 5.6e8 feature-map "
                          f"elements; one token = {s['elements_per_token']:.3g}; attention cap "
                          f"{MAX_TOKENS_PER_SAMPLE}); memory left over goes to the batch")
        return "\n".join([
            f"VertebraFormer plans '{self.plans_identifier}' ({self.dataset_name}, {CONFIGURATION}, network preset "
            f"'{self.network_preset}'):",
            f"  spacing  {sp} mm  ({why_spacing}); median image {med} voxels",
            f"  axes     head-foot {axes['si']}, front-back {axes['ap']}, left-right {axes['lr']} (reader "
            f"{s['reader']}, transpose {s['transpose_forward']}); domains: {', '.join(self.domains) or 'none'}",
            f"  patch    {patch} voxels = {grid} tokens of {tok} = {s['tokens']} tokens; {mm[0]}x{mm[1]}x{mm[2]} mm, "
            f"elongated head-foot up to {HEAD_FOOT_ELONGATION:g}x where the image allows (numbering needs several "
            "vertebrae in view)",
            f"  batch    {s['batch_size']}  ({why_budget})",
            self._describe_lowres(),
            f"  window   CT clip [{lo:.0f}, {hi:.0f}] HU, mean {s['window']['mean']:.0f}, std {s['window']['std']:.0f}"
            f"  (HU within {WINDOW_MARGIN_MM:g} mm of the vertebrae and in lesions, widened to the lesions' own range; "
            f"nnU-Net's bone-only window "
            f"would clip at [{self._nnunet_window()[0]:.0f}, {self._nnunet_window()[1]:.0f}] HU)",
        ])

    def _describe_lowres(self) -> str:
        s = self.summary_lowres
        if not s:
            return f"  {COARSE_CONFIGURATION} not planned (no spacing coarser than {CONFIGURATION}'s)"
        sp = "x".join(f"{v:g}" for v in np.round(s["spacing"], 2))
        held = "x".join(str(int(round(m))) for m in s["held_shape"])
        whole = all(p >= m for p, m in zip(s["patch_size"], s["held_shape"]))
        patch = "x".join(map(str, s["patch_size"]))
        return (f"  {COARSE_CONFIGURATION} spacing {sp} mm, patch {patch} = {s['tokens']} tokens, "
                f"batch {s['batch_size']}: {'the whole' if whole else 'not all of the'} image of median width and "
                f"{HEAD_FOOT_PERCENTILE:g}th-percentile length ({held}) in one patch (the coarse whole-field stage "
                "of the numbering)")

    def _nnunet_window(self) -> Tuple[float, float]:
        p = self.dataset_fingerprint["foreground_intensity_properties_per_channel"]["0"]
        return float(p["percentile_00_5"]), float(p["percentile_99_5"])


class VertebraFormerCPUPlanner(VertebraFormerPlanner):
    """CPU preset: coarse isotropic spacing, a small fixed token budget, network preset ``cpu``."""

    preset = "cpu"
    network_preset = "cpu"
    default_plans_name = CPU_PLANS_NAME

    def determine_fullres_target_spacing(self) -> np.ndarray:
        target = np.asarray(super().determine_fullres_target_spacing(), dtype=np.float64)
        return np.maximum(target, CPU_SPACING_MM)

    def token_budget(self, token_size: Sequence[int]) -> Tuple[int, float]:
        return CPU_TOKENS_PER_SAMPLE, self._estimate(token_size, token_size)

    def batch_size_for(self, patch, token_size, n_voxels_dataset) -> int:
        tokens = int(np.prod([p // t for p, t in zip(patch, token_size)]))
        return max(MIN_BATCH, CPU_TOKENS_PER_BATCH // tokens)
