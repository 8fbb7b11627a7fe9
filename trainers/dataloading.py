"""Lesion-aware patch sampling.

nnU-Net's loader forces foreground from ``properties['class_locations']``, computed on segmentation
channel 0 (the vertebrae) only, so a lesion (channel 1) lands in a patch only by chance. This loader
centres a fraction ``lesion_oversample_percent`` of the samples (drawn per sample, for cases that have lesion
voxels) on a random lesion voxel; the other samples follow nnU-Net's rule unchanged. Lesion voxel
locations come from the properties when the preprocessor recorded them (a ``class_locations`` entry whose key
names the lesion, or ``properties['lesion_locations']``; rows ``(c, x, y, z)`` as nnU-Net writes them), else they
are computed once per case and worker from channel 1 of the segmentation (subsampled like nnU-Net's).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from threadpoolctl import threadpool_limits

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

MAX_LOCATIONS = 10000


def lesion_locations_from_properties(properties: dict) -> Optional[np.ndarray]:
    cl = properties.get("class_locations") or {}
    for key, value in cl.items():
        if isinstance(key, str) and "lesion" in key.lower():
            return np.asarray(value)
    if "lesion_locations" in properties:
        return np.asarray(properties["lesion_locations"])
    return None


def lesion_locations_from_seg(seg, seed: int = 1234) -> np.ndarray:
    """(n, 4) rows (0, x, y, z) of lesion voxels (channel 1 > 0), at most MAX_LOCATIONS of them."""
    if seg.shape[0] < 2:
        return np.zeros((0, 4), dtype=np.int64)
    coords = np.argwhere(np.asarray(seg[1]) > 0)
    if len(coords) > MAX_LOCATIONS:
        rnd = np.random.RandomState(seed)
        coords = coords[rnd.choice(len(coords), MAX_LOCATIONS, replace=False)]
    return np.concatenate([np.zeros((len(coords), 1), dtype=np.int64), coords], axis=1)


class LesionAwareDataLoader(nnUNetDataLoader):
    def __init__(self, *args, lesion_oversample_percent: float = 0.2, **kwargs):
        super().__init__(*args, **kwargs)
        self.lesion_oversample_percent = float(lesion_oversample_percent)
        self._lesion_cache: Dict[str, np.ndarray] = {}

    def _lesion_locations(self, key: str, seg, properties: dict) -> np.ndarray:
        if key not in self._lesion_cache:
            loc = lesion_locations_from_properties(properties)
            if loc is None:
                loc = lesion_locations_from_seg(seg)
            self._lesion_cache[key] = loc
        return self._lesion_cache[key]

    def get_lesion_bbox(self, data_shape, locations: np.ndarray):
        """bbox of ``self.patch_size`` centred on a random lesion voxel (clipped like nnU-Net's foreground bbox)."""
        dim = len(data_shape)
        need_to_pad = self.need_to_pad.copy()
        for d in range(dim):
            if need_to_pad[d] + data_shape[d] < self.patch_size[d]:
                need_to_pad[d] = self.patch_size[d] - data_shape[d]
        lbs = [-need_to_pad[i] // 2 for i in range(dim)]
        ubs = [data_shape[i] + need_to_pad[i] // 2 + need_to_pad[i] % 2 - self.patch_size[i] for i in range(dim)]
        voxel = locations[np.random.choice(len(locations))]
        bbox_lbs = [int(min(max(lbs[i], voxel[i + 1] - self.patch_size[i] // 2), ubs[i])) for i in range(dim)]
        bbox_ubs = [bbox_lbs[i] + self.patch_size[i] for i in range(dim)]
        return bbox_lbs, bbox_ubs

    def generate_train_batch(self):
        # nnunetv2 2.8.1's nnUNetDataLoader.generate_train_batch with one change: the lesion-centred bbox
        selected_keys = self.get_indices()
        data_all = None
        seg_all = None
        with torch.no_grad():
            with threadpool_limits(limits=1, user_api=None):
                for j, i in enumerate(selected_keys):
                    force_fg = self.get_do_oversample(j)
                    data, seg, seg_prev, properties = self._data.load_case(i)
                    shape = data.shape[1:]
                    bbox = None
                    if self.lesion_oversample_percent > 0 and np.random.uniform() < self.lesion_oversample_percent:
                        locations = self._lesion_locations(str(i), seg, properties)
                        if len(locations) > 0:
                            bbox = self.get_lesion_bbox(shape, locations)
                    if bbox is None:
                        bbox = self.get_bbox(shape, force_fg, properties['class_locations'])
                    bbox = [[a, b] for a, b in zip(*bbox)]

                    data_cropped = torch.from_numpy(crop_and_pad_nd(data, bbox, 0)).float()
                    seg_cropped = torch.from_numpy(crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                    if seg_prev is not None:
                        seg_prev_cropped = torch.from_numpy(
                            crop_and_pad_nd(seg_prev, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                        seg_cropped = torch.cat((seg_cropped, seg_prev_cropped[None]), dim=0)
                    if self.patch_size_was_2d:
                        data_cropped = data_cropped[:, 0]
                        seg_cropped = seg_cropped[:, 0]
                    if self.transforms is not None:
                        transformed = self.transforms(**{'image': data_cropped, 'segmentation': seg_cropped})
                        data_sample = transformed['image']
                        seg_sample = transformed['segmentation']
                    else:
                        data_sample = data_cropped
                        seg_sample = seg_cropped
                    if data_all is None:
                        data_all = torch.empty((self.batch_size, *data_sample.shape), dtype=torch.float32)
                    data_all[j] = data_sample
                    if isinstance(seg_sample, list):
                        if seg_all is None:
                            seg_all = [torch.empty((self.batch_size, *s.shape), dtype=s.dtype) for s in seg_sample]
                        for s_idx, s in enumerate(seg_sample):
                            seg_all[s_idx][j] = s
                    else:
                        if seg_all is None:
                            seg_all = torch.empty((self.batch_size, *seg_sample.shape), dtype=seg_sample.dtype)
                        seg_all[j] = seg_sample
        return {'data': data_all, 'target': seg_all, 'keys': selected_keys}
