"""Planner (patch/token/batch rules, CT window, identifiers, anatomical axes, domains, the complete architecture) and
preprocessing (lesion channel, per-case flags, lesion and class locations, the ignore label, stock loader) on the
phantom MultiSpine dataset at the CPU preset."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vertebraformer_nn import labels
from vertebraformer_nn.planners.ct_window import spine_region_samples
from vertebraformer_nn.planners.data_facts import lesion_file_for
from vertebraformer_nn.planners.planner import (
    CPU_SPACING_MM,
    CPU_TOKENS_PER_BATCH,
    CPU_TOKENS_PER_SAMPLE,
    ELEMENTS_PER_SAMPLE_PER_GB,
    HEAD_FOOT_ELONGATION,
    plan_token_grid,
    token_size_for_spacing,
)
from vertebraformer_nn.planners.presets import PRESETS, network_arch_kwargs
from vertebraformer_nn.sources import SOURCES

CONFIG = "3d_fullres"


# ------------------------------------------------------------------------------------------ pure rules
def test_token_size_follows_spacing():
    assert token_size_for_spacing((1.0, 1.0, 1.0)) == [8, 8, 8]
    assert token_size_for_spacing((3.5, 3.5, 3.5)) == [8, 8, 8]
    assert token_size_for_spacing((3.0, 0.8, 0.8)) == [2, 8, 8]
    assert token_size_for_spacing((1.6, 0.8, 0.8)) == [4, 8, 8]


@pytest.mark.parametrize("hf", [0, 2])
def test_token_grid_budget_and_head_foot_elongation(hf):
    token = (8, 8, 8)
    grid = plan_token_grid((400, 400, 400), (1.0, 1.0, 1.0), token, 512, hf)
    assert int(np.prod(grid)) <= 512
    assert int(np.prod(grid)) >= 0.8 * 512  # the budget is used
    others = [g for i, g in enumerate(grid) if i != hf]
    ratio = grid[hf] / max(others)
    assert ratio >= 0.8 * HEAD_FOOT_ELONGATION, grid
    # in mm as well, with anisotropic spacing
    spacing = (2.0, 1.0, 1.0)
    grid = plan_token_grid((400, 400, 400), spacing, token, 512, 0)
    mm = [g * t * s for g, t, s in zip(grid, token, spacing)]
    assert mm[0] >= 0.8 * HEAD_FOOT_ELONGATION * max(mm[1:]), mm


def test_token_grid_never_longer_than_the_image():
    # a short head-foot image: the budget goes across instead
    grid = plan_token_grid((30, 200, 200), (1.0, 1.0, 1.0), (8, 8, 8), 512, 0)
    assert grid[0] == 4  # ceil(30 / 8)
    assert int(np.prod(grid)) <= 512 and grid[1] > 4
    # an image smaller than the budget: the patch covers it
    assert plan_token_grid((20, 20, 20), (1.0, 1.0, 1.0), (8, 8, 8), 512, 0) == [3, 3, 3]


def test_ct_window_samples_leave_the_ignore_label_out():
    image = np.arange(20 ** 3, dtype=np.float32).reshape(20, 20, 20)
    seg = np.zeros((20, 20, 20), np.uint8)
    seg[8:12, 8:12, 8:12] = 5
    seg[0:2] = labels.IGNORE_LABEL  # a cut vertebra at the border, 16 mm and more from the labelled one
    with_ignore = spine_region_samples(image, seg, None, (1.0, 1.0, 1.0), margin_mm=3, ignore_label=None)
    without = spine_region_samples(image, seg, None, (1.0, 1.0, 1.0), margin_mm=3, ignore_label=labels.IGNORE_LABEL)
    assert with_ignore.min() < 2 * 400 <= without.min()  # slices 0-1 hold the values below 800
    reference = spine_region_samples(image, np.where(seg == labels.IGNORE_LABEL, 0, seg), None, (1.0, 1.0, 1.0),
                                     margin_mm=3)
    np.testing.assert_array_equal(without, reference)  # exactly the window the dataset gave without the ignore label


def test_case_facts_and_lesion_file(tmp_path):
    from vertebraformer_nn.planners.preprocessor import case_facts

    label = tmp_path / "labelsTr" / "dicom_x.nii.gz"
    lesion = lesion_file_for(str(label), {})
    assert lesion == str(tmp_path / "lesionsTr" / "dicom_x.nii.gz")
    assert lesion_file_for(str(tmp_path / "elsewhere" / "a.nii.gz"), {}) is None
    info = {"case_info": {"dicom_x": {"domain": "dicom", "annotations": {"lesion_mask": True}},
                          "verse_y": {"domain": "verse", "annotations": {"lesion_mask": False}}}}
    f = case_facts("dicom_x", info, lesion)
    assert f["has_lesion_annotation"] is True and f["domain_index"] == 3 and f["domain"] == "dicom"
    f = case_facts("verse_y", info, None)
    assert f["has_lesion_annotation"] is False and f["domain_index"] == 0
    # a dataset without case_info: annotated iff the lesion file exists; domain unknown
    assert case_facts("dicom_x", {}, lesion)["has_lesion_annotation"] is False
    (tmp_path / "lesionsTr").mkdir()
    Path(lesion).write_bytes(b"")
    f = case_facts("dicom_x", {}, lesion)
    assert f["has_lesion_annotation"] is True and f["domain_index"] == -1


# ------------------------------------------------------------------------------------------ plans (CPU preset)
@pytest.fixture(scope="module")
def cpu_plans(multispine_preprocessed):
    folder, plans_id = multispine_preprocessed
    pp = Path(os.environ["nnUNet_preprocessed"]) / folder
    return pp, json.loads((pp / f"{plans_id}.json").read_text()), plans_id


def test_cpu_plans_spacing_patch_batch(cpu_plans):
    _, plans, plans_id = cpu_plans
    assert plans_id == "VertebraFormerCPUPlans"
    assert list(plans["configurations"]) == [CONFIG, "3d_lowres"]
    c = plans["configurations"][CONFIG]
    assert all(s >= CPU_SPACING_MM - 1e-6 for s in c["spacing"])
    assert max(c["spacing"]) - min(c["spacing"]) < 1e-6  # isotropic on the phantoms (all finer than 3.5 mm)
    arch = c["architecture"]["arch_kwargs"]
    token, patch = arch["token_size"], c["patch_size"]
    assert arch["patch_size"] == patch
    assert all(p % t == 0 for p, t in zip(patch, token))
    tokens = int(np.prod([p // t for p, t in zip(patch, token)]))
    assert tokens <= CPU_TOKENS_PER_SAMPLE
    assert c["batch_size"] >= 2 and c["batch_size"] * tokens <= CPU_TOKENS_PER_BATCH
    # every size of the network is in the plans: the cpu preset's, resolved by the planner
    assert arch == network_arch_kwargs("cpu", patch, token, num_domains=len(SOURCES))
    assert plans["vertebraformer"]["network_preset"] == "cpu"
    # the anatomical axes, decided once: (S, A, R) from the reorienting reader, identity transpose at isotropic
    # spacing; head-foot is the longest patch axis in mm
    assert plans["image_reader_writer"] == "SimpleITKIOWithReorient" and plans["transpose_forward"] == [0, 1, 2]
    assert plans["vertebraformer"]["anatomical_axes"] == {"si": 0, "ap": 1, "lr": 2}
    assert "head_foot_axis" not in plans["vertebraformer"]  # one fact, one key
    mm = [p * s for p, s in zip(patch, c["spacing"])]
    assert mm[0] == max(mm)
    # the domains, from dataset.json's case_info, in SOURCES order; the domain classifier has one output each
    assert plans["vertebraformer"]["domains"] == list(SOURCES)
    # a 64^3-ish patch: covers most of the median phantom image
    assert np.prod(patch) <= 1.2 * 64 ** 3
    assert plans["configurations"][CONFIG]["preprocessor_name"] == "DefaultPreprocessor"


def test_own_data_identifier(cpu_plans):
    pp, plans, plans_id = cpu_plans
    ident = plans["configurations"][CONFIG]["data_identifier"]
    assert ident == f"{plans_id}_{CONFIG}" and not ident.startswith("nnUNetPlans")
    assert (pp / ident).is_dir()
    assert not (pp / "nnUNetPlans_3d_fullres").exists()


def test_ct_window_keeps_lesions_and_soft_tissue(cpu_plans):
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    _, plans, _ = cpu_plans
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    lo, hi = props["percentile_00_5"], props["percentile_99_5"]
    # fat (-100), muscle / lytic lesion (+50), disc (+80), trabecular bone (+250) and dense bone (+900) all inside
    assert lo <= -100 and hi >= 900, (lo, hi)
    hu = np.array([-100.0, 0.0, 50.0, 80.0, 250.0, 900.0], dtype=np.float32)
    norm = CTNormalization(use_mask_for_norm=False, intensityproperties=props).run(hu.copy())
    assert np.all(np.diff(norm) > 0), norm  # nothing flattened by the clip
    # nnU-Net's own, bone-derived window is kept for reference only
    assert "nnunet_foreground_intensity_properties_per_channel" in plans["vertebraformer"]


def test_ct_window_holds_the_phantom_lesions(multispine_raw, cpu_plans):
    import SimpleITK as sitk

    _, plans, _ = cpu_plans
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    values = []
    for f in sorted((multispine_raw / "lesionsTr").glob("*.nii.gz")):
        lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(f))) > 0
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(multispine_raw / "imagesTr" / f.name.replace(
            ".nii.gz", "_0000.nii.gz"))))
        values.append(image[lesion])
    values = np.concatenate(values)
    assert values.size > 0
    inside = (values >= props["percentile_00_5"]) & (values <= props["percentile_99_5"])
    assert inside.mean() >= 0.98  # lytic and blastic lesions alike


def test_architecture_loads_with_nnunet_and_takes_the_patch(cpu_plans):
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from vertebraformer_nn.network import VertebraFormer

    pp, plans, _ = cpu_plans
    dataset_json = json.loads((pp / "dataset.json").read_text())
    arch = plans["configurations"][CONFIG]["architecture"]
    assert arch["network_class_name"] == "vertebraformer_nn.network.VertebraFormer"
    assert arch["arch_kwargs"]["num_domains"] == 4
    assert dataset_json["labels"]["ignore"] == labels.IGNORE_LABEL  # not a network channel
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 1, len(dataset_json["labels"]) - 1, allow_init=True, deep_supervision=False)
    assert isinstance(net, VertebraFormer) and net.num_classes == 27 and net.num_domains == 4
    patch = plans["configurations"][CONFIG]["patch_size"]
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 1, *patch))
    assert tuple(out.shape) == (1, 27, *patch)


def test_gpu_budget_scales_with_memory(multispine_preprocessed):
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset

    from vertebraformer_nn.planners.planner import VertebraFormerPlanner

    results = {}
    for gb in (8, 24):
        planner = VertebraFormerPlanner(501, gpu_memory_target_in_gb=gb, plans_name=f"VFTestGPU{gb}Plans",
                                        verbose=False)
        if gb == 24:  # nnU-Net's planning API takes the class
            plans, ident = plan_experiment_dataset(501, VertebraFormerPlanner, gpu_memory_target_in_gb=gb,
                                                   overwrite_plans_name=f"VFTestGPU{gb}Plans")
            assert ident == f"VFTestGPU{gb}Plans"
        else:
            plans = planner.plan_experiment()
        c = plans["configurations"][CONFIG]
        arch = c["architecture"]["arch_kwargs"]
        assert {k: arch[k] for k in PRESETS["base"]} == PRESETS["base"]
        assert arch["use_boundary_head"] is False  # no disc head unless asked (plan-and-preprocess --disc-head)
        assert c["data_identifier"] == f"VFTestGPU{gb}Plans_{CONFIG}"
        assert all(p % t == 0 for p, t in zip(c["patch_size"], arch["token_size"]))
        tokens = int(np.prod([p // t for p, t in zip(c["patch_size"], arch["token_size"])]))
        assert tokens <= plans["vertebraformer"]["max_tokens_per_sample"]
        est = planner._estimate(c["patch_size"], arch["token_size"])
        assert 2 * est <= 2 * ELEMENTS_PER_SAMPLE_PER_GB * gb  # batch 2 fits the memory target
        assert c["batch_size"] >= 2
        assert c["spacing"] == pytest.approx(planner.determine_fullres_target_spacing()[plans["transpose_forward"]])
        results[gb] = plans["vertebraformer"]["max_tokens_per_sample"]
        (Path(os.environ["nnUNet_preprocessed"]) / planner.dataset_name / f"VFTestGPU{gb}Plans.json").unlink()
    assert results[24] > 2.5 * results[8]

    # a whole-spine CT at 1 mm: the memory budget binds, the patch is elongated head-foot, batch from the budget
    planner = VertebraFormerPlanner(501, gpu_memory_target_in_gb=8, plans_name="VFTestGPU8Plans", verbose=False)
    c = planner.get_plans_for_configuration(np.array([1.0, 1.0, 1.0]), np.array([600.0, 350.0, 350.0]), "x",
                                            1e12, {})
    token = c["architecture"]["arch_kwargs"]["token_size"]
    grid = [p // t for p, t in zip(c["patch_size"], token)]
    max_tokens = planner.summary["max_tokens"]
    assert 0.85 * max_tokens <= np.prod(grid) <= max_tokens
    assert grid[0] >= 0.8 * HEAD_FOOT_ELONGATION * max(grid[1:]), grid
    est = planner._estimate(c["patch_size"], token)
    assert c["batch_size"] == max(2, int(2 * ELEMENTS_PER_SAMPLE_PER_GB * 8 // est))


# ------------------------------------------------------------------------------------------ preprocessed data
@pytest.fixture(scope="module")
def pp_dataset(cpu_plans):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    pp, plans, _ = cpu_plans
    folder = pp / plans["configurations"][CONFIG]["data_identifier"]
    return nnUNetDatasetBlosc2(str(folder))


def _raw_lesion_in_preprocessed_geometry(raw: Path, case: str, props: dict, plans: dict):
    """Independent of the preprocessor: reorient, transpose, crop, nearest-neighbour zoom (scipy)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIOWithReorient

    les, _ = SimpleITKIOWithReorient().read_seg(str(raw / "lesionsTr" / f"{case}.nii.gz"))
    les = les[0].transpose(plans["transpose_forward"]) > 0
    les = les[tuple(slice(a, b) for a, b in props["bbox_used_for_cropping"])]
    return les


