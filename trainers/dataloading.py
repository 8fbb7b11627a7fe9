"""Patch sampling of the VertebraFormer trainers: nnU-Net's loader, with lesion-centred patches at one stated rate.

nnU-Net's loader decides per sample whether a patch must hold foreground (the last ``oversample_foreground_percent``
of a batch), and its ``get_bbox`` then picks a class uniformly among the keys of ``properties["class_locations"]``
that the case has voxels of, and centres the patch on a random voxel of that class. The preprocessor stores the
lesion voxels there too (key ``"lesion"``), so, left alone, nnU-Net would pick lesions as one more "foreground
class", at a rate depending on how many vertebrae a case shows and on where a sample sits in its batch.

:class:`LesionAwareDataLoader` overrides ``get_bbox`` only (the rest of nnU-Net's loader runs unchanged) and sets
the rate once:

* for a case with lesion voxels, every sample (training and validation, wherever it sits in the batch) is centred on
  a random lesion voxel with probability ``lesion_patch_fraction`` (the trainer's, :data:`LESION_PATCH_FRACTION`):
  the fraction of that case's patches centred on a lesion voxel is this number (``tests/test_sampling.py`` measures
  it);
* every other sample follows nnU-Net's rule with the lesion key taken out of the class choice: forced foreground
  centres on a vertebra class, the other samples stay random, and with an ignore label nnU-Net's own handling (random
  patches centred on annotated voxels, never on ignored ones) is kept.

What the loader pads beyond a case's border (segmentation -1; nnU-Net fills the image with 0, under
``CTNormalization`` the foreground's mean HU, bone-bright) is set to the plans' outside value first
(:class:`OutsideFillTransform`, ``plans_facts.outside_values``: water), the value the predictor pads with, so a
network learns the border of a scan as it will see it.
"""
from __future__ import annotations

import numpy as np
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from vertebraformer_nn.planners.preprocessor import LESION_KEY
from vertebraformer_nn.plans_facts import outside_values

#: fraction of the patches of a case with lesion voxels that are centred on a lesion voxel
LESION_PATCH_FRACTION = 0.2


class LesionAwareDataLoader(nnUNetDataLoader):
    def __init__(self, *args, lesion_patch_fraction: float = LESION_PATCH_FRACTION, **kwargs):
        super().__init__(*args, **kwargs)
        self.lesion_patch_fraction = float(lesion_patch_fraction)

    def get_bbox(self, data_shape, force_fg: bool, class_locations, overwrite_class=None, verbose: bool = False):
        locations = dict(class_locations or {})
        lesion = locations.pop(LESION_KEY, None)
        if lesion is not None and len(lesion) > 0 and np.random.uniform() < self.lesion_patch_fraction:
            # nnU-Net's forced-foreground branch with the class fixed to the lesion
            return super().get_bbox(data_shape, True, {LESION_KEY: lesion}, LESION_KEY, verbose)
        return super().get_bbox(data_shape, force_fg, locations, overwrite_class, verbose)


class OutsideFillTransform(BasicTransform):
    """Sets the voxels the loader padded (segmentation channel 0 below 0) to ``values[c]`` in image channel c."""

    def __init__(self, values):
        super().__init__()
        self.values = tuple(float(v) for v in values)

    def get_parameters(self, **data_dict) -> dict:
        return {}

    def apply(self, data_dict: dict, **params) -> dict:
        image, seg = data_dict.get("image"), data_dict.get("segmentation")
        if image is None or seg is None:
            return data_dict
        padded = seg[0] < 0
        if bool(padded.any()):
            for c, value in enumerate(self.values):
                image[c][padded] = value
        return data_dict

    def __repr__(self):
        return f"{type(self).__name__}(values={self.values})"


class LesionSamplingMixin:
    """nnU-Net's ``get_dataloaders`` with :class:`LesionAwareDataLoader`; put it before nnUNetTrainer."""

    lesion_patch_fraction: float = LESION_PATCH_FRACTION

    def get_dataloaders(self):
        # nnunetv2 2.8.1 nnUNetTrainer.get_dataloaders (lines 668-737) restated with two changes, the loader class
        # (nnU-Net names nnUNetDataLoader inside that method, with no attribute or method to swap it) and the
        # outside fill before either pipeline.
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        ds_scales = self._get_deep_supervision_scales()
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        lm = self.label_manager
        labels = dict(foreground_labels=lm.foreground_labels,
                      regions=lm.foreground_regions if lm.has_regions else None, ignore_label=lm.ignore_label)
        tr_transforms = self.get_training_transforms(
            patch_size, rotation, ds_scales, mirror_axes, dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded, **labels)
        val_transforms = self.get_validation_transforms(ds_scales, is_cascaded=self.is_cascaded, **labels)
        fill = OutsideFillTransform(outside_values(self.plans_manager.plans,
                                                   self.configuration_manager.normalization_schemes))
        for pipeline in (tr_transforms, val_transforms):  # nnU-Net's are ComposeTransforms
            pipeline.transforms = [fill] + list(pipeline.transforms)
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        common = dict(oversample_foreground_percent=self.oversample_foreground_percent, sampling_probabilities=None,
                      pad_sides=None, probabilistic_oversampling=self.probabilistic_oversampling,
                      lesion_patch_fraction=self.lesion_patch_fraction)
        dl_tr = LesionAwareDataLoader(dataset_tr, self.batch_size, initial_patch_size, patch_size, lm,
                                      transforms=tr_transforms, **common)
        dl_val = LesionAwareDataLoader(dataset_val, self.batch_size, patch_size, patch_size, lm,
                                       transforms=val_transforms, **common)
        n = get_allowed_n_proc_DA()
        if n == 0:
            mt_tr, mt_val = SingleThreadedAugmenter(dl_tr, None), SingleThreadedAugmenter(dl_val, None)
        else:
            pin = self.device.type == "cuda"
            mt_tr = NonDetMultiThreadedAugmenter(dl_tr, None, n, max(6, n // 2), None, pin, 0.002)
            mt_val = NonDetMultiThreadedAugmenter(dl_val, None, max(1, n // 2), max(3, n // 4), None, pin, 0.002)
        _ = next(mt_tr)
        _ = next(mt_val)
        return mt_tr, mt_val
