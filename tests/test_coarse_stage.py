"""The coarse whole-field stage (issue 15 part 1): the 3d_lowres configuration of the same plans (planners/
whole_field.py), trained by ``vertebraformer train ... -c 3d_lowres`` and picked up by ``predict`` from the sibling
model folder (inference/coarse_stage.py); ``--no-coarse`` skips it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vertebraformer_nn.inference import probabilities as P
from vertebraformer_nn.inference.coarse_resample import at_fine_voxels, to_fine_grid
from vertebraformer_nn.inference.coarse_stage import LevelGrid, find_coarse_model, sibling_folder
from vertebraformer_nn.inference.grid_probabilities import COARSE_HEAD
from vertebraformer_nn.planners.whole_field import (CPU_COARSE_SPACING_MM, HEAD_FOOT_PERCENTILE, coarse_spacing,
                                                    tokens_needed, whole_field_shape)

PHANTOM = "verse/dataset-verse20training/rawdata/sub-verse501/sub-verse501_split-verse501_ct.nii.gz"


# ------------------------------------------------------------------------------------------------ pure functions
def test_coarse_spacing_cpu_is_7mm_and_gpu_grows_until_the_scan_fits():
    assert coarse_spacing([3.5, 3.5, 3.5], [200, 100, 100], cpu=True).tolist() == [CPU_COARSE_SPACING_MM] * 3
    assert coarse_spacing([8.0, 3.5, 3.5], [200, 100, 100], cpu=True).tolist() == [8.0, 7.0, 7.0]
    # GPU: at least twice the fine spacing, then coarser until the (fake) budget of 1000 tokens of 8 voxels fits
    fits = lambda spacing, median: tokens_needed(median, (8, 8, 8)) <= 1000  # noqa: E731
    spacing = coarse_spacing([1.0, 1.0, 1.0], [600, 400, 400], cpu=False, fits=fits)
    assert (spacing >= 2.0).all() and fits(spacing, np.array([600, 400, 400]) / spacing)
    assert not fits(spacing / 1.03, np.array([600, 400, 400]) / (spacing / 1.03))  # the finest that fits
    assert tokens_needed([17, 8, 1], (8, 8, 8)) == 3


def test_the_shape_to_hold_is_the_median_across_and_the_long_scans_head_foot():
    # eight short scans and two whole spines along axis 1: the median would leave the long ones to sliding windows
    shapes = [[30, 40 + i, 30] for i in range(8)] + [[50, 100, 20], [50, 100, 20]]
    held = whole_field_shape(shapes, head_foot_axis=1)
    assert held[0] == 30 and held[2] == 30  # across: the median
    assert held[1] == 100 > np.median(np.array(shapes)[:, 1])  # a tenth of the scans is long: the 90th percentile
    assert whole_field_shape(shapes, head_foot_axis=1, percentile=50).tolist() == np.median(shapes, 0).tolist()
    assert HEAD_FOOT_PERCENTILE == 90


def test_to_fine_grid_keeps_constants_and_interpolates_linearly():
    coarse = np.zeros((2, 4, 3, 2), np.float32)
    coarse[0] = 1.0
    coarse[1] = np.arange(4, dtype=np.float32)[:, None, None]
    fine = to_fine_grid(coarse, (8, 6, 4))
    assert fine.shape == (2, 8, 6, 4) and fine.dtype == np.float16
    assert np.allclose(fine[0], 1.0)
    ramp = fine[1, :, 0, 0].astype(np.float32)  # half-pixel aligned: clamped at the edges, linear between
    assert np.allclose(ramp, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0], atol=1e-3)


def test_the_levels_at_some_fine_voxels_are_those_of_the_whole_fine_grid():
    rng = np.random.default_rng(0)
    coarse = rng.dirichlet(np.ones(26), size=(5, 4, 3)).transpose(3, 0, 1, 2).astype(np.float16)
    fine = to_fine_grid(coarse, (11, 9, 7)).reshape(26, -1).T.astype(np.float32)
    some = rng.choice(11 * 9 * 7, 100, replace=False)
    assert np.allclose(at_fine_voxels(coarse, (11, 9, 7), some, chunk=7), fine[some], atol=2e-3)
    assert np.allclose(at_fine_voxels(coarse, coarse.shape[1:], some[some < 60]), coarse.reshape(26, -1).T[
        some[some < 60]], atol=1e-3)  # on its own grid: the values themselves


def test_level_grid_keeps_the_levels_whole_and_uniform_without_any_vertebra():
    import torch

    grid = LevelGrid((4, 3, 2), 27, False, True)
    vertebrae = torch.zeros((26, 4, 3, 2))
    vertebrae[3, :2] = 0.6
    grid.add((slice(0, 4), slice(None), slice(None)), 1 - vertebrae.sum(0), vertebrae)
    levels = grid.result().astype(np.float32)
    assert levels.shape == (26, 4, 3, 2) and np.allclose(levels[3, :2], 1) and np.allclose(levels[:, 2:], 1 / 26,
                                                                                            atol=1e-3)


def test_coarse_levels_are_saved_whole_averaged_and_read_back(tmp_path):
    rng = np.random.default_rng(1)
    seg = rng.dirichlet(np.ones(27), size=(6, 5, 4)).transpose(3, 0, 1, 2).astype(np.float32)
    coarse = [rng.dirichlet(np.ones(26), size=(3, 3, 2)).transpose(3, 0, 1, 2) for _ in range(2)]
    items = []
    for k, c in enumerate(coarse):
        path = P.save(tmp_path / f"{k}_vfprobs.npz", P.compact({"seg": seg, COARSE_HEAD: c}), {"case": "x"})
        items.append(P.load(path)[0])
        assert items[-1].coarse.shape == (26, 3, 3, 2) and COARSE_HEAD not in items[-1].heads
    mean = ((coarse[0].astype(np.float16).astype(np.float32) + coarse[1].astype(np.float16)) / 2).astype(np.float16)
    assert np.array_equal(P.average(items)[COARSE_HEAD], mean)
    assert np.array_equal(P.averaged_grid(items).coarse, mean)
    with pytest.raises(ValueError, match="coarse"):
        P.averaged_grid([items[0], P.compact({"seg": seg})])


def test_sibling_folder_and_what_find_coarse_model_says(tmp_path):
    fine = tmp_path / "T__P__3d_fullres"
    assert sibling_folder(fine) == tmp_path / "T__P__3d_lowres"
    assert sibling_folder(tmp_path / "T__P__3d_lowres") is None
    assert find_coarse_model(fine, [0], "checkpoint_final.pth")[0] is None
    coarse = tmp_path / "T__P__3d_lowres"
    (coarse / "fold_0").mkdir(parents=True)
    (coarse / "plans.json").write_text("{}")
    folder, folds, note = find_coarse_model(fine, [0, 1], "checkpoint_final.pth")
    assert folder is None and folds == [] and "fold(s) 0, 1" in note
    (coarse / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    assert find_coarse_model(fine, [0], "checkpoint_final.pth")[:2] == (coarse, [0])
    # a fold ensemble with fewer coarse folds: the coarse stage runs with the requested folds it has, never another
    folder, folds, note = find_coarse_model(fine, [2, 0, 1], "checkpoint_final.pth")
    assert folder == coarse and folds == [0] and note.endswith("fold(s) 0 (it has no fold 2, 1)")
    assert find_coarse_model(fine, [1], "checkpoint_final.pth")[:2] == (None, [])


# ------------------------------------------------------------------------------------------------ planning
def test_plans_hold_the_whole_field_configuration(multispine_preprocessed):
    folder, plans_id = multispine_preprocessed
    pp = Path(os.environ["nnUNet_preprocessed"]) / folder
    plans = json.loads((pp / f"{plans_id}.json").read_text())
    fine, coarse = plans["configurations"]["3d_fullres"], plans["configurations"]["3d_lowres"]
    assert plans["vertebraformer"]["coarse_configuration"] == "3d_lowres"
    assert coarse["spacing"] == [CPU_COARSE_SPACING_MM] * 3
    assert "next_stage" not in fine and "next_stage" not in coarse  # no cascade: the fine stage takes no seg input
    assert coarse["architecture"]["network_class_name"] == fine["architecture"]["network_class_name"]
    assert fine["architecture"]["arch_kwargs"]["use_boundary_head"] is True  # the disc head: fine stage only
    assert coarse["architecture"]["arch_kwargs"]["use_boundary_head"] is False
    # one patch holds the median phantom scan across and the long ones head-foot (axis 0 of these plans)
    fingerprint = json.loads((pp / "dataset_fingerprint.json").read_text())
    extents = [np.array(s) * np.array(sp) for s, sp in zip(fingerprint["shapes_after_crop"], fingerprint["spacings"])]
    held = whole_field_shape(extents, plans["vertebraformer"]["anatomical_axes"]["si"])
    assert held[0] > np.median(extents, 0)[0] or len({round(e[0]) for e in extents}) == 1
    assert all(p * CPU_COARSE_SPACING_MM >= e - CPU_COARSE_SPACING_MM for p, e in zip(coarse["patch_size"], held))
    assert coarse["median_image_size_in_voxels"] == pytest.approx(np.median(extents, 0) / CPU_COARSE_SPACING_MM,
                                                                  abs=1.0)
    assert any((pp / coarse["data_identifier"]).glob("*.b2nd")) or any((pp / coarse["data_identifier"]).glob("*.np*"))


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def fine_and_coarse(tiny_model_copy, tiny_trained_coarse):
    """The module's copy of the tiny fine model in ``$nnUNet_results`` (the preprocessed dataset is found from
    there) with a copy of the tiny coarse one beside it as its sibling; both removed after the module."""
    trainer, plans, _ = tiny_model_copy.name.split("__")
    coarse = tiny_model_copy.parent / f"{trainer}__{plans}__3d_lowres"
    shutil.rmtree(coarse, ignore_errors=True)
    shutil.copytree(tiny_trained_coarse, coarse)
    yield tiny_model_copy
    shutil.rmtree(coarse)


def _predict(*args) -> int:
    from vertebraformer_nn.cli import main

    return main(["predict", *map(str, args), "--disable_progress_bar"])


def test_predict_runs_the_coarse_stage_from_the_sibling_folder_and_no_coarse_skips_it(fine_and_coarse, sim_root,
                                                                                      tmp_path):
    case_in = tmp_path / "in"
    case_in.mkdir()
    shutil.copy(sim_root / PHANTOM, case_in / "phantom.nii.gz")
    with_coarse, without = tmp_path / "with", tmp_path / "without"
    assert _predict("-i", case_in, "-o", with_coarse, "-m", fine_and_coarse, "-f", "0", "--save_probabilities") == 0
    assert _predict("-i", case_in, "-o", without, "-m", fine_and_coarse, "-f", "0", "--no-coarse") == 0

    args = json.loads((with_coarse / "prediction_args.json").read_text())
    assert args["coarse"]["configuration"] == "3d_lowres" and args["coarse"]["folds"] == [0]
    report = json.loads((with_coarse / "phantom.json").read_text())
    assert report["numbering"]["coarse_stage"]["model"].endswith("__3d_lowres")
    assert report["numbering"]["coarse_evidence"] is True
    assert report["quality"]["flag"] in ("ok", "warning", "fail")
    probs, _ = P.load(with_coarse / "phantom_vfprobs.npz")
    coarse = probs.coarse  # whole, on the coarse grid (7 mm: at most the fine 3.5 mm grid's size)
    assert coarse.shape[0] == 26 and all(c <= f for c, f in zip(coarse.shape[1:], probs.shape))
    assert np.isfinite(coarse).all() and np.allclose(coarse.astype(np.float32).sum(axis=0), 1, atol=0.02)

    assert json.loads((without / "prediction_args.json").read_text())["coarse"] is None
    report = json.loads((without / "phantom.json").read_text())
    assert report["numbering"]["coarse_stage"] is None and report["numbering"]["coarse_evidence"] is False


def test_a_fold_ensemble_with_one_coarse_fold_predicts_with_it(fine_and_coarse, sim_root, tmp_path, capsys):
    """Two fine folds (the tiny fold 0 twice) beside one coarse fold, as a built-in fold ensemble would ship: both
    fine folds run, the coarse stage runs with fold 0, and the log says which fold it lacks."""
    fine = tmp_path / "models" / fine_and_coarse.name
    coarse = sibling_folder(fine)
    shutil.copytree(fine_and_coarse, fine, ignore=shutil.ignore_patterns("fold_[1-9]*"))
    shutil.copytree(sibling_folder(fine_and_coarse), coarse)
    shutil.copytree(fine / "fold_0", fine / "fold_1")
    case_in = tmp_path / "in"
    case_in.mkdir()
    shutil.copy(sim_root / PHANTOM, case_in / "phantom.nii.gz")
    assert _predict("-i", case_in, "-o", tmp_path / "out", "-m", fine, "-f", "0", "1", "--no_preview") == 0
    args = json.loads((tmp_path / "out" / "prediction_args.json").read_text())
    assert args["folds"] == [0, 1] and args["coarse"]["folds"] == [0]
    assert f"coarse whole-field stage: {coarse.name}, fold(s) 0 (it has no fold 1)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "phantom.json").read_text())["numbering"]["coarse_evidence"] is True


def test_validation_cases_carry_the_coarse_levels_and_the_ct(fine_and_coarse):
    """determine-postprocessing predicts the coarse head of each validation case as predict does, and recovers the CT
    in HU on the model grid for the anchors."""
    from vertebraformer_nn.inference.numbering import ordered_instances
    from vertebraformer_nn.inference.validation_cases import collect_validation_cases

    cases = collect_validation_cases(fine_and_coarse, [0], device="cpu", log=lambda line: None)
    assert cases
    case = cases[0]
    probs, meta = P.load(case.probabilities)
    assert probs.coarse is not None and COARSE_HEAD not in probs.heads and meta["coarse"] is not None
    assert case.hu is not None and case.hu.shape == probs.shape and case.hu.max() > 300  # bone in the window
    expanded = {head: probs.expand(head) for head in probs.heads}
    found = ordered_instances(expanded["seg"], case.spacing, *case.superior, expanded.get("id"),
                              coarse_probs=probs.coarse, hu=case.hu)
    assert found.anchors_looked_for and (len(found.ids) == 0 or found.coarse_log_probs.shape == (len(found.ids), 26))