def test_seg_has_lesion_channel_and_flags(multispine_raw, cpu_plans, pp_dataset):
    from scipy.ndimage import zoom

    from vertebraformer_nn.dataset_conversion import SOURCES

    _, plans, _ = cpu_plans
    info = json.loads((multispine_raw / "dataset.json").read_text())["case_info"]
    n_lesion_cases = ignore_cases = 0
    for case in pp_dataset.identifiers:
        data, seg, _, props = pp_dataset.load_case(case)
        seg = np.asarray(seg)
        assert seg.shape[0] == 2 and seg.shape[1:] == data.shape[1:]
        annotated = info[case]["annotations"]["lesion_mask"]
        assert props["has_lesion_annotation"] is annotated
        assert props["domain"] == info[case]["domain"]
        assert props["domain_index"] == SOURCES.index(info[case]["domain"])
        assert "lesion" in props["class_locations"]
        # nnU-Net's ignore label: never a class to sample; its "annotated voxels" key instead (every label but it)
        assert labels.IGNORE_LABEL not in props["class_locations"]
        labelled_key = tuple([-1] + list(range(labels.NUM_TRAINING_LABELS)))
        assert labelled_key in props["class_locations"]
        ignore_cases += bool((seg[0] == labels.IGNORE_LABEL).any())
        locs = np.asarray(props["class_locations"][labelled_key])
        assert len(locs) and not (seg[0][tuple(locs[:, 1:].T)] == labels.IGNORE_LABEL).any()
        lesion = seg[1] > 0
        assert set(np.unique(seg[1])) <= {0, 1}
        if not annotated:
            assert not lesion.any() and len(props["class_locations"]["lesion"]) == 0
            continue
        n_lesion_cases += 1
        raw = _raw_lesion_in_preprocessed_geometry(multispine_raw, case, props, plans)
        assert raw.any() and lesion.any()
        ref = zoom(raw.astype(np.uint8), [n / o for n, o in zip(lesion.shape, raw.shape)], order=0) > 0
        assert ref.shape == lesion.shape
        dice = 2 * (ref & lesion).sum() / (ref.sum() + lesion.sum())
        assert dice > 0.7, (case, dice)
        locs = np.asarray(props["class_locations"]["lesion"])
        assert locs.ndim == 2 and locs.shape[1] == 4 and len(locs) > 0
        assert np.all(seg[1][tuple(locs[:, 1:].T)] == 1)
        # channel 0 untouched: vertebra labels as nnU-Net makes them
        assert seg[0].max() > 0 and seg[0].max() <= labels.IGNORE_LABEL
    assert n_lesion_cases >= 1 and ignore_cases >= 1


