"""Domain randomisation in the VertebraFormer trainers' augmentation, the SynthSeg way (issue 16 part 2): every
scanner property that differs between CT sources is randomised far beyond the range real scans show, so that the
network cannot rely on any one of them (Billot et al., SynthSeg, Medical Image Analysis 2023: a network trained on
wildly randomised synthetic images segments real scans of any contrast and resolution).

Groups, each a trainer setting (``randomisation_groups``), each applied to a sample with its own probability
(``randomisation_probabilities``), in the order a scanner would cause them:

=============  ===================================================================  =========================
group          what                                                                 transform
=============  ===================================================================  =========================
``metal``      metal objects (mostly in a vertebra) with bright/dark axial streaks  MetalStreakTransform
``bias``       a smooth additive HU field (beam hardening, cupping, scatter)        nnU-Net's batchgeneratorsv2
                                                                                    BrightnessGradientAdditive
``kernel``     smooth or edge-enhancing reconstruction kernel (axial plane)         ReconstructionKernelTransform
``resolution`` slice thickness (head-foot) and pixel size (axial) with partial      AcquisitionGridTransform
               volume
``noise``      noise level 5-120 HU and grain (correlated texture)                  CorrelatedNoiseTransform
``hu``         HU scale 0.8-1.25 and offset +-120 HU (calibration, contrast agent)  HUCalibrationTransform
``contrast``   contrast and gamma, far wider than nnU-Net's own                     batchgeneratorsv2 Contrast,
                                                                                    Gamma
``fov``        the field of view ends inside the patch (head-foot or a round axial  FieldOfViewTransform
               field); cut vertebrae become the ignore label
=============  ===================================================================  =========================

They run after nnU-Net's ``SpatialTransform`` (on the final patch) and before nnU-Net's own intensity
augmentation, which is kept unchanged: :class:`DomainRandomisationMixin` calls nnU-Net's
``get_training_transforms`` and inserts these into the list it returns. Sizes are physical (the configuration's
spacing), axes are the plans' (``plans_facts.anatomical_axes``), intensities are HU through the plans' CT window
(:class:`~.randomisation_intensity.NormalisedCT`). Everything is a module-level class, so it pickles into nnU-Net's
augmentation workers.

Trainer variants for the ablation (:mod:`.ablation`): ``_noRandomisation`` (no group), and, at the budget, one
without each family: intensity (``hu``, ``contrast``, ``bias``), acquisition (``noise``, ``kernel``,
``resolution``), content (``metal``, ``fov``).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.local.brightness_gradient import BrightnessGradientAdditiveTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from .randomisation_artefacts import FieldOfViewTransform, MetalStreakTransform
from .randomisation_intensity import (CorrelatedNoiseTransform, HUCalibrationTransform, NormalisedCT,
                                      ReconstructionKernelTransform, widened)
from .randomisation_resolution import AcquisitionGridTransform

GROUPS = ("metal", "bias", "kernel", "resolution", "noise", "hu", "contrast", "fov")
FAMILIES: Dict[str, Tuple[str, ...]] = {"intensity": ("hu", "contrast", "bias"),
                                        "acquisition": ("noise", "kernel", "resolution"),
                                        "content": ("metal", "fov")}
#: probability that a sample gets a group. About 3 % of samples pass through untouched (1 - p multiplied over the
#: groups), about half get four or more groups: strong randomisation, yet every scanner property is also seen
#: unchanged in at least a fifth of the samples.
PROBABILITIES: Dict[str, float] = {"metal": 0.15, "bias": 0.3, "kernel": 0.4, "resolution": 0.35, "noise": 0.5,
                                   "hu": 0.5, "contrast": 0.3, "fov": 0.2}
#: HU of the bias field's peak (either sign)
BIAS_HU = (20.0, 120.0)


class GroupTransform(RandomTransform):
    """batchgeneratorsv2's ``RandomTransform`` for one group: drawing from numpy's global generator (see
    randomisation_intensity's docstring: torch's is not reseeded per augmentation worker), and keeping the voxels
    the loader padded (segmentation -1) at their value before the group: the outside value (water) that
    ``dataloading.OutsideFillTransform`` set there and the predictor pads with."""

    def __init__(self, group: str, transform: BasicTransform, apply_probability: float):
        super().__init__(transform, apply_probability)
        self.group = group

    def get_parameters(self, **data_dict) -> dict:
        return {"apply_transform": bool(np.random.uniform() < self.apply_probability)}

    def apply(self, data_dict: dict, **params) -> dict:
        image, seg = data_dict.get("image"), data_dict.get("segmentation")
        if not params["apply_transform"]:
            return data_dict
        padded = seg[0] < 0 if seg is not None and image is not None else None
        before = image[:, padded].clone() if padded is not None and bool(padded.any()) else None
        data_dict = self.transform(**data_dict)
        if before is not None:
            data_dict["image"][:, padded] = before
        return data_dict

    def __repr__(self):
        return f"{self.group}(p={self.apply_probability}, {type(self.transform).__name__})"


class BiasStrength:
    """Peak of the bias field in normalised units: +-``BIAS_HU`` HU (a module-level class: it pickles)."""

    def __init__(self, window: NormalisedCT, hu: Tuple[float, float] = BIAS_HU):
        self.window, self.hu = window, tuple(hu)

    def __call__(self, *args, **kwargs) -> float:
        return float(np.random.choice([-1.0, 1.0]) * self.window.hu_to_z_scale(np.random.uniform(*self.hu)))


class BiasWidth:
    """Width (sigma, voxels) of the bias field along each axis: 0.5-2 patch lengths, a smooth field."""

    def __call__(self, image_shape, dim) -> float:
        return float(np.random.uniform(0.5, 2.0) * image_shape[dim])


def group_transform(group: str, window: NormalisedCT, spacing: Sequence[float], si_axis: int,
                    ignore_label: Optional[int]) -> BasicTransform:
    """The transform of one group for patches of ``spacing`` (mm, array axes) whose head-foot axis is
    ``si_axis``."""
    axial, along = min(s for i, s in enumerate(spacing) if i != si_axis), float(spacing[si_axis])
    common = (window, spacing, si_axis)
    if group == "metal":
        # streaks at least half a voxel wide: narrower ones fall between the voxel centres of a coarse preset
        return MetalStreakTransform(*common, ignore_label=ignore_label, width_mm=widened((0.5, 2.0), axial, (0.5, 1.0)))
    if group == "bias":
        return BrightnessGradientAdditiveTransform(BiasWidth(), loc=(-0.5, 1.5), max_strength=BiasStrength(window),
                                                   mean_centered=False, clip_intensities=True)
    if group == "kernel":
        return ReconstructionKernelTransform(*common, smooth_mm=widened((0.3, 2.5), axial, (0.3, 1.2)),
                                             sharpen_radius_mm=max(1.0, 0.7 * axial))
    if group == "resolution":
        # slices from the patch's own spacing to 10 mm (at least 2.5 voxels); pixels up to 2.5 mm (1.6 voxels)
        return AcquisitionGridTransform(*common, thickness_mm=widened((along, 10.0), along, (1.0, 2.5)),
                                        pixel_mm=widened((axial, 2.5), axial, (1.0, 1.6)))
    if group == "noise":
        return CorrelatedNoiseTransform(*common, grain_mm=widened((0.0, 2.5), axial, (0.0, 1.5)),
                                        grain_si_mm=widened((0.0, 1.5), along, (0.0, 1.0)))
    if group == "hu":
        return HUCalibrationTransform(*common)
    if group == "contrast":
        return ComposeTransforms([
            ContrastTransform(BGContrast((0.5, 2.0)), preserve_range=True, synchronize_channels=True,
                              p_per_channel=1),
            GammaTransform(BGContrast((0.5, 2.0)), p_invert_image=0, synchronize_channels=True, p_per_channel=1,
                           p_retain_stats=1)])
    if group == "fov":
        return FieldOfViewTransform(window, spacing, si_axis, ignore_label)
    raise ValueError(f"unknown randomisation group {group!r}; the groups are {', '.join(GROUPS)}")


def randomisation_transforms(groups: Sequence[str], window: NormalisedCT, spacing: Sequence[float], si_axis: int,
                             ignore_label: Optional[int],
                             probabilities: Mapping[str, float] = PROBABILITIES) -> List[GroupTransform]:
    """The chosen groups' transforms in the fixed order of :data:`GROUPS`, each behind its probability."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown randomisation group(s) {sorted(unknown)}; the groups are {', '.join(GROUPS)}")
    return [GroupTransform(g, group_transform(g, window, spacing, si_axis, ignore_label), float(probabilities[g]))
            for g in GROUPS if g in groups]


