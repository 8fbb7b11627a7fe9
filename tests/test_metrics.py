"""Evaluation metrics on hand-made cases with known answers, and the VerSe conventions on real verse004 files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage, stats
from scipy.spatial.distance import cdist

from vertebraformer_nn import centroids as C
from vertebraformer_nn import image_io
from vertebraformer_nn.evaluation import bootstrap as B
from vertebraformer_nn.evaluation import lesion_metrics as L
from vertebraformer_nn.evaluation import metrics as M

L1, L2, L3, L6 = 20, 21, 22, 25


def _box(shape, *slices, value=1, dtype=np.uint8, out=None):
    arr = np.zeros(shape, dtype) if out is None else out
    arr[tuple(slices)] = value
    return arr


# --- segmentation ------------------------------------------------------------------------------------------------

def test_dice_two_thirds_and_absent_vertebra():
    ref = _box((20, 20, 20), slice(0, 10), slice(0, 10), slice(0, 10), value=L1)
    pred = _box((20, 20, 20), slice(0, 10), slice(0, 10), slice(0, 5), value=L1)
    assert M.dice_per_label(ref, pred) == {L1: pytest.approx(2 / 3)}
    # An invented vertebra scores 0 and has no finite HD95: it lowers the Dice mean, not the HD95 mean.
    _box(None, slice(12, 16), slice(12, 16), slice(12, 16), value=L2, out=pred)
    seg = M.segmentation_metrics(ref, pred, (1.0, 1.0, 1.0))
    assert seg["per_vertebra"]["L2"] == {"code": L2, "dice": 0.0, "hd95_mm": None, "in_reference": False,
                                         "in_prediction": True}
    assert seg["dice"] == pytest.approx((2 / 3 + 0) / 2)
    assert seg["hd95_undefined"] == ["L2"]
    assert seg["hd95_mm"] == pytest.approx(seg["per_vertebra"]["L1"]["hd95_mm"])
    assert seg["binary_dice"] == pytest.approx(2 * 500 / (1000 + 500 + 64))


def test_swapped_labels_score_zero_per_vertebra_but_one_for_the_spine():
    ref = _box((10, 10, 20), slice(2, 8), slice(2, 8), slice(0, 8), value=L1)
    _box(None, slice(2, 8), slice(2, 8), slice(10, 18), value=L2, out=ref)
    pred = np.where(ref == L1, L2, np.where(ref == L2, L1, 0)).astype(np.uint8)
    seg = M.segmentation_metrics(ref, pred, (1, 1, 1))
    assert seg["dice"] == 0.0 and seg["binary_dice"] == 1.0
    assert M.binary_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3))) == 1.0  # VerSe: empty vs empty


@pytest.mark.parametrize("spacing, expected", [((1.0, 1.0, 1.0), 5.0), ((1.0, 1.0, 2.0), 10.0), ((3.0, 1.0, 1.0), 5.0)])
def test_hd95_of_shifted_boxes_is_the_physical_shift(spacing, expected):
    a = _box((20, 20, 30), slice(5, 15), slice(5, 15), slice(5, 15))
    b = _box((20, 20, 30), slice(5, 15), slice(5, 15), slice(10, 20))  # shifted 5 voxels along the last axis
    assert M.hd95(a, b, spacing) == pytest.approx(expected)
    assert M.hd95(a, a, spacing) == 0.0
    assert M.hd95(a, np.zeros_like(a), spacing) == math.inf
    assert math.isnan(M.hd95(np.zeros_like(a), np.zeros_like(a), spacing))


def test_hd95_matches_brute_force_on_random_shapes():
    rng = np.random.default_rng(3)
    spacing = (2.0, 0.8, 1.3)
    for _ in range(3):
        a = np.zeros((18, 22, 20), bool)
        b = np.zeros_like(a)
        for mask in (a, b):
            for _ in range(3):
                lo = rng.integers(0, 12, 3)
                mask[tuple(slice(int(x), int(x) + int(n)) for x, n in zip(lo, rng.integers(2, 7, 3)))] = True
        surf = [np.argwhere(m & ~ndimage.binary_erosion(m, M._FACE_NEIGHBOURS)) * spacing for m in (a, b)]
        d = cdist(surf[0], surf[1])
        brute = np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)
        assert M.hd95(a, b, spacing) == pytest.approx(brute)


# --- numbering ---------------------------------------------------------------------------------------------------

REF = {L1: [0.0, 0.0, 0.0], L2: [0.0, 0.0, -30.0], L3: [0.0, 0.0, -60.0]}


def test_identification_perfect_swapped_and_far():
    perfect = M.identification(REF, REF)
    assert (perfect["id_rate"], perfect["mean_distance_mm"], perfect["all_correct"]) == (1.0, 0.0, True)

    swapped = M.identification(REF, {L1: REF[L2], L2: REF[L1], L3: REF[L3]})
    assert swapped["hits"] == 1 and swapped["per_vertebra"]["L1"]["nearest_prediction"] == "L2"
    assert swapped["mean_distance_mm"] == pytest.approx(20.0)  # (30 + 30 + 0) / 3
    assert swapped["all_correct"] is False

    far = M.identification(REF, {L1: [25.0, 0.0, 0.0], L2: [0.0, 15.0, -30.0], L3: [0.0, 0.0, -80.0]})
    assert far["per_vertebra"]["L1"] == {"code": L1, "hit": False, "distance_mm": 25.0, "nearest_prediction": "L1"}
    assert far["per_vertebra"]["L2"]["hit"] is True  # 15 mm and the closest
    assert far["per_vertebra"]["L3"]["hit"] is True  # exactly 20 mm counts (VerSe: misses only beyond 20)
    assert far["id_rate"] == pytest.approx(2 / 3) and far["mean_distance_mm"] == pytest.approx(20.0)


def test_identification_missing_and_extra_codes():
    missing = M.identification(REF, {L1: REF[L1], L2: REF[L2]})
    assert missing["missing"] == ["L3"] and missing["id_rate"] == pytest.approx(2 / 3)
    assert missing["mean_distance_mm"] == 0.0  # over vertebrae that have a prediction of their code
    extra = M.identification(REF, {**REF, L6: [0.0, 0.0, -90.0]})
    assert extra["id_rate"] == 1.0 and extra["extra"] == ["L6"] and extra["all_correct"] is False
    empty = M.identification(REF, {})
    assert (empty["hits"], empty["id_rate"], empty["mean_distance_mm"]) == (0, 0.0, None)
    assert M.identification({}, REF)["id_rate"] is None


def test_identification_rules_differ_on_a_closer_prediction_of_another_code():
    # Predicted L6 (absent from the reference) lies 5 mm from reference L3; predicted L3 lies 12 mm from it.
    pred = {**REF, L3: [0.0, 12.0, -60.0], L6: [0.0, 0.0, -65.0]}
    design = M.identification(REF, pred, rule="closest_prediction")
    official = M.identification(REF, pred, rule="verse_code")
    assert design["per_vertebra"]["L3"]["hit"] is False and design["per_vertebra"]["L3"]["nearest_prediction"] == "L6"
    assert official["per_vertebra"]["L3"]["hit"] is True  # get_hits only compares codes present in both
    with pytest.raises(ValueError, match="unknown identification rule"):
        M.identification(REF, pred, rule="nearest")


def _spine_labels(direction=None) -> sitk.Image:
    arr = np.zeros((60, 20, 24), np.uint8)  # (z, y, x)
    for k, code in enumerate((L1, L2, L3)):
        arr[3 + 19 * k: 17 + 19 * k, 2:12, 3:15] = code  # off-centre: indices differ after a flip
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.9, 1.1, 2.0))
    image.SetOrigin((12.0, -40.0, 100.0))
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_identification_is_the_same_in_lps_and_ras_images(tmp_path):
    lps = _spine_labels()
    ras = image_io.reorient(lps, "RAS")
    assert image_io.orientation(ras) == "RAS"
    from_lps, from_ras = C.body_centroids(lps), C.body_centroids(ras)
    result = M.identification(from_lps, from_ras)
    assert result["id_rate"] == 1.0 and result["mean_distance_mm"] < 1e-6
    # VerSe files written in the axis codes of either image name the same world points.
    C.write_verse_ctd(tmp_path / "ras.json", from_ras, ras)
    C.write_verse_ctd(tmp_path / "pir.json", from_lps, lps, codes="PIR")
    a = C.read_verse_ctd(tmp_path / "ras.json", ras)
    b = C.read_verse_ctd(tmp_path / "pir.json", lps)
    assert M.identification(a, b)["mean_distance_mm"] < 0.01
    # Voxel indices would not agree: the same vertebra sits at other indices in the two images.
    assert not np.allclose(lps.TransformPhysicalPointToContinuousIndex(a[L1]),
                           ras.TransformPhysicalPointToContinuousIndex(a[L1]))


def _verse004(real_data):
    folder = real_data / "verse_sub-verse004"
    mask = image_io.read_label(folder / "sub-verse004_seg-vert_msk.nii.gz")
    return mask, C.read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", mask)


def test_verse004_official_centroids_against_themselves_and_the_estimate(real_data):
    mask, official = _verse004(real_data)
    assert sorted(official) == list(range(16, 25))  # T9-L5
    itself = M.identification(official, official)
    assert (itself["id_rate"], itself["mean_distance_mm"], itself["all_correct"]) == (1.0, 0.0, True)
    estimated = M.identification(official, C.body_centroids(mask))
    assert estimated["id_rate"] == 1.0 and estimated["all_correct"] is True
    assert 0.5 < estimated["mean_distance_mm"] < 2.0
    # The same answer from the mask reoriented to RAS (world coordinates, not indices).
    from_ras = M.identification(official, C.body_centroids(image_io.reorient(mask, "RAS")))
    assert from_ras["id_rate"] == 1.0
    assert from_ras["mean_distance_mm"] == pytest.approx(estimated["mean_distance_mm"], abs=1e-3)
    # Whole-vertebra centres of mass sit 1-2 cm back: the metric can tell a worse estimator.
    arr = sitk.GetArrayFromImage(mask)
    com = {c: np.array(mask.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in np.argwhere(arr == c).mean(0)[::-1]])) for c in official}
    assert M.identification(official, com)["mean_distance_mm"] > 5.0


def test_verse004_segmentation_against_itself_and_a_shifted_copy(real_data):
    mask, _ = _verse004(real_data)
    arr = sitk.GetArrayFromImage(mask)
    spacing = mask.GetSpacing()[::-1]
    same = M.segmentation_metrics(arr, arr, spacing)
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and len(same["per_vertebra"]) == 9
    shifted = np.roll(arr, 2, axis=0)  # two slices of 2 mm along the array's first axis
    moved = M.segmentation_metrics(arr, shifted, spacing)
    assert 0.5 < moved["dice"] < 1.0
    assert moved["hd95_mm"] == pytest.approx(2 * spacing[0], abs=0.01)


# --- lesions -----------------------------------------------------------------------------------------------------

def _lesion_case():
    """Three reference lesions; predictions: id 1 exact (0.9), id 2 false (0.8), id 3 with IoU 0.2 to lesion 3
    (0.7), id 4 with IoU 0.4 to lesion 2 and no score."""
    ref = np.zeros((40, 40, 40), np.uint8)
    for s in (slice(2, 7), slice(12, 17), slice(24, 29)):
        ref[s, s, s] = 1
    pred = np.zeros(ref.shape, np.int32)
    pred[2:7, 2:7, 2:7] = 1
    pred[33:36, 33:36, 33:36] = 2
    pred[24:29, 24:29, 24] = 3  # 25 of 125 voxels
    pred[12:17, 12:17, 12:14] = 4  # 50 of 125 voxels
    return ref, pred, {1: 0.9, 2: 0.8, 3: 0.7}


def test_lesion_instances_ious_and_matching():
    ref, pred, scores = _lesion_case()
    inst = L.reference_instances(ref)
    assert inst.max() == 3
    ref_ids, pred_ids, iou = L.instance_ious(inst, pred)
    assert list(pred_ids) == [1, 2, 3, 4]
    assert iou[0, 0] == 1.0 and iou[:, 1].max() == 0.0
    assert iou[2, 2] == pytest.approx(0.2) and iou[1, 3] == pytest.approx(0.4)
    result = L.case_lesion_metrics(inst, pred, scores, thresholds=(0.1, 0.3, 0.5))
    assert [p["id"] for p in result["ranked_predictions"]] == [1, 2, 3, 4]  # id 4 unscored: ranks last (0)
    t01, t03, t05 = (result["thresholds"][k] for k in ("0.1", "0.3", "0.5"))
    assert t01["tp_ranked"] == [True, False, True, True] and (t01["tp"], t01["fp"], t01["fn"]) == (3, 1, 0)
    assert t03["tp_ranked"] == [True, False, False, True]
    assert t05["tp_ranked"] == [True, False, False, False]
    # AP at 0.1: precision 1, 1/2, 2/3, 3/4 -> envelope 1, 3/4, 3/4, 3/4 at the TPs 1, 3, 4 -> (1 + .75 + .75) / 3
    assert t01["ap"] == pytest.approx((1 + 0.75 + 0.75) / 3)
    assert (t01["precision"], t01["recall"]) == (0.75, 1.0)
    assert t03["ap"] == pytest.approx((1 + 0.5) / 3) and t03["recall"] == pytest.approx(2 / 3)
    assert t05["ap"] == pytest.approx(1 / 3)


def test_greedy_matching_gives_a_reference_lesion_to_the_higher_score_only():
    iou = np.array([[0.6, 0.9]])  # one reference lesion, two predictions overlapping it
    assert list(L.greedy_match(iou, L.rank([0.8, 0.3]), 0.5)) == [0, -1]  # score order, not IoU order
    assert list(L.greedy_match(iou, L.rank([0.3, 0.8]), 0.5)) == [0, -1]  # the ranked first is prediction 1


def test_ap_edge_cases():
    assert L.detection_curve([True, True], 2)["ap"] == 1.0
    assert L.detection_curve([False, True], 1)["ap"] == 0.5
    assert L.detection_curve([], 2)["ap"] == 0.0 and np.isnan(L.detection_curve([], 2)["precision"])
    assert np.isnan(L.detection_curve([False], 0)["ap"])


def test_the_ap_ranks_every_candidate_and_precision_recall_stay_at_the_operating_point():
    """Hand computation: the case of ``_lesion_case`` plus a faint candidate 5 (score 0.2) on reference lesion 2.
    Written lesions: 1 and 2 only (the threshold's); candidates: 1, 2, 3, 5 (4 dropped)."""
    ref, pred, _ = _lesion_case()
    inst = L.reference_instances(ref)
    candidates = np.where(pred == 4, 0, pred)
    candidates[12:17, 12:17, 12:17] = 5  # exactly reference lesion 2
    written = np.where(np.isin(pred, (1, 2)), pred, 0)
    record = L.case_detection(inst, written, {1: 0.9, 2: 0.8}, candidates, {1: 0.9, 2: 0.8, 3: 0.7, 5: 0.2},
                              thresholds=(0.1, 0.3))
    assert record["ranking"] == "candidates" and (record["n_predicted"], record["n_candidates"]) == (2, 4)
    t01, t03 = record["thresholds"]["0.1"], record["thresholds"]["0.3"]
    # operating point: 1 TP, 1 FP, 2 FN at either IoU
    assert (t01["tp"], t01["fp"], t01["fn"], t01["precision"], t01["recall"]) == (1, 1, 2, 0.5, pytest.approx(1 / 3))
    # candidates ranked 1 (TP), 2 (FP), 3 (TP at 0.1 only), 5 (TP): precision 1, 1/2, 2/3, 3/4
    # IoU 0.1: envelope at the TPs 1, 3/4, 3/4 -> AP (1 + .75 + .75) / 3; IoU 0.3: 1 and 2/4 -> (1 + .5) / 3
    assert t01["ap"] == pytest.approx((1 + 0.75 + 0.75) / 3) and t01["candidate_recall"] == 1.0
    assert t03["ap"] == pytest.approx((1 + 0.5) / 3) and t03["candidate_recall"] == pytest.approx(2 / 3)
    # the written lesions alone would give AP 1/3: the faint candidates are what raise it
    alone = L.case_detection(inst, written, {1: 0.9, 2: 0.8}, thresholds=(0.1,))
    assert alone["ranking"] == "lesions" and alone["thresholds"]["0.1"]["ap"] == pytest.approx(1 / 3)
    # pooling: the AP over the candidates, precision and recall over the written lesions
    cases = [record, alone]
    ranked = L.pooled_detection(*L.pooled_inputs(cases, 0.1, ranking=True))
    written_only = L.pooled_detection(*L.pooled_inputs(cases, 0.1))
    # ranked: 0.9 TP, 0.9 TP, 0.8 FP, 0.8 FP, 0.7 TP, 0.2 TP over 6 reference lesions: precision 1, 1, 2/3, 2/4,
    # 3/5, 4/6, made monotone from the right at the TPs 1, 1, 4/6, 4/6
    assert float(ranked["ap"]) == pytest.approx((1 + 1 + 4 / 6 + 4 / 6) / 6)
    assert float(written_only["precision"]) == 0.5 and float(written_only["recall"]) == pytest.approx(2 / 6)


def test_weighted_pooling_equals_the_expanded_case_list():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(4):
        n = int(rng.integers(1, 6))
        scores = np.round(rng.random(n), 1)  # ties across cases on purpose
        tp = rng.random(n) < 0.6
        cases.append({"n_reference": int(tp.sum() + rng.integers(0, 2)),
                      "ranked_predictions": [{"score": float(s)} for s in scores],
                      "thresholds": {"0.1": {"tp_ranked": [bool(v) for v in tp]}}})
    tp, owner, n_ref = L.pooled_inputs(cases, 0.1)
    weights = np.array([[2.0, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    pooled = L.pooled_detection(tp, owner, n_ref, weights)
    for row, w in enumerate(weights):
        expanded = [c for c, k in zip(cases, w) for _ in range(int(k))]
        expected = L.pooled_detection(*L.pooled_inputs(expanded, 0.1))
        for metric in ("precision", "recall", "ap"):
            assert pooled[metric][row] == pytest.approx(float(expected[metric]))


# --- bootstrap ---------------------------------------------------------------------------------------------------

def test_bootstrap_mean_interval_contains_the_mean_and_matches_scipy():
    values = list(np.random.default_rng(1).normal(0.8, 0.1, 30))
    est = B.mean_interval(values, [f"p{k}" for k in range(30)], n_resamples=1000, seed=0)
    low, high = est["ci"]
    assert low < est["value"] < high and est["method"] == "BCa"
    assert est["value"] == pytest.approx(np.mean(values))
    direct = stats.bootstrap((np.array(values),), np.mean, n_resamples=1000, method="BCa",
                             rng=np.random.default_rng(0)).confidence_interval
    assert (low, high) == pytest.approx((direct.low, direct.high))


def test_bootstrap_resamples_patients_not_cases():
    # Two patients with two cases each: the estimate is the mean over cases; cases of a patient move together,
    # so no resample can mix 1.0 of patient a with 0.0 of patient a.
    est = B.mean_interval([1.0, 1.0, 0.0, 0.0], ["a", "a", "b", "b"], n_resamples=1000)
    assert est["value"] == 0.5 and est["n_patients"] == 2 and est["n_cases"] == 4
    assert B.weights_from_indices(np.array([[0, 0], [1, 0]]), 2).tolist() == [[2, 0], [1, 1]]


def test_bootstrap_degenerate_inputs_do_not_crash():
    one = B.mean_interval([0.7], ["a"], n_resamples=1000)
    assert one["ci"] == [0.7, 0.7] and one["method"] == "degenerate" and "fewer than 2" in one["note"]
    equal = B.mean_interval([0.5, 0.5, 0.5], ["a", "b", "c"], n_resamples=1000)
    assert equal["ci"] == [0.5, 0.5] and equal["method"] == "degenerate"
    none = B.mean_interval([None, float("nan")], ["a", "b"], n_resamples=1000)
    assert none["value"] is None and none["ci"] is None and none["n_undefined"] == 2
    off = B.mean_interval([0.1, 0.9], ["a", "b"], n_resamples=0)
    assert off["value"] == 0.5 and off["ci"] is None


def test_bootstrap_of_a_statistic_undefined_in_some_resamples_falls_back_to_percentiles():
    # Pooled recall: only two of eight patients have reference lesions, so some resamples have none.
    num, den = [1, 0, 0, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 0, 0, 3]
    est = B.ratio_interval(num, den, list("abcdefgh"), n_resamples=1000)
    assert est["value"] == pytest.approx(3 / 5)
    assert est["method"] == "percentile" and "defined" in est["note"]
    assert est["ci"][0] <= est["value"] <= est["ci"][1]