def test_gt_segmentations_and_splits(multispine_raw, cpu_plans, pp_dataset):
    pp, _, _ = cpu_plans
    gt = sorted(p.name for p in (pp / "gt_segmentations").iterdir())
    assert gt == sorted(f"{c}.nii.gz" for c in pp_dataset.identifiers)
    assert json.loads((pp / "splits_final.json").read_text()) == \
        json.loads((multispine_raw / "splits_final.json").read_text())


def test_stock_loader_and_transforms_give_two_channel_targets(cpu_plans, pp_dataset):
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pp, plans, _ = cpu_plans
    dataset_json = json.loads((pp / "dataset.json").read_text())
    pm = PlansManager(plans)
    cm = pm.get_configuration(CONFIG)
    lm = pm.get_label_manager(dataset_json)
    patch = tuple(cm.patch_size)
    rot = (-np.pi / 12, np.pi / 12)
    initial = get_patch_size(patch, rot, rot, rot, (0.85, 1.25))
    transforms = nnUNetTrainer.get_training_transforms(
        patch, rot, None, (2,), False, use_mask_for_norm=cm.use_mask_for_norm,
        foreground_labels=lm.foreground_labels)
    loader = nnUNetDataLoader(pp_dataset, 2, initial, patch, lm, oversample_foreground_percent=1.0,
                              transforms=transforms)
    batch = next(loader)
    assert tuple(batch["data"].shape) == (2, 1, *patch)
    assert tuple(batch["target"].shape) == (2, 2, *patch)
    assert batch["target"].min() >= 0  # -1 padding removed in every channel
    assert len(batch["keys"]) == 2


