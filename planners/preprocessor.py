"""Preprocessing with the lesion map as a second segmentation channel (reference/nnunet.md 2.3).

:class:`VertebraFormerPreprocessor` is a ``DefaultPreprocessor`` that, per training case,

* runs nnU-Net's own pipeline on image + vertebra labels (transpose -> crop to nonzero -> normalise -> resample);
* reads ``lesionsTr/<case>`` (binary lesion map, same grid as the labels), pushes it through the *same*
  transpose, crop (``bbox_used_for_cropping``) and resampling (``resampling_fn_seg`` to the labels' new shape)
  and stores it as seg channel 1 (``<case>_seg.b2nd`` is ``(2, x, y, z)``). A case without a lesion annotation
  gets zeros there - and ``has_lesion_annotation = False`` (the loader pads label channels with -1 and zeroes
  them again, so no value in the channel could mark "unannotated"; the trainer masks the lesion loss by the flag);
* adds the lesion voxel locations to ``properties['class_locations'][LESION_KEY]`` (4 columns ``(c, x, y, z)``
  like nnU-Net's own), so a loader can centre patches on lesions on purpose (nnU-Net samples foreground from
  channel 0's classes only);
* records per case, in its ``.pkl`` properties: ``has_lesion_annotation`` (bool), ``domain`` (source name),
  ``domain_index`` (index in the plans' domains, -1 if unknown), ``annotations`` (the case's
  ``case_info[case]['annotations']`` from dataset.json).

The plans keep ``preprocessor_name: DefaultPreprocessor``: inference only needs images, and nnU-Net can only find
preprocessors inside its own package. ``plan-and-preprocess`` runs this class directly.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Union

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

# the facts' property keys (re-exported here) live with their one reader
from ..case_facts import DOMAIN_INDEX_KEY, DOMAIN_KEY, HAS_LESION_KEY, facts_for_case, to_properties  # noqa: F401
from ..plans_facts import domains as plans_domains
from ..sources import SOURCES
from .data_facts import lesion_file_for

#: Key of the lesion voxel locations in properties['class_locations'] (never a label value).
LESION_KEY = "lesion"
#: Seg channel of the lesion map.
LESION_CHANNEL = 1


def case_facts(case: str, dataset_json: dict, lesion_file: Union[str, None],
               domains: Sequence[str] = SOURCES) -> dict:
    """A case's facts (:mod:`vertebraformer_nn.case_facts`: dataset.json's case_info, or for a dataset without it,
    whether the lesion file exists) as its properties record them; ``domains``: the plans' domains."""
    exists = bool(lesion_file and os.path.isfile(lesion_file))
    return to_properties(facts_for_case(case, dataset_json, exists), domains)


class VertebraFormerPreprocessor(DefaultPreprocessor):
    """DefaultPreprocessor + lesion channel + per-case annotation facts (see the module docstring)."""

    def run_case(self, image_files: List[str], seg_file: Union[str, None], plans_manager: PlansManager,
                 configuration_manager: ConfigurationManager, dataset_json: Union[dict, str]):
        if isinstance(dataset_json, str):
            dataset_json = load_json(dataset_json)
        data, seg, properties = super().run_case(image_files, seg_file, plans_manager, configuration_manager,
                                                 dataset_json)
        if seg_file is None:  # no labels (test images): nothing to add
            return data, seg, properties

        case = os.path.basename(seg_file)[: -len(dataset_json["file_ending"])]
        lesion_file = lesion_file_for(seg_file, dataset_json)
        facts = case_facts(case, dataset_json, lesion_file, plans_domains(plans_manager.plans))
        if facts[HAS_LESION_KEY]:
            if not lesion_file or not os.path.isfile(lesion_file):
                raise FileNotFoundError(f"{case}: dataset.json says it has a lesion mask, but {lesion_file} is missing")
            lesion = self._lesion_channel(lesion_file, seg.shape[1:], properties, plans_manager,
                                          configuration_manager)
        else:
            lesion = np.zeros((1, *seg.shape[1:]), dtype=seg.dtype)
        seg = np.concatenate([seg, lesion.astype(seg.dtype)], axis=0)

        locations = self._sample_foreground_locations(lesion, [1], seed=4321, verbose=False)[1]
        properties["class_locations"][LESION_KEY] = locations
        properties.update(facts)
        return data, seg, properties

    @staticmethod
    def _lesion_channel(lesion_file: str, new_shape, properties: dict, plans_manager: PlansManager,
                        configuration_manager: ConfigurationManager) -> np.ndarray:
        """The lesion map through the same transpose -> crop -> resample as seg channel 0; (1, *new_shape) 0/1."""
        rw = plans_manager.image_reader_writer_class()
        lesion, _ = rw.read_seg(lesion_file)
        lesion = (np.asarray(lesion) > 0).astype(np.float32)
        tf = plans_manager.transpose_forward
        lesion = lesion.transpose([0, *[i + 1 for i in tf]])
        if tuple(lesion.shape[1:]) != tuple(properties["shape_before_cropping"]):
            raise ValueError(f"{lesion_file}: shape {lesion.shape[1:]} differs from the image's "
                             f"{tuple(properties['shape_before_cropping'])} (after transpose)")
        bbox = properties["bbox_used_for_cropping"]
        lesion = lesion[(slice(None), *[slice(int(a), int(b)) for a, b in bbox])]
        original_spacing = [properties["spacing"][i] for i in tf]
        target_spacing = configuration_manager.spacing
        lesion = configuration_manager.resampling_fn_seg(lesion, tuple(new_shape), original_spacing, target_spacing)
        return (np.asarray(lesion) > 0.5).astype(np.int16)
