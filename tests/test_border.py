"""The evaluation's border rule (``evaluation.border``): vertebrae cut by the field of view are the reference's ignore
region and are scored neither way, in the pure rule and through ``evaluate`` on a raw dataset (nnU-Net's ignore
label) and on a label folder (value 255). Before the rule, such a reference was refused (``ignore`` is no VerSe
code) and a predicted cut vertebra counted as an extra."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import centroids, image_io, labels
from vertebraformer_nn.evaluation.border import apply_border_rule
from vertebraformer_nn.evaluation.evaluate import evaluate
from vertebraformer_nn.evaluation.references import IGNORE_VALUE

T12, L1, L2, L3 = 19, 20, 21, 22
SHAPE = (48, 16, 16)  # (z, y, x); RAS: z grows towards the head, so index 47 is the head border
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
WHOLE = {L3: slice(2, 14), L2: slice(17, 29), L1: slice(32, 44)}
CUT = slice(45, 48)  # T12, cut by the head border: three slices of it are in the image


def _map(extra: dict = None, values=WHOLE) -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    for code, z in {**values, **(extra or {})}.items():
        arr[z, 3:13, 3:13] = code
    return arr


# ------------------------------------------------------------------------------------------------ the pure rule
def test_a_predicted_cut_vertebra_is_not_scored_and_its_voxels_are_left_out():
    reference = _map()
    ignore = _map({T12: CUT}) == T12
    predicted = _map({T12: slice(44, 48)})  # one slice larger than the reference's cut vertebra
    scored = apply_border_rule(reference, ignore, predicted, superior_axis=0)
    assert scored.not_scored == [T12] and scored.ignore_voxels == 300
    assert not np.isin(scored.prediction, [T12]).any()
    np.testing.assert_array_equal(scored.reference, reference)


def test_only_what_lies_mostly_in_the_ignore_region_or_is_cut_there_goes():
    reference = _map()
    ignore = _map({T12: CUT}) == T12
    # L1 predicted with the cut vertebra's voxels too: it mostly covers a whole vertebra, so it stays scored
    grown = _map({L1: slice(32, 48)})
    scored = apply_border_rule(reference, ignore, grown, superior_axis=0)
    assert scored.not_scored == [] and (scored.prediction[CUT] == 0).all()
    assert (scored.prediction == L1).sum() == 1300  # slices 32-44 (13 x 100 voxels): the ignore region goes
    # a T12 well inside the image, away from the border and the ignore region: an extra, scored as such
    inside = _map({T12: slice(14, 17)})
    assert apply_border_rule(reference, ignore, inside, superior_axis=0).not_scored == []
    # a predicted vertebra touching the other (foot) border where the reference ignores nothing: scored
    foot = _map({T12: slice(0, 2)})
    assert apply_border_rule(reference, ignore, foot, superior_axis=0).not_scored == []
    # without an ignore region nothing changes at all
    plain = apply_border_rule(reference, np.zeros(SHAPE, bool), _map({T12: CUT}), superior_axis=0)
    assert plain.not_scored == [] and np.array_equal(plain.prediction, _map({T12: CUT}))


def test_mostly_in_the_ignore_region_is_enough_off_the_border():
    ignore = np.zeros(SHAPE, bool)
    ignore[20:30] = True  # an ignore region in the middle (a reference may mark any region)
    predicted = _map(values={L2: slice(18, 29)})  # 10 of its 11 slices inside it
    scored = apply_border_rule(_map(values={}), ignore, predicted, superior_axis=0)
    assert scored.not_scored == [L2]


# ------------------------------------------------------------------------------------------------ through evaluate
def _image(arr) -> sitk.Image:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((1.5, 1.5, 2.0))
    image.SetDirection(RAS)
    return image


def _prediction_folder(folder, predicted):
    folder.mkdir(parents=True)
    image = _image(predicted)
    image_io.write_image(image, folder / "case1.nii.gz")
    centroids.write_verse_ctd(folder / "case1_ctd.json", centroids.body_centroids(image), image)


def _check(case):
    seg, num = case["segmentation"], case["numbering"]
    assert case["status"] == "ok", case["problems"]
    assert seg["dice"] == 1.0 and seg["binary_dice"] == 1.0 and "T12" not in seg["per_vertebra"]
    assert (num["n_reference"], num["hits"], num["extra"], num["all_correct"]) == (3, 3, [], True)
    assert case["border"]["predicted_not_scored"] == ["T12"] and case["border"]["ignore_voxels"] == 300


def test_raw_dataset_with_nnunets_ignore_label(tmp_path):
    root = tmp_path / "Dataset997_Border"
    training = labels.verse_to_training(_map())
    training[_map({T12: CUT}) == T12] = labels.IGNORE_LABEL
    image_io.write_image(_image(training), root / "labelsTr" / "case1.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "labels": {**labels.dataset_json_labels(), "ignore": labels.IGNORE_LABEL}, "file_ending": ".nii.gz",
        "numTraining": 1, "verse_codes": labels.dataset_json_verse_codes(),
        "case_info": {"case1": {"domain": "verse", "subject": "s1", "annotations": {"lesion_mask": False},
                                "centroids_mm": {}}}}))
    _prediction_folder(tmp_path / "pred", _map({T12: slice(44, 48)}))
    report = evaluate(root, tmp_path / "pred", n_resamples=0)
    _check(report["cases"]["case1"])
    assert report["settings"]["reference_ignore_value"] == labels.IGNORE_LABEL


def test_label_folder_with_the_ignore_value_and_centroids_of_cut_vertebrae(tmp_path):
    ref = _map({IGNORE_VALUE: CUT})
    image = _image(ref)
    image_io.write_image(image, tmp_path / "ref" / "case1.nii.gz")
    truth = centroids.body_centroids(_image(_map({T12: CUT})))  # a centroid file that still names the cut T12
    centroids.write_verse_ctd(tmp_path / "ref" / "case1_ctd.json", truth, image)
    _prediction_folder(tmp_path / "pred", _map({T12: CUT}))
    case = evaluate(tmp_path / "ref", tmp_path / "pred", n_resamples=0)["cases"]["case1"]
    _check(case)
    assert case["border"]["reference_centroids_dropped"] == ["T12"]


def test_a_cut_vertebra_predicted_where_the_reference_has_none_is_still_an_extra(tmp_path):
    """Without an ignore region (a reference that set cut vertebrae to background) the rule cannot know."""
    image_io.write_image(_image(_map()), tmp_path / "ref" / "case1.nii.gz")
    _prediction_folder(tmp_path / "pred", _map({T12: CUT}))
    case = evaluate(tmp_path / "ref", tmp_path / "pred", n_resamples=0)["cases"]["case1"]
    assert case["numbering"]["extra"] == ["T12"] and case["segmentation"]["dice"] == pytest.approx(0.75)
    assert case["border"] == {"ignore_voxels": 0, "predicted_not_scored": [], "reference_centroids_dropped": []}
