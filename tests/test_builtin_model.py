"""The built-in model (``vertebraformer_nn.builtin_model``): what ships loads strictly with ``weights_only=True``,
fits the package's 20 MB, is used by ``predict`` when no model is named; and the tool that packages a model cuts its
checkpoints to the weights without changing what it predicts."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import REPO

MAX_BYTES = 20e6


def _tool():
    spec = importlib.util.spec_from_file_location("package_builtin_model", REPO / "tools" / "package_builtin_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _predict(out: Path, case: Path, *model_args) -> dict:
    from vertebraformer_nn.cli import main

    assert main(["predict", "-i", str(case), "-o", str(out), *map(str, model_args), "-device", "cpu", "--no_preview",
                 "--disable_progress_bar"]) == 0
    return json.loads((out / "slab.json").read_text())


def _labels(out: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "slab.nii.gz")))


def test_packaging_cuts_checkpoints_to_weights_and_predicts_the_same(tiny_model_copy, phantom_slab, tmp_path):
    from vertebraformer_nn.trainers.checkpoints import load_checkpoint_file

    tool = _tool()
    original_file = tiny_model_copy / "fold_0" / "checkpoint_final.pth"
    original = load_checkpoint_file(str(original_file), map_location="cpu")["network_weights"]
    for dtype in ("float16", "float32"):
        assert tool.main(["--model", str(tiny_model_copy), "-f", "0", "--into", str(tmp_path / dtype),
                          "--dtype", dtype]) == 0
        packaged = tmp_path / dtype / tiny_model_copy.name
        assert {p.name for p in packaged.iterdir()} >= {"plans.json", "dataset.json", "fold_0"}
        packaged_file = packaged / "fold_0" / "checkpoint_final.pth"
        assert packaged_file.stat().st_size < original_file.stat().st_size  # no optimizer state, logs or plans
        checkpoint = torch.load(packaged_file, weights_only=True, map_location="cpu")  # plain torch, no allow-list
        assert set(checkpoint) == {"network_weights", "trainer_name", "init_args",
                                   "inference_allowed_mirroring_axes", "current_epoch"}
        weights = checkpoint["network_weights"]
        assert weights.keys() == original.keys()
        for k, v in original.items():  # every weight, rounded to the stored type and nothing else
            expected = v.to(getattr(torch, dtype)) if v.is_floating_point() else v
            assert weights[k].dtype == expected.dtype and torch.equal(weights[k], expected), k
    # float32 weights predict exactly what the full checkpoint predicts: the cut loses nothing prediction reads
    # (float16 moves this barely trained model's near-tied levels; on the built-in model its metrics were unchanged)
    full = _predict(tmp_path / "original", phantom_slab, "-m", tiny_model_copy, "-f", "0")
    cut = _predict(tmp_path / "packaged", phantom_slab, "-m", tmp_path / "float32" / tiny_model_copy.name, "-f", "0")
    assert np.array_equal(_labels(tmp_path / "original"), _labels(tmp_path / "packaged"))
    assert cut["vertebrae"] == full["vertebrae"] and cut["lesions"] == full["lesions"]


def test_packaging_a_fold_ensemble_with_fewer_coarse_folds(tiny_model_copy, tiny_trained_coarse, tmp_path):
    from vertebraformer_nn.inference.coarse_stage import find_coarse_model, sibling_folder

    fine = tmp_path / "trained" / tiny_model_copy.name
    shutil.copytree(tiny_model_copy, fine, ignore=shutil.ignore_patterns("fold_[1-9]*"))
    shutil.copytree(fine / "fold_0", fine / "fold_1")
    shutil.copytree(tiny_trained_coarse, sibling_folder(fine))  # fold 0 only
    tool = _tool()
    with pytest.raises(SystemExit, match="only folds shipped with -f"):
        tool.main(["--model", str(fine), "-f", "0", "1", "--coarse-folds", "2", "--into", str(tmp_path / "no")])
    assert tool.main(["--model", str(fine), "-f", "0", "1", "--coarse-folds", "0", "--into",
                      str(tmp_path / "shipped")]) == 0
    shipped = tmp_path / "shipped" / fine.name
    coarse = sibling_folder(shipped)
    assert sorted(p.name for p in shipped.glob("fold_*")) == ["fold_0", "fold_1"]
    assert sorted(p.name for p in coarse.glob("fold_*")) == ["fold_0"]
    assert find_coarse_model(shipped, ["0", "1"], "checkpoint_final.pth")[:2] == (coarse, ["0"])


def test_the_shipped_model_is_small_and_loads_strictly():
    from vertebraformer_nn.builtin_model import HERE, MODEL_CARD, builtin_model
    from vertebraformer_nn.inference.coarse_stage import find_coarse_model
    from vertebraformer_nn.inference.predictor import VertebraFormerPredictor

    folder, folds = builtin_model()
    assert sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file()) <= MAX_BYTES
    coarse, coarse_folds, note = find_coarse_model(folder, folds, "checkpoint_final.pth")
    assert coarse is not None, note
    for model, model_folds in ((folder, folds), (coarse, coarse_folds)):
        for fold in model_folds:
            checkpoint = torch.load(model / f"fold_{fold}" / "checkpoint_final.pth", weights_only=True,
                                    map_location="cpu")
            assert "optimizer_state" not in checkpoint
        predictor = VertebraFormerPredictor("cpu")
        predictor.initialize_from_trained_model_folder(model, model_folds)  # load_state_dict(strict=True) inside
    assert (folder / "postprocessing.json").is_file()  # chosen on its validation cases, not the defaults
    card = MODEL_CARD.read_text()
    for section in ("## Training data", "## Schedule", "## Results", "## Limits"):
        assert section in card


def test_predict_without_a_model_uses_the_builtin_one(phantom_slab, tmp_path, capsys):
    from vertebraformer_nn.builtin_model import FOLDER

    report = _predict(tmp_path / "out", phantom_slab)
    assert "using the built-in model" in capsys.readouterr().out
    setup = json.loads((tmp_path / "out" / "prediction_args.json").read_text())
    assert Path(setup["model"]) == FOLDER and setup["coarse"]  # with its coarse whole-field stage
    assert report["quality"]["flag"] in ("ok", "warning", "fail")
    # the boundaries went onto the bone edge (the phantom's voxels are finer than the model's 3.5 mm)
    assert report["bone_edge"]["band_mm"] == 2.0 and report["bone_edge"]["added"] > 0
    assert _labels(tmp_path / "out").shape == sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_slab))).shape
