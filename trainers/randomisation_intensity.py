"""Domain randomisation of CT intensities, in the network's own normalised space (issue 16 part 2, training side).

The trainer's patches arrive normalised by nnU-Net's ``CTNormalization`` with the plans' window: HU clipped to
``[percentile_00_5, percentile_99_5]``, then z-scored with the window's ``mean`` and ``std``
(:class:`NormalisedCT`). Every transform here acts as the scanner would have acted on the HU, before that
normalisation: it maps back to HU where the operation is not affine, works on HU, and clips to the window again,
so a randomised patch holds only values a CT of some other scanner could hold after the same preprocessing (an HU
offset moves tissue across the clip, it does not invent values outside it).

* :class:`HUCalibrationTransform`: HU scale and offset (a scanner's calibration, a contrast-enhanced soft tissue);
* :class:`CorrelatedNoiseTransform`: noise of random level and texture (white noise low-pass filtered with a
  random grain, in-plane and along head-foot apart: CT noise is correlated within a slice);
* :class:`ReconstructionKernelTransform`: a smooth (Gaussian point spread) or a sharp (edge-enhancing bone)
  reconstruction kernel, in the axial plane.

Conventions shared with :mod:`.randomisation_resolution` and :mod:`.randomisation_artefacts`:

* batchgeneratorsv2's per-sample layout, image ``(C, X, Y, Z)``, segmentation ``(S, X, Y, Z)`` with nnU-Net's
  padding ``-1`` (the loader's, before ``RemoveLabelTansform``); the head-foot axis and the voxel spacing (mm) are
  the plans' (``plans_facts.anatomical_axes``, the configuration's spacing), so sizes are physical at any preset;
* voxels the loader padded (segmentation ``-1``) keep the outside value (water, ``plans_facts.outside_values``)
  that ``dataloading.OutsideFillTransform`` set there, whatever a group did to them: the predictor pads with it
  too (``randomisation.GroupTransform`` restores them after each group);
* randomness comes from numpy's global generator only: nnU-Net's augmentation workers reseed numpy each, but not
  torch (batchgenerators' ``NonDetMultiThreadedAugmenter`` with ``seeds=None``), so torch draws would repeat
  across workers; and a test seeds one generator to reproduce a sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import blur_dimension

from vertebraformer_nn.plans_facts import CTWindow

Range = Tuple[float, float]


@dataclass(frozen=True)
class NormalisedCT(CTWindow):
    """The plans' CT window (``plans_facts.CTWindow``: HU <-> the normalised values the network sees) on torch
    tensors."""

    def from_hu(self, hu: torch.Tensor) -> torch.Tensor:
        return (hu.clamp(self.lower_hu, self.upper_hu) - self.mean) / self.std

    def hu_to_z_scale(self, hu: float) -> float:
        """A difference of ``hu`` HU in normalised units."""
        return float(hu) / self.std

    def clip(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised values clipped to the window (the clip of the normalisation, in normalised units)."""
        return z.clamp((self.lower_hu - self.mean) / self.std, (self.upper_hu - self.mean) / self.std)


def uniform(bounds: Range) -> float:
    return float(np.random.uniform(*bounds)) if bounds[1] > bounds[0] else float(bounds[0])