def test_cli_help_and_bad_configuration(capsys):
    from vertebraformer_nn.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["plan-and-preprocess", "--help"])
    assert exc.value.code == 0
    assert "--preset" in capsys.readouterr().out
    assert main(["plan-and-preprocess", "-d", "501", "-c", "2d"]) == 2
    with pytest.raises(SystemExit):
        main(["plan-and-preprocess", "-d", "501", "--preset", "cpu", "--gpu-memory-gb", "8"])


def test_cli_passes_its_arguments(monkeypatch):
    from vertebraformer_nn.cli import main
    from vertebraformer_nn.planners import api

    calls = []
    monkeypatch.setattr(api, "plan_and_preprocess", lambda *a, **k: calls.append((a, k)) or "P")
    assert main(["plan-and-preprocess", "-d", "501", "--preset", "cpu", "-np", "3",
                 "--verify_dataset_integrity", "--disc-head"]) == 0
    assert main(["plan-and-preprocess", "-d", "501", "--gpu-memory-gb", "40", "-c", "3d_fullres"]) == 0
    (a1, k1), (a2, k2) = calls
    assert a1 == (501,) and k1["preset"] == "cpu" and k1["num_processes"] == 3 and k1["verify"] is True
    assert k1["disc_head"] is True and k2["disc_head"] is False  # the disc head only when asked
    assert a2 == (501,) and k2["preset"] is None and k2["gpu_memory_gb"] == 40.0
    assert k2["configurations"] == ["3d_fullres"] and k2["verify"] is False


