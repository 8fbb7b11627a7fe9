"""Domain randomisation in the trainer's augmentation (trainers/randomisation*.py): each transform changes what it
should (in HU through the plans' window, along the plans' axes, at physical sizes) and keeps the labels aligned;
the trainer inserts the groups into nnU-Net's own pipeline after its SpatialTransform, each group switchable; the
composed pipeline pickles, reproduces under a seed and runs on a real batch of the session's preprocessed data."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from vertebraformer_nn.labels import IGNORE_LABEL
from vertebraformer_nn.trainers.randomisation import (FAMILIES, GROUPS, GroupTransform, group_transform,
                                                      groups_without, randomisation_transforms)
from vertebraformer_nn.trainers.randomisation_artefacts import FieldOfViewTransform, MetalStreakTransform
from vertebraformer_nn.trainers.randomisation_intensity import (CorrelatedNoiseTransform, HUCalibrationTransform,
                                                                NormalisedCT, ReconstructionKernelTransform)
from vertebraformer_nn.trainers.randomisation_resolution import AcquisitionGridTransform

from conftest import make_trainer

WINDOW = NormalisedCT(lower_hu=-150.0, upper_hu=1400.0, mean=250.0, std=350.0)
SPACING = (2.0, 2.0, 2.0)
SHAPE = (48, 32, 28)
LEVELS = (20, 21, 22, 23)


def _patch(si_axis: int = 0, seed: int = 0):
    """A patch in the loader's layout: soft tissue (40 HU) with four vertebrae stacked along ``si_axis`` (bone,
    300 HU inside a 1000 HU shell), a lesion in the second, the last 3 voxels along the last axis padded (image 0,
    labels -1) as nnU-Net's loader pads beyond an image border."""
    g = torch.Generator().manual_seed(seed)
    shape = [SHAPE[0], SHAPE[1], SHAPE[2]]
    shape[0], shape[si_axis] = shape[si_axis], shape[0]
    hu = torch.full(shape, 40.0) + 2.0 * torch.randn(shape, generator=g)
    seg = torch.zeros((2, *shape), dtype=torch.int16)
    for i, level in enumerate(LEVELS):
        box = [slice(10, 22), slice(8, 20), slice(8, 20)]
        box[si_axis] = slice(4 + 11 * i, 13 + 11 * i)
        shell = hu[tuple(box)]
        shell[...] = 1000.0
        inner = [slice(s.start + 1, s.stop - 1) for s in box]
        hu[tuple(inner)] = 300.0
        seg[(0, *box)] = level
    lesion = [slice(13, 16)] * 3
    lesion[si_axis] = slice(17, 20)
    seg[(1, *lesion)] = 1
    image = WINDOW.from_hu(hu)[None]
    image[..., -3:] = 0.0
    seg[..., -3:] = -1
    return image, seg


def _run(transform, image, seg, seed=0, **params):
    """Apply with drawn parameters (seeded) or with ``params`` given."""
    np.random.seed(seed)
    data = {"image": image.clone(), "segmentation": seg.clone()}
    if params:
        return transform.apply(data, **params)
    return transform(**data)


# ------------------------------------------------------------------------------------------ intensity
def test_hu_calibration_is_scale_and_offset_in_hu_then_the_window_clip():
    image, seg = _patch()
    t = HUCalibrationTransform(WINDOW, SPACING, 0)
    out = _run(t, image, seg, scale=1.2, offset_hu=-100.0)
    hu = WINDOW.to_hu(out["image"][0, :, :, :-3])
    # soft tissue 40 -> -52; trabecular 300 -> 260; the 1000 HU shell -> 1100; nothing outside the window
    assert torch.allclose(hu[0, 0, 0], torch.tensor(40.0 * 1.2 - 100), atol=5)
    assert float(hu.max()) == pytest.approx(1100.0, abs=1e-3)
    assert float(hu.min()) >= WINDOW.lower_hu - 1e-3
    assert torch.equal(out["segmentation"], seg)
    bright = _run(t, image, seg, scale=1.25, offset_hu=300.0)
    assert float(WINDOW.to_hu(bright["image"]).max()) == pytest.approx(WINDOW.upper_hu, abs=1e-3)  # clipped


