"""Sharing a trained model with nnU-Net's own tools: ``nnUNetv2_export_model_to_zip`` on our model folder, then
``nnUNetv2_install_pretrained_model_from_zip`` into a fresh ``nnUNet_results``. What the export must preserve is
everything that decides a prediction: the weights, the plans, and the model's post-processing values (which nnU-Net's
export carries only from ``crossval_results_folds_<folds>/``). The model here has post-processing of its own that
changes its outputs (checked against the defaults), so an export that lost any of it would predict differently."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: the model's own post-processing: values that change the tiny model's outputs
OWN = {"level_smoothing_mm": 4.0, "lesion_threshold": 0.2}


def _predict(model: Path, case: Path, out: Path, *extra) -> dict:
    from vertebraformer_nn.cli import main

    assert main(["predict", "-i", str(case), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "--no_preview", "--disable_progress_bar", *map(str, extra)]) == 0
    return json.loads((out / "slab.json").read_text())


def _arrays(out: Path) -> dict:
    return {name: sitk.GetArrayFromImage(sitk.ReadImage(str(out / name)))
            for name in ("slab.nii.gz", "slab_lesion.nii.gz")}


def test_exported_model_installs_and_predicts_the_same(tiny_model_copy, phantom_slab, tmp_path, monkeypatch):
    from nnunetv2.model_sharing.model_export import export_pretrained_model
    from nnunetv2.model_sharing.model_import import install_model_from_zip_file

    from vertebraformer_nn.inference import postprocessing as PP
    from vertebraformer_nn.inference.postprocessing_search import write_postprocessing

    model = tiny_model_copy
    write_postprocessing(model, [0], PP.with_values(PP.DEFAULTS, OWN))
    original = _predict(model, phantom_slab, tmp_path / "original")
    assert {k: original["postprocessing"]["values"][k] for k in OWN} == OWN
    # the model's own values matter: with the defaults instead, its outputs differ
    _predict(model, phantom_slab, tmp_path / "defaults", "--set", *(f"{k}={getattr(PP.DEFAULTS, k)}" for k in OWN))
    with_defaults, own = _arrays(tmp_path / "defaults"), _arrays(tmp_path / "original")
    assert any(not np.array_equal(with_defaults[n], own[n]) for n in own)
    dataset = model.parent.name
    trainer, plans, configuration = model.name.split("__")
    archive = tmp_path / "model.zip"
    export_pretrained_model(dataset, str(archive), configurations=(configuration,), trainer=trainer,
                            plans_identifier=plans, folds=(0,))
    names = set(zipfile.ZipFile(archive).namelist())
    prefix = f"{dataset}/{model.name}"
    for member in ("fold_0/checkpoint_final.pth", "fold_0/progress.png", "plans.json", "dataset.json",
                   "dataset_fingerprint.json", "crossval_results_folds_0/postprocessing.json"):
        assert f"{prefix}/{member}" in names

    fresh = tmp_path / "fresh_results"
    fresh.mkdir()
    monkeypatch.setenv("nnUNet_results", str(fresh))  # nnunetv2.paths reads the variable when it is used
    install_model_from_zip_file(str(archive))
    installed = fresh / dataset / model.name
    copy = _predict(installed, phantom_slab, tmp_path / "installed")

    assert copy["postprocessing"]["values"] == original["postprocessing"]["values"]
    assert copy["vertebrae"] == original["vertebrae"] and copy["lesions"] == original["lesions"]
    ours, theirs = _arrays(tmp_path / "original"), _arrays(tmp_path / "installed")
    assert ours["slab.nii.gz"].shape == sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_slab))).shape
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name
