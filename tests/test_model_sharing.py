"""Sharing a trained model with nnU-Net's own tools: ``nnUNetv2_export_model_to_zip`` on our model folder, then
``nnUNetv2_install_pretrained_model_from_zip`` into a fresh ``nnUNet_results``; the installed model predicts the
same as the original (``vertebraformer predict -m <model folder> -f 0``)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

#: head-foot slices (RAS: the numpy axis 0) of the phantom kept for the prediction: a small, fast case
SLAB = 24


@pytest.fixture(scope="module")
def small_case(multispine_raw, tmp_path_factory) -> Path:
    """A slab through the middle of one phantom CT of the raw dataset (the whole axial extent: air, fat, bone)."""
    from vertebraformer_nn.image_io import read_image, write_image

    source = sorted((multispine_raw / "imagesTr").glob("*_0000.nii.gz"))[0]
    image = read_image(source)
    mid = image.GetSize()[2] // 2
    slab = image[:, :, max(0, mid - SLAB // 2): mid + SLAB // 2]
    return write_image(slab, tmp_path_factory.mktemp("share_case") / "slab.nii.gz")


def _predict(model: Path, case: Path, out: Path) -> None:
    from vertebraformer_nn.cli import main

    assert main(["predict", "-i", str(case), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "--no_preview", "--disable_progress_bar"]) == 0


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_exported_model_installs_and_predicts_the_same(tiny_trained_fold, small_case, tmp_path, monkeypatch):
    from nnunetv2.model_sharing.model_export import export_pretrained_model
    from nnunetv2.model_sharing.model_import import install_model_from_zip_file

    model = tiny_trained_fold.parent
    dataset = model.parent.name
    trainer, plans, configuration = model.name.split("__")
    archive = tmp_path / "model.zip"
    export_pretrained_model(dataset, str(archive), configurations=(configuration,), trainer=trainer,
                            plans_identifier=plans, folds=(0,))
    names = set(zipfile.ZipFile(archive).namelist())
    prefix = f"{dataset}/{model.name}"
    for member in ("fold_0/checkpoint_final.pth", "fold_0/progress.png", "plans.json", "dataset.json",
                   "dataset_fingerprint.json"):
        assert f"{prefix}/{member}" in names

    fresh = tmp_path / "fresh_results"
    fresh.mkdir()
    monkeypatch.setenv("nnUNet_results", str(fresh))  # nnunetv2.paths reads the variable when it is used
    install_model_from_zip_file(str(archive))
    installed = fresh / dataset / model.name
    assert (installed / "fold_0" / "checkpoint_final.pth").read_bytes() == \
        (model / "fold_0" / "checkpoint_final.pth").read_bytes()

    _predict(model, small_case, tmp_path / "original")
    _predict(installed, small_case, tmp_path / "installed")
    original, copy = _array(tmp_path / "original" / "slab.nii.gz"), _array(tmp_path / "installed" / "slab.nii.gz")
    assert original.shape == _array(small_case).shape
    assert np.array_equal(original, copy)
    assert np.array_equal(_array(tmp_path / "original" / "slab_lesion.nii.gz"),
                          _array(tmp_path / "installed" / "slab_lesion.nii.gz"))