def test_noise_has_the_drawn_level_and_grain_in_plane_and_along_head_foot():
    image, seg = _patch()
    flat = WINDOW.from_hu(torch.full_like(image, 500.0))  # far from the clip
    t = CorrelatedNoiseTransform(WINDOW, SPACING, 0)

    def noise(grain):
        out = _run(t, flat, seg, sigma_hu=60.0, grain_voxels=grain, seed=3)
        return WINDOW.to_hu(out["image"][0]) - 500.0

    white, grainy = noise((0.0, 0.0, 0.0)), noise((0.0, 2.0, 2.0))
    for n in (white, grainy):
        assert float(n.std()) == pytest.approx(60.0, rel=0.05)

    def corr(n, axis):
        a, b = n.narrow(axis, 0, n.shape[axis] - 1), n.narrow(axis, 1, n.shape[axis] - 1)
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    assert abs(corr(white, 1)) < 0.05 and abs(corr(white, 0)) < 0.05
    assert corr(grainy, 1) > 0.7 and corr(grainy, 2) > 0.7  # textured in the axial plane
    assert abs(corr(grainy, 0)) < 0.05  # white along head-foot (axis 0 here)


def test_reconstruction_kernel_smooths_or_sharpens_in_the_axial_plane_only():
    image, seg = _patch()
    t = ReconstructionKernelTransform(WINDOW, SPACING, si_axis=0)
    smooth = _run(t, image, seg, sharpen=0.0, sigma_mm=3.0)["image"]
    sharp = _run(t, image, seg, sharpen=1.5, sigma_mm=1.0)["image"]

    def step(img, axis):  # the largest jump across the vertebrae's edges along an axis
        return float(img[0, :, :, :-3].diff(dim=axis).abs().max())

    assert step(smooth, 1) < 0.6 * step(image, 1)
    assert step(smooth, 0) == pytest.approx(step(image, 0), rel=0.05)  # head-foot untouched
    assert step(sharp, 1) > step(image, 1)
    assert float(WINDOW.to_hu(sharp).max()) <= WINDOW.upper_hu + 1e-3  # overshoot clipped to the window


# ------------------------------------------------------------------------------------------ acquisition grid
@pytest.mark.parametrize("si_axis", [0, 2])
def test_thick_slices_average_along_the_plans_head_foot_axis(si_axis):
    """A thick slice records the slab average (partial volume): a one-voxel bright sheet across head-foot becomes a
    wider, dimmer band; the axial plane keeps its detail when the pixel size is the patch's own."""
    image, seg = _patch(si_axis)
    sheet = WINDOW.from_hu(torch.zeros_like(image))
    index = [slice(None)] * 4
    index[si_axis + 1] = 20
    sheet[tuple(index)] = WINDOW.from_hu(torch.tensor(1200.0))
    t = AcquisitionGridTransform(WINDOW, SPACING, si_axis)
    scales = [1.0, 1.0, 1.0]
    scales[si_axis] = 1 / 3  # 6 mm slices on a 2 mm grid
    out = WINDOW.to_hu(_run(t, sheet, seg, scales=scales)["image"])
    profile = out.mean(dim=[d for d in range(4) if d != si_axis + 1])
    assert float(profile.max()) < 0.7 * 1200 and int((profile > 100).sum()) >= 3
    in_plane = [d for d in range(4) if d not in (0, si_axis + 1)]
    assert float(out.std(dim=in_plane).max()) < 1.0  # the sheet stays uniform across the axial plane
    drawn = t.get_parameters(image=image)["scales"]
    assert all(0 < s <= 1 for s in drawn)


# ------------------------------------------------------------------------------------------ artefacts
def test_metal_is_saturated_with_axial_streaks_in_its_own_slices_and_labels_stay():
    image, seg = _patch()
    t = MetalStreakTransform(WINDOW, SPACING, 0, ignore_label=IGNORE_LABEL)
    obj = {"centre_vox": [20.0, 14.0, 14.0], "radius_mm": 3.0, "length_mm": 10.0, "angles": np.array([0.3, 1.9]),
           "signs": np.array([1.0, -1.0]), "amplitudes": np.array([600.0, 600.0]), "width_mm": 1.0,
           "fade_mm": 100.0}
    out = _run(t, image, seg, objects=[obj], band_hu=0.0)
    hu, before = WINDOW.to_hu(out["image"][0]), WINDOW.to_hu(image[0])
    assert float(hu[20, 14, 14]) == pytest.approx(WINDOW.upper_hu)
    changed = (hu - before).abs() > 1.0
    slices = torch.nonzero(changed.any(dim=2).any(dim=1)).flatten()
    assert int(slices.min()) >= 20 - 3 and int(slices.max()) <= 20 + 3  # 10 mm at 2 mm around slice 20
    assert int(changed[20].sum()) > 60  # rays across the axial slice, not only the object
    assert torch.equal(out["segmentation"], seg)
    on_bone = MetalStreakTransform(WINDOW, SPACING, 0, ignore_label=IGNORE_LABEL, p_on_vertebra=1.0)
    for seed in range(5):
        np.random.seed(seed)
        for o in on_bone.get_parameters(image=image, segmentation=seg)["objects"]:
            assert int(seg[(0, *(int(c) for c in o["centre_vox"]))]) in LEVELS  # a screw in a vertebra


