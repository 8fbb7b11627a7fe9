"""Lesion-centred patches happen once, at the stated rate (trainers/dataloading.py), measured by sampling many
batches with nnU-Net's loader machinery from a small synthetic preprocessed dataset (nnU-Net's own file format and
foreground-location sampling); nnU-Net's ignore-label handling survives the sampler hook."""
from __future__ import annotations

import numpy as np
import pytest

from vertebraformer_nn.planners.preprocessor import LESION_KEY
from vertebraformer_nn.trainers.dataloading import LESION_PATCH_FRACTION, LesionAwareDataLoader

SHAPE = (32, 32, 32)
PATCH = (16, 16, 16)
CENTRE = tuple(p // 2 for p in PATCH)
LESION = (slice(15, 17),) * 3  # a 2x2x2 lesion in the middle, outside the vertebra
IGNORE = 2


def _case(vertebra: bool = True, lesion: bool = True, ignore: bool = False):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    seg = np.zeros((2, *SHAPE), np.int16)
    if vertebra:
        seg[0, 4:13] = 1  # a vertebra slab across the whole axial plane
    if ignore:
        seg[0, 20:] = IGNORE  # a cut vertebra at the border
    if lesion:
        seg[1][LESION] = 1
    labels = [1] + ([[-1, 0, 1]] if ignore else [])  # nnU-Net's annotated-voxels key with an ignore label
    locations = DefaultPreprocessor._sample_foreground_locations(seg[:1], labels, seed=1)
    locations[LESION_KEY] = DefaultPreprocessor._sample_foreground_locations(seg[1:], [1], seed=2)[1]
    data = np.random.default_rng(0).normal(size=(1, *SHAPE)).astype(np.float32)
    return data, seg, {"class_locations": locations, "spacing": [1.0, 1.0, 1.0]}


def _loader(tmp_path, cases: dict, ignore: bool = False, batch_size: int = 2, seed: int = 0):
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    for name, (data, seg, props) in cases.items():
        blocks, chunks = comp_blosc2_params(data.shape, PATCH, data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, PATCH, seg.itemsize)
        nnUNetDatasetBlosc2.save_case(data, seg, props, str(tmp_path / name), chunks=chunks, blocks=blocks,
                                      chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    labels = {"background": 0, "vertebra": 1, **({"ignore": IGNORE} if ignore else {})}
    loader = LesionAwareDataLoader(nnUNetDatasetBlosc2(str(tmp_path)), batch_size, PATCH, PATCH,
                                   LabelManager(labels, regions_class_order=None), oversample_foreground_percent=0.33)
    np.random.seed(seed)
    return loader


def _centres(loader, n_batches: int):
    """(case key, position in batch, seg channels 0 and 1 at the patch centre) of every sample."""
    out = []
    for _ in range(n_batches):
        batch = loader.generate_train_batch()
        for j, key in enumerate(batch["keys"]):
            out.append((key, j, *(int(batch["target"][j, c][CENTRE]) for c in (0, 1))))
    return out


def test_lesion_patches_at_the_stated_rate_wherever_the_sample_sits_in_the_batch(tmp_path):
    """Batch 2 with nnU-Net's 33 % foreground oversampling: sample 0 random, sample 1 forced foreground. Each is
    centred on a lesion voxel at the stated rate (1000 samples per position: 4 sigma = 0.05); before, nnU-Net's own
    foreground choice picked the lesion too (sample 1 at 0.2 + 0.8 / 2 = 0.6)."""
    loader = _loader(tmp_path, {"lesion_case": _case()})
    samples = _centres(loader, 1000)
    for position in (0, 1):
        on_lesion = [lesion for _, j, _, lesion in samples if j == position]
        # a random patch centre lands on the 8-voxel lesion with probability (2 / 17) ** 3 = 0.0016
        assert np.mean(on_lesion) == pytest.approx(LESION_PATCH_FRACTION + 0.0016, abs=0.05), position
    # forced foreground that is not a lesion patch is nnU-Net's: centred on the vertebra
    assert all(vertebra == 1 for _, j, vertebra, lesion in samples if j == 1 and not lesion)


def test_cases_without_lesion_voxels_sample_as_nnunet(tmp_path):
    loader = _loader(tmp_path, {"lesion_case": _case(), "plain_case": _case(lesion=False)}, seed=1)
    samples = _centres(loader, 400)
    plain = [(j, vertebra, lesion) for key, j, vertebra, lesion in samples if key == "plain_case"]
    assert len(plain) > 200 and not any(lesion for _, _, lesion in plain)
    assert all(vertebra == 1 for j, vertebra, _ in plain if j == 1)  # forced foreground: the vertebra
    # random: the centre (8-24 per axis) is in the vertebra slab (4-12) with probability 5 / 17 = 0.29
    assert np.mean([vertebra for j, vertebra, _ in plain if j == 0]) == pytest.approx(5 / 17, abs=0.12)


def test_ignore_label_patches_are_centred_on_annotated_voxels(tmp_path):
    """With an ignore label nnU-Net centres even its random patches on annotated voxels; the hook keeps that."""
    loader = _loader(tmp_path, {"cut_case": _case(ignore=True)}, ignore=True, seed=2)
    assert loader.has_ignore
    samples = _centres(loader, 300)
    assert not any(vertebra == IGNORE for _, _, vertebra, _ in samples)
    assert np.mean([lesion for *_, lesion in samples]) == pytest.approx(LESION_PATCH_FRACTION, abs=0.07)