def insert_after_spatial(pipeline: ComposeTransforms, transforms: Sequence[BasicTransform]) -> ComposeTransforms:
    """``transforms`` placed right after nnU-Net's ``SpatialTransform`` (after its return to 3D with dummy-2D
    augmentation), i.e. on the final patch, before nnU-Net's own intensity augmentation."""
    items = list(pipeline.transforms)
    spatial = [i for i, t in enumerate(items) if isinstance(t, SpatialTransform)]
    if not spatial:
        raise RuntimeError("nnU-Net's training pipeline has no SpatialTransform to place the randomisation after")
    at = spatial[0] + 1
    if at < len(items) and isinstance(items[at], Convert2DTo3DTransform):
        at += 1
    pipeline.transforms = items[:at] + list(transforms) + items[at:]
    return pipeline


def groups_without(*families: str) -> Tuple[str, ...]:
    """Every group except those of ``families`` (names of :data:`FAMILIES`)."""
    dropped = {g for family in families for g in FAMILIES[family]}
    return tuple(g for g in GROUPS if g not in dropped)


class DomainRandomisationMixin:
    """nnU-Net's training transforms with the randomisation groups of ``RANDOMISATION_GROUPS`` inserted (module
    docstring). Settings, changeable on an instance before ``get_dataloaders`` as nnU-Net's own are:
    ``randomisation_groups`` and ``randomisation_probabilities``."""

    #: the groups a trainer class randomises (its variants narrow it)
    RANDOMISATION_GROUPS: Tuple[str, ...] = GROUPS

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.randomisation_groups: Tuple[str, ...] = tuple(self.RANDOMISATION_GROUPS)
        self.randomisation_probabilities: Dict[str, float] = dict(PROBABILITIES)

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        # nnU-Net's is a staticmethod; called through the instance (get_dataloaders) it may read the plans
        pipeline = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        if not self.randomisation_groups:
            self.print_to_log_file("Domain randomisation: off")
            return pipeline
        from vertebraformer_nn.plans_facts import anatomical_axes

        plans = self.plans_manager.plans
        scheme = (self.configuration_manager.normalization_schemes or ["?"])[0]
        if scheme != "CTNormalization":
            self.print_to_log_file(f"Domain randomisation: off (it works in HU through the CT window; channel 0 is "
                                   f"normalised by {scheme})")
            return pipeline
        window = NormalisedCT.from_plans(plans)
        spacing = [float(s) for s in self.configuration_manager.spacing]
        transforms = randomisation_transforms(self.randomisation_groups, window, spacing,
                                              anatomical_axes(plans)["si"], ignore_label,
                                              self.randomisation_probabilities)
        self.print_to_log_file(f"Domain randomisation: {', '.join(map(repr, transforms))} (spacing {spacing} mm, "
                               f"window [{window.lower_hu:.0f}, {window.upper_hu:.0f}] HU)")
        return insert_after_spatial(pipeline, transforms)
