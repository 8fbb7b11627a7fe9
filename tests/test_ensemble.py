"""``vertebraformer ensemble``: averaging the saved probabilities of two single-fold prediction folders gives
what predicting with both folds in one call gives (the one averaging rule: the same labels, probabilities equal to
float16 rounding), one folder is post-processed again as predict would, and what cannot be ensembled fails with its
reason."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn.inference import probabilities as P


def _run(*args) -> int:
    from vertebraformer_nn.cli import main

    return main([*map(str, args), "--disable_progress_bar"])


#: a barely trained model's instances lie anywhere: which of them the off-axis rule keeps, and which the count bound
#: keeps (the largest that the field of view can hold: 7 of 15 on this slab, where float16 rounding of the averaged
#: probabilities once moved a boundary between two pieces, 30 + 37 ml in one run, 6 + 60 ml in the other, and so
#: the 7th largest: 2.8 % of the voxels) are near-ties that rounding may flip, so the comparison leaves both out; so
#: is leaving out an end instance that fits the sequence worse than end_drop_cost (one run of CI: predict kept an
#: 18 ml foot-most instance that the float16 copy left out, 1.13 % of the voxels; without the rule 0.65 %), and so is
#: leaving out a last "L6" as the sacrum's top (one run of CI: predict left out a 0.8 ml piece below a 52 ml instance,
#: the float16 copy had no such piece and left out the 52 ml one, 1.7 % of the voxels)
NEAR_TIES = ("--set", "max_off_axis_mm=0", "--set", "min_pitch_fraction=0", "--set", "end_drop_cost=0",
             "--set", "cut_l6_is_sacrum=0")


def _summary(path) -> dict:
    with open(path, newline="") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantom_slab, tiny_trained_fold, tiny_trained_fold_1):
    """A slab of a phantom predicted with fold 0, with fold 1, and with folds 0 and 1 in one call (probabilities
    saved)."""
    base = tmp_path_factory.mktemp("ens")
    inputs = base / "in"
    inputs.mkdir()
    shutil.copy(phantom_slab, inputs / "phantom.nii.gz")
    model = tiny_trained_fold.parent
    out = {}
    for name, folds in (("f0", ["0"]), ("f1", ["1"]), ("f01", ["0", "1"])):
        out[name] = base / name
        assert _run("predict", "-i", inputs, "-o", out[name], "-m", model, "-f", *folds, "--save_probabilities",
                    "--no_preview", *NEAR_TIES) == 0
    return base, out


def test_ensembling_two_folders_equals_predicting_both_folds_at_once(runs):
    base, out = runs
    ens = base / "ens"
    assert _run("ensemble", "-i", out["f0"], out["f1"], "-o", ens, "--save_probabilities", *NEAR_TIES) == 0
    labels = {k: sitk.GetArrayFromImage(sitk.ReadImage(str(d / "phantom.nii.gz"))) for k, d in
              (("f01", out["f01"]), ("ens", ens), ("f0", out["f0"]))}
    # the spine where predicting puts it: the barely trained model's levels are near-ties everywhere, so the
    # decoder may number an instance differently on probabilities that differ by float16 rounding
    assert np.mean((labels["ens"] > 0) != (labels["f01"] > 0)) < 0.01
    joint, _ = P.load(out["f01"] / "phantom_vfprobs.npz")
    averaged, meta = P.load(ens / "phantom_vfprobs.npz")
    assert np.array_equal(joint.mask, averaged.mask)
    # one rule, the mean of the folds' probabilities: predicting rounds the folds' sum to float16 once, ensemble
    # averages the folds' float16 values, so they agree to float16 rounding
    for h in joint.heads:
        assert np.abs(joint.heads[h].astype(np.float32) - averaged.heads[h].astype(np.float32)).max() <= 2 ** -10, h
    assert [Path(e["file"]).parent for e in meta["ensemble"]] == [out["f0"], out["f1"]]
    lesions = [sitk.GetArrayFromImage(sitk.ReadImage(str(d / "phantom_lesion.nii.gz"))) > 0 for d in (ens, out["f01"])]
    assert np.mean(lesions[0] != lesions[1]) < 0.001
    assert json.loads((ens / "phantom.json").read_text())["vertebrae"]
    assert _summary(ens / "summary.csv")["phantom"]["status"] == "ok"
    # the two folds do differ: the test would not notice a fold being ignored otherwise
    single = [P.load(out[k] / "phantom_vfprobs.npz")[0] for k in ("f0", "f1")]
    assert not np.array_equal(single[0].expand("seg"), single[1].expand("seg"))


def test_one_folder_is_numbered_again_without_the_network(runs, tmp_path):
    _, out = runs
    again = tmp_path / "again"
    assert _run("ensemble", "-i", out["f0"], "-o", again, "--no_preview", *NEAR_TIES) == 0
    label = lambda d: sitk.GetArrayFromImage(sitk.ReadImage(str(d / "phantom.nii.gz")))  # noqa: E731
    # the spine where predict put it: predict numbers its own probabilities, this their float16 copy, and a barely
    # trained model's levels are near-ties everywhere (one run of CI: a whole instance numbered one level apart)
    assert np.mean((label(again) > 0) != (label(out["f0"]) > 0)) < 0.01
    assert _summary(again / "summary.csv")["phantom"]["status"] == "ok"
    argmax = tmp_path / "argmax"
    assert _run("ensemble", "-i", out["f0"], "-o", argmax, "--no_preview", "--numbering", "argmax", *NEAR_TIES) == 0
    notes = json.loads((argmax / "phantom.json").read_text())["notes"]
    assert any("per-voxel argmax" in n for n in notes)
    assert not any("per-voxel argmax" in n for n in json.loads((again / "phantom.json").read_text())["notes"])


def test_ensemble_reports_what_cannot_be_ensembled(runs, tmp_path, capsys):
    _, out = runs
    partial = tmp_path / "partial"
    shutil.copytree(out["f1"], partial)
    (partial / "phantom_vfprobs.npz").rename(partial / "other_vfprobs.npz")  # a case the other folder lacks
    status = _run("ensemble", "-i", out["f0"], partial, "-o", tmp_path / "ens")
    assert status == 1
    rows = _summary(tmp_path / "ens" / "summary.csv")
    assert rows["phantom"]["status"] == "failed" and str(partial) in rows["phantom"]["reason"]
    assert rows["other"]["status"] == "failed" and "no other_vfprobs.npz" in rows["other"]["reason"]
    assert _run("ensemble", "-i", out["f0"], partial, "-o", out["f0"]) == 2
    assert "one of the inputs" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run("ensemble", "-i", empty, empty, "-o", tmp_path / "e2") == 2