def log_uniform(bounds: Range) -> float:
    return float(np.exp(np.random.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def widened(range_mm: Range, voxel_mm: float, voxels: Range) -> Range:
    """A range in mm widened to at least ``voxels`` (low, high) of ``voxel_mm``: at a coarse preset a physical
    range (a 1 mm kernel on 3.5 mm voxels) would change nothing the network sees; randomisation must."""
    return (max(float(range_mm[0]), voxels[0] * voxel_mm), max(float(range_mm[1]), voxels[1] * voxel_mm))


def in_plane_axes(si_axis: int) -> Tuple[int, int]:
    return tuple(a for a in range(3) if a != si_axis)


class CTTransform(BasicTransform):
    """A transform of the CT channel(s) of one sample that may read its segmentation (where the vertebrae are)
    but changes only the image."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int):
        super().__init__()
        self.window = window
        self.spacing = tuple(float(s) for s in spacing)
        self.si_axis = int(si_axis)

    def apply(self, data_dict: dict, **params) -> dict:
        if data_dict.get("image") is not None:
            data_dict["image"] = self.randomise(data_dict["image"], data_dict.get("segmentation"), **params)
        return data_dict

    def randomise(self, image: torch.Tensor, seg, **params) -> torch.Tensor:
        raise NotImplementedError


class HUCalibrationTransform(CTTransform):
    """HU' = scale x HU + offset (scale log-uniform), then the window's clip."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int, scale: Range = (0.8, 1.25),
                 offset_hu: Range = (-120.0, 120.0)):
        super().__init__(window, spacing, si_axis)
        self.scale, self.offset_hu = tuple(scale), tuple(offset_hu)

    def get_parameters(self, **data_dict) -> dict:
        return {"scale": log_uniform(self.scale), "offset_hu": uniform(self.offset_hu)}

    def randomise(self, image, seg, scale: float = 1.0, offset_hu: float = 0.0):
        return self.window.from_hu(self.window.to_hu(image) * scale + offset_hu)


class CorrelatedNoiseTransform(CTTransform):
    """Gaussian noise of ``sigma_hu`` HU, low-pass filtered with a Gaussian grain of ``grain_mm`` in the axial
    plane and ``grain_si_mm`` along head-foot (0: white), renormalised to the drawn level, then the window's clip."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int,
                 sigma_hu: Range = (5.0, 120.0), grain_mm: Range = (0.0, 2.5), grain_si_mm: Range = (0.0, 1.5)):
        super().__init__(window, spacing, si_axis)
        self.sigma_hu, self.grain_mm, self.grain_si_mm = tuple(sigma_hu), tuple(grain_mm), tuple(grain_si_mm)

    def get_parameters(self, **data_dict) -> dict:
        grain, grain_si = uniform(self.grain_mm), uniform(self.grain_si_mm)
        sigmas = [(grain_si if axis == self.si_axis else grain) / self.spacing[axis] for axis in range(3)]
        return {"sigma_hu": uniform(self.sigma_hu), "grain_voxels": sigmas, "seed": np.random.randint(0, 2 ** 31 - 1)}

    def randomise(self, image, seg, sigma_hu: float = 0.0, grain_voxels=(0, 0, 0), seed: int = 0):
        field = correlated_noise(tuple(image.shape), grain_voxels, np.random.default_rng(seed))
        return self.window.clip(image + field.to(image.dtype) * self.window.hu_to_z_scale(sigma_hu))


def correlated_noise(shape: Tuple[int, ...], grain_voxels: Sequence[float], rng: np.random.Generator) -> torch.Tensor:
    """Unit-variance Gaussian noise of ``shape`` (C, X, Y, Z) low-pass filtered by a Gaussian of ``grain_voxels``
    (per spatial axis; below 0.2 voxels an axis stays white)."""
    field = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
    for axis, sigma in enumerate(grain_voxels):
        if sigma >= 0.2 and shape[axis + 1] > 1:
            field = blur_dimension(field, float(sigma), axis)
    std = field.std()
    return field / std if std > 0 else field


class ReconstructionKernelTransform(CTTransform):
    """A reconstruction kernel in the axial plane: with probability ``p_sharp`` an edge-enhancing (bone) kernel,
    image + k (image - blur_1mm(image)) with k in ``sharpen``; else a smooth one, a Gaussian point spread of
    ``smooth_mm``. Then the window's clip (a sharp kernel overshoots at the cortex)."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int, smooth_mm: Range = (0.3, 2.5),
                 sharpen: Range = (0.3, 2.0), p_sharp: float = 0.4, sharpen_radius_mm: float = 1.0):
        super().__init__(window, spacing, si_axis)
        self.smooth_mm, self.sharpen, self.p_sharp = tuple(smooth_mm), tuple(sharpen), float(p_sharp)
        self.sharpen_radius_mm = float(sharpen_radius_mm)

    def get_parameters(self, **data_dict) -> dict:
        if np.random.uniform() < self.p_sharp:
            return {"sharpen": uniform(self.sharpen), "sigma_mm": self.sharpen_radius_mm}
        return {"sharpen": 0.0, "sigma_mm": uniform(self.smooth_mm)}

    def randomise(self, image, seg, sharpen: float = 0.0, sigma_mm: float = 0.0):
        blurred = image
        for axis in in_plane_axes(self.si_axis):
            sigma = sigma_mm / self.spacing[axis]
            if sigma >= 0.2 and image.shape[axis + 1] > 1:
                blurred = blur_dimension(blurred, sigma, axis)
        if sharpen > 0:
            return self.window.clip(image + sharpen * (image - blurred))
        return blurred