def test_head_foot_field_of_view_cut_pads_beyond_and_makes_the_cut_vertebra_ignore():
    image, seg = _patch()
    t = FieldOfViewTransform(WINDOW, SPACING, 0, IGNORE_LABEL)
    outside = torch.zeros(SHAPE, dtype=torch.bool)
    outside[30:] = True  # the border falls inside level 22 (slices 26-34)
    out = _run(t, image, seg, outside=outside, head_foot=True)
    img, s = out["image"][0], RemoveLabelTansform(-1, 0)(segmentation=out["segmentation"])["segmentation"]
    assert float(img[30:].abs().max()) == 0.0 and int(s[:, 30:].abs().max()) == 0
    kept = s[0, :30]
    assert set(torch.unique(kept).tolist()) == {0, 20, 21, IGNORE_LABEL}
    assert torch.equal(kept == IGNORE_LABEL, seg[0, :30] == 22)
    assert torch.equal(s[1, :30], seg[1, :30].clamp(min=0))
    assert torch.equal(img[:30], image[0, :30])


def test_axial_field_of_view_fills_air_outside_the_circle():
    image, seg = _patch()
    t = FieldOfViewTransform(WINDOW, SPACING, 0, IGNORE_LABEL, p_head_foot=0.0, radius_mm=(20.0, 20.0),
                             centre_jitter_mm=0.0)
    out = _run(t, image, seg)
    img, s = out["image"][0], out["segmentation"]
    air = (WINDOW.lower_hu - WINDOW.mean) / WINDOW.std
    corner, centre = img[20, 0, 0], img[20, 14, 14]
    assert float(corner) == pytest.approx(air) and float(centre) == float(image[0, 20, 14, 14])
    assert int(s[0, 20, 0, 0]) == -1 and int(s[0, 20, 14, 14]) == seg[0, 20, 14, 14]
    assert float(img[:, :, -3:].abs().max()) == 0.0  # the loader's padding stays padding


# ------------------------------------------------------------------------------------------ the groups
def test_every_group_keeps_padding_labels_shape_and_finite_values():
    image, seg = _patch()
    for group in GROUPS:
        t = GroupTransform(group, group_transform(group, WINDOW, SPACING, 0, IGNORE_LABEL), 1.0)
        if group == "fov":
            t.transform.p_head_foot = 1.0  # a round field larger than this small patch would change nothing
        out = _run(t, image, seg, seed=5)
        assert out["image"].shape == image.shape and torch.isfinite(out["image"]).all(), group
        assert float(out["image"][..., -3:].abs().max()) == 0.0, group
        assert not torch.equal(out["image"], image), f"{group} changed nothing"
        if group != "fov":
            assert torch.equal(out["segmentation"], seg), group


def test_pipeline_reproduces_under_a_seed_and_pickles():
    image, seg = _patch()
    transforms = randomisation_transforms(GROUPS, WINDOW, SPACING, 0, IGNORE_LABEL)
    clone = pickle.loads(pickle.dumps(transforms))

    def run(ts, seed):
        np.random.seed(seed)
        data = {"image": image.clone(), "segmentation": seg.clone()}
        for t in ts:
            data = t(**data)
        return data

    a, b, c = run(transforms, 7), run(clone, 7), run(transforms, 8)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["segmentation"], b["segmentation"])
    assert not torch.equal(a["image"], c["image"])


def test_groups_and_families():
    assert set(GROUPS) == {g for family in FAMILIES.values() for g in family}
    assert groups_without("content") == tuple(g for g in GROUPS if g not in ("metal", "fov"))
    with pytest.raises(ValueError, match="unknown randomisation group"):
        randomisation_transforms(["hu", "snow"], WINDOW, SPACING, 0, None)