def test_fingerprint_staleness(tmp_path):
    from vertebraformer_nn.planners.api import _fingerprint_is_stale

    fp, raw = tmp_path / "dataset_fingerprint.json", tmp_path / "dataset.json"
    raw.write_text(json.dumps({"numTraining": 2}))
    assert _fingerprint_is_stale(str(fp), str(raw))  # missing
    fp.write_text(json.dumps({"spacings": [[1, 1, 1], [1, 1, 1]]}))
    os.utime(raw, (1, 1))
    assert not _fingerprint_is_stale(str(fp), str(raw))
    fp.write_text(json.dumps({"spacings": [[1, 1, 1]]}))
    assert _fingerprint_is_stale(str(fp), str(raw))  # another case count
    fp.write_text(json.dumps({"spacings": [[1, 1, 1], [1, 1, 1]]}))
    os.utime(raw, None)
    os.utime(fp, (1, 1))
    assert _fingerprint_is_stale(str(fp), str(raw))  # dataset.json newer


def test_stock_preprocessor_sees_the_same_image_and_labels(multispine_raw, cpu_plans, pp_dataset):
    """What stock nnU-Net inference does with our plans (DefaultPreprocessor) equals our image channel and seg
    channel 0: our subclass only adds the lesion channel and facts."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pp, plans, _ = cpu_plans
    dataset_json = json.loads((pp / "dataset.json").read_text())
    pm = PlansManager(plans)
    cm = pm.get_configuration(CONFIG)
    case = next(c for c in pp_dataset.identifiers if c.startswith("dicom"))
    data, seg, _ = DefaultPreprocessor(verbose=False).run_case(
        [str(multispine_raw / "imagesTr" / f"{case}_0000.nii.gz")], str(multispine_raw / "labelsTr" / f"{case}.nii.gz"),
        pm, cm, dataset_json)
    ours_data, ours_seg, _, _ = pp_dataset.load_case(case)
    np.testing.assert_allclose(np.asarray(ours_data), data, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(ours_seg)[0], seg[0])


def test_the_cli_builds_without_torch_or_nnunet():
    """``vertebraformer --help`` answers at once: no add_parser module (planners' included) imports torch or
    nnU-Net; the planners package imports only its light modules."""
    import subprocess
    import sys

    code = ("import sys; from vertebraformer_nn.cli import build_parser; build_parser(); "
            "import vertebraformer_nn.planners; "
            "print(sorted(m for m in ('torch', 'nnunetv2', 'vertebraformer_nn.network') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