# ------------------------------------------------------------------------------------------ in the trainer
def _pipeline(trainer):
    rotation, dummy_2d, initial, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    lm = trainer.label_manager
    return trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None, mirror, dummy_2d,
                                           use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm,
                                           foreground_labels=lm.foreground_labels, ignore_label=lm.ignore_label)


@pytest.mark.parametrize("trainer_name, groups", [
    ("VertebraFormerTrainer_tiny", GROUPS),
    ("VertebraFormerTrainer_budget_noRandomisation", ()),
    ("VertebraFormerTrainer_budget_noAcquisitionRandomisation", groups_without("acquisition"))])
def test_trainer_inserts_its_groups_after_nnunets_spatial_transform(multispine_preprocessed, tmp_path, trainer_name,
                                                                    groups):
    trainer = make_trainer(multispine_preprocessed, tmp_path, trainer=trainer_name)
    items = _pipeline(trainer).transforms
    spatial = next(i for i, t in enumerate(items) if isinstance(t, SpatialTransform))
    ours = [t.group for t in items if isinstance(t, GroupTransform)]
    assert tuple(ours) == groups
    if groups:
        assert [getattr(t, "group", None) for t in items[spatial + 1: spatial + 1 + len(groups)]] == list(groups)
    nnunet = nnUNetTrainer.get_training_transforms(trainer.configuration_manager.patch_size, None, None, (2,), False)
    assert [type(t) for t in items if not isinstance(t, GroupTransform)] == [type(t) for t in nnunet.transforms]


def test_composed_pipeline_runs_on_a_real_batch(multispine_preprocessed, tmp_path, monkeypatch):
    """nnU-Net's loader and the trainer's whole augmentation (every group forced on) on the session's preprocessed
    phantoms: labels stay in the vocabulary (plus ignore), lesions binary, images finite; the pipeline pickles."""
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(multispine_preprocessed, tmp_path)
    trainer.randomisation_probabilities = {g: 1.0 for g in GROUPS}
    pickle.loads(pickle.dumps(_pipeline(trainer)))
    np.random.seed(0)
    torch.manual_seed(0)
    train, val = trainer.get_dataloaders()
    assert [t.group for t in train.data_loader.transforms.transforms if isinstance(t, GroupTransform)] == list(GROUPS)
    batch = next(train)
    data, target = batch["data"], batch["target"]
    assert data.shape[2:] == tuple(trainer.configuration_manager.patch_size) and torch.isfinite(data).all()
    labels = set(torch.unique(target[:, 0]).tolist())
    assert labels <= set(range(trainer.label_manager.num_segmentation_heads)) | {IGNORE_LABEL}
    assert set(torch.unique(target[:, 1]).tolist()) <= {0, 1}


def test_outside_fill_sets_only_what_the_loader_padded():
    from vertebraformer_nn.trainers.dataloading import OutsideFillTransform

    image = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    seg = torch.zeros((1, 4, 4, 4), dtype=torch.int16)
    seg[0, :, :, 3] = -1  # the loader's padding beyond the case's border
    seg[0, 1, 1, 1] = 5
    out = OutsideFillTransform((-0.74, 0.0))(image=image.clone(), segmentation=seg.clone())
    assert torch.all(out["image"][0, :, :, 3] == -0.74) and torch.all(out["image"][1, :, :, 3] == 0.0)
    assert torch.equal(out["image"][:, :, :, :3], image[:, :, :, :3]) and torch.equal(out["segmentation"], seg)


def test_both_loaders_fill_their_padding_with_the_predictors_outside_value(multispine_preprocessed, tmp_path,
                                                                         monkeypatch):
    """Training sees beyond a case's border what prediction pads with (plans_facts.outside_values: water)."""
    from vertebraformer_nn.plans_facts import outside_values
    from vertebraformer_nn.trainers.dataloading import OutsideFillTransform

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(multispine_preprocessed, tmp_path)
    expected = outside_values(trainer.plans_manager.plans, trainer.configuration_manager.normalization_schemes)
    window = trainer.plans_manager.foreground_intensity_properties_per_channel["0"]
    assert expected[0] * window["std"] + window["mean"] == pytest.approx(0.0)  # water, not the foreground's mean
    for loader in trainer.get_dataloaders():
        first = loader.data_loader.transforms.transforms[0]
        assert isinstance(first, OutsideFillTransform) and first.values == pytest.approx(expected)
