"""Lesion candidates, lesions and their vertebra (inference/lesion_candidates.py, lesions.py, lesion_levels.py):
synthetic probability maps (touching blobs with their own peaks, a faint lesion, noise), scores, extents, ids, the
two maps, and the level of a lesion inside, across and outside the vertebrae."""
from dataclasses import replace

import numpy as np
import pytest

from vertebraformer_nn import labels
from vertebraformer_nn.inference import postprocessing as PP
from vertebraformer_nn.inference.lesion_candidates import find_candidates
from vertebraformer_nn.inference.lesion_levels import NEAREST_SEARCH_MM, lesion_levels
from vertebraformer_nn.inference.lesions import (find_lesions, found_lesions, number_candidates,
                                               written_lesions)

SPACING = (1.5, 0.8, 0.9)  # mm per array axis
VOXEL_MM3 = 1.5 * 0.8 * 0.9
ISO = (1.0, 1.0, 1.0)


def _params(**values) -> PP.Postprocessing:
    return replace(PP.DEFAULTS, **values)


def _blob(shape, centre, sigma, peak) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    return (peak * np.exp(-d2 / (2 * sigma ** 2))).astype(np.float32)


def _volume():
    """Vertebrae L1 (20) on rows 0-9 and L2 (21) on rows 10-19 of a 20x30x30 grid, lesions planted by the tests."""
    vertebrae = np.zeros((20, 30, 30), np.uint8)
    vertebrae[0:10, 5:25, 5:25] = 20
    vertebrae[10:20, 5:25, 5:25] = 21
    return vertebrae, np.zeros(vertebrae.shape, np.float32)


# ------------------------------------------------------------------------------------------------ candidates
def test_two_touching_blobs_with_their_own_peaks_are_two_candidates():
    shape = (24, 24, 48)
    prob = np.maximum(_blob(shape, (12, 12, 16), 3.0, 0.9), _blob(shape, (12, 12, 28), 3.0, 0.6))
    saddle = prob[12, 12, 16:29].min()  # the valley on the line between the peaks
    assert prob[12, 12, 22] == pytest.approx(saddle, abs=0.02) and 0.05 < saddle < 0.7 * 0.6  # touching, split
    found = sorted(find_candidates(prob, ISO), key=lambda c: -c.peak)
    assert [round(c.peak, 2) for c in found] == [0.9, 0.6]
    assert found[0].centre_index[2] < 20 < found[1].centre_index[2]
    # a split ratio below saddle / lower peak keeps them one candidate, with the higher peak
    merged = find_candidates(prob, ISO, _params(lesion_split_ratio=0.9 * saddle / 0.6))
    assert len(merged) == 1 and merged[0].peak == pytest.approx(0.9, abs=1e-3)


def test_a_ripple_on_a_plateau_is_one_candidate():
    prob = _blob((20, 20, 20), (10, 10, 10), 4.0, 0.8)
    prob[10, 10, 13] += 0.02  # a second local maximum a few percent above its surroundings
    prob[10, 10, 14] -= 0.02
    assert len(find_candidates(prob, ISO)) == 1


def test_a_region_too_large_for_a_lesion_is_searched_above_a_raised_floor(monkeypatch):
    """A weak head's map above the floor over a whole region: the peak search runs only on pieces of at most
    MAX_COMPONENT_ML, found by raising the floor; a region too large even at the highest floor is one candidate."""
    import vertebraformer_nn.inference.lesion_candidates as LC

    shape = (30, 30, 60)
    prob = np.full(shape, 0.08, np.float32)  # the whole grid above the floor (0.05): one component
    prob = np.maximum(prob, np.maximum(_blob(shape, (15, 15, 15), 2.5, 0.9), _blob(shape, (15, 15, 45), 2.5, 0.7)))
    monkeypatch.setattr(LC, "MAX_COMPONENT_ML", 2.0)  # 2000 voxels at 1 mm
    searched = []
    original = LC._component_candidates
    monkeypatch.setattr(LC, "_component_candidates",
                        lambda p, land, inside, *a: searched.append(int(inside.sum())) or original(p, land, inside, *a))
    found = sorted(find_candidates(prob, ISO), key=lambda c: -c.peak)
    assert [round(c.peak, 2) for c in found] == [0.9, 0.7]  # both lesions, as without the plateau
    assert max(searched) <= 2000
    # a map at 0.99 everywhere: no floor separates anything; one candidate, the whole grid, without a peak search
    flat = find_candidates(np.full(shape, 0.99, np.float32), ISO)
    assert len(flat) == 1 and flat[0].voxels == np.prod(shape)


def test_a_faint_lesion_is_a_candidate_not_a_lesion_and_keeps_its_id_in_both_maps():
    vertebrae, prob = _volume()
    prob[2:6, 8:12, 8:13] = 0.7  # A: 80 voxels inside L1
    prob[3, 9, 9] = 0.95  # A's peak
    prob[12:16, 8:12, 8:12] = 0.2  # B: faint, 64 voxels inside L2
    params = _params(lesion_min_volume_mm3=30.0)  # A and B are 86 and 69 mm3, under the default
    candidate_map, rows = find_lesions(prob, vertebrae, SPACING, params)
    assert [(r["id"], r["lesion"], r["level_name"]) for r in rows] == [(1, True, "L1"), (2, False, "L2")]
    assert rows[1]["score"] == pytest.approx(0.2) and rows[1]["voxels"] == 64
    lesion_map, lesions = written_lesions(candidate_map, rows)
    assert lesion_map.dtype == np.uint8 and [r["id"] for r in lesions] == [1]
    assert np.array_equal(lesion_map == 1, candidate_map == 1) and not lesion_map[candidate_map == 2].any()
    # at a lower threshold the faint one is a lesion too, with the same extent
    candidate_map, rows = find_lesions(prob, vertebrae, SPACING, replace(params, lesion_threshold=0.1))
    lesion_map, lesions = written_lesions(candidate_map, rows)
    assert [r["id"] for r in lesions] == [1, 2] and int((lesion_map == 2).sum()) == 64


def test_noise_below_the_floor_is_nothing_and_noise_above_it_ranks_below_a_lesion():
    rng = np.random.default_rng(0)
    assert find_lesions(rng.random((30, 30, 30), dtype=np.float32) * 0.04, None, ISO)[1] == []
    prob = rng.random((30, 30, 30), dtype=np.float32) * 0.3
    prob = np.maximum(prob, _blob(prob.shape, (15, 15, 15), 3.0, 0.9))
    _, rows = find_lesions(prob, None, ISO, _params(lesion_min_volume_mm3=5.0))
    assert rows[0]["peak"] == pytest.approx(0.9, abs=0.01) and rows[0]["lesion"]
    assert all(r["score"] < 0.31 and not r["lesion"] for r in rows[1:])
    # smoothing joins the speckle into fewer, smoother peaks
    _, smoothed = find_lesions(prob, None, ISO, _params(lesion_smoothing_mm=2.0, lesion_min_volume_mm3=5.0))
    assert 1 <= len(smoothed) < len(rows) and smoothed[0]["peak"] == pytest.approx(0.9, abs=0.01)


def test_at_most_the_limit_of_candidates_is_kept_the_lesions_and_best_first():
    rng = np.random.default_rng(0)
    prob = np.zeros((30, 30, 30), np.float32)
    prob[1::4, 1::4, 1::4] = rng.uniform(0.1, 0.45, size=(8, 8, 8))  # 512 isolated faint candidates
    prob[13, 13, 13] = 0.9  # and one lesion
    params = _params(lesion_min_volume_mm3=0.0)
    candidate_map, rows, found = found_lesions(prob, None, ISO, params)
    assert found == len(rows) == 512
    capped_map, capped = number_candidates(find_candidates(prob, ISO, params), prob.shape, None, ISO, params,
                                           limit=10)
    assert [r["id"] for r in capped] == list(range(1, 11)) and capped_map.max() == 10
    assert capped[0]["lesion"] and [r["score"] for r in capped] == [r["score"] for r in rows[:10]]


def test_extent_is_a_fraction_of_the_peak_and_connected_to_it():
    prob = _blob((21, 21, 21), (10, 10, 10), 3.0, 0.6)
    prob[0:3, 0:3, 0:3] = 0.4  # above half the peak but apart from it (a candidate of its own)
    for fraction in (0.3, 0.5, 0.7):
        found = find_candidates(prob, ISO, _params(lesion_extent_fraction=fraction, lesion_min_volume_mm3=0.0))
        main = max(found, key=lambda c: c.peak)
        inside = np.zeros(prob.shape, bool)
        inside[main.box][main.mask] = True
        expected = prob >= fraction * 0.6
        expected[0:3, 0:3, 0:3] = False
        assert np.array_equal(inside, expected), fraction


def test_scores_max_mean_integrated_and_the_ranking_they_give():
    prob = np.zeros((20, 20, 40), np.float32)
    prob[2:4, 2:4, 2:4] = 0.9  # small and confident: 8 voxels
    prob[8:16, 8:16, 20:36] = 0.4  # large and faint: 1024 voxels
    prob[10, 10, 25] = 0.45
    params = _params(lesion_min_volume_mm3=0.0, lesion_threshold=0.3)
    small, large = sorted(find_candidates(prob, SPACING, params), key=lambda c: c.voxels)
    assert (small.voxels, large.voxels) == (8, 1024)
    assert small.peak == pytest.approx(0.9) and small.mean == pytest.approx(0.9)
    assert small.integrated_mm3 == pytest.approx(0.9 * 8 * VOXEL_MM3, rel=1e-5)
    assert large.mean == pytest.approx((0.4 * 1023 + 0.45) / 1024, rel=1e-5)
    assert small.volume_mm3 == pytest.approx(8 * VOXEL_MM3) and small.bbox_index() == [[2, 3], [2, 3], [2, 3]]
    firsts = {kind: find_lesions(prob, None, SPACING, replace(params, lesion_score=kind))[1][0]["voxels"]
              for kind in PP.LESION_SCORES}
    assert firsts == {"max": 8, "mean": 8, "integrated": 1024}


def test_lesions_take_the_first_ids_whatever_the_score_ranks():
    prob = np.zeros((20, 20, 40), np.float32)
    prob[2:4, 2:4, 2:4] = 0.9  # a lesion (peak above 0.5), small
    prob[8:16, 8:16, 20:36] = 0.4  # a candidate only, large: first by integrated probability
    params = _params(lesion_min_volume_mm3=0.0, lesion_score="integrated")
    candidate_map, rows = find_lesions(prob, None, SPACING, params)
    assert [(r["id"], r["lesion"], r["voxels"]) for r in rows] == [(1, True, 8), (2, False, 1024)]
    assert rows[1]["score"] > rows[0]["score"]  # the AP ranks by score; ids put the written lesions first


def test_minimum_volume_in_mm3_and_26_connectivity():
    vertebrae, prob = _volume()
    prob[1:3, 1:3, 1:3] = 0.8  # 8 voxels = 8.64 mm3
    prob[12:16, 1:4, 1:4] = 0.8  # 36 voxels
    prob[4:7, 20:23, 20:23] = 0.8
    prob[7:10, 23:26, 23:26] = 0.8  # touches the cube above only at a corner: one candidate of 54 voxels
    _, rows = find_lesions(prob, vertebrae, SPACING, _params(lesion_min_volume_mm3=0.0))
    assert sorted(r["voxels"] for r in rows) == [8, 36, 54]
    _, kept = find_lesions(prob, vertebrae, SPACING, _params(lesion_min_volume_mm3=9.0))
    assert sorted(r["voxels"] for r in kept) == [36, 54]


def test_specks_under_the_minimum_volume_change_nothing():
    """A briefly trained head's map: thousands of specks above the floor beside one lesion, each too small to be
    a candidate, leave the lesion's row and map as they are without them."""
    vertebrae, prob = _volume()
    prob[12:16, 8:12, 8:12] = 0.8
    alone = find_lesions(prob, vertebrae, SPACING, _params(lesion_min_volume_mm3=9.0))
    specks = prob.copy()
    at = np.random.default_rng(0).integers(0, prob.shape, size=(600, 3))
    at = at[np.all(np.abs(at - [14, 10, 10]) > 3, axis=1)]  # none touches the lesion
    specks[tuple(at.T)] = 0.6
    candidate_map, rows = find_lesions(specks, vertebrae, SPACING, _params(lesion_min_volume_mm3=9.0))
    assert rows == alone[1] and len(rows) == 1
    np.testing.assert_array_equal(candidate_map, alone[0])


def test_no_lesion_gives_empty_maps():
    vertebrae, prob = _volume()
    candidate_map, rows = find_lesions(prob, vertebrae, SPACING)
    lesion_map, lesions = written_lesions(candidate_map, rows)
    assert rows == [] and lesions == [] and not candidate_map.any() and not lesion_map.any()


def test_bad_inputs_are_named():
    vertebrae, prob = _volume()
    with pytest.raises(ValueError, match="differ in shape"):
        find_lesions(prob, vertebrae[:5], SPACING)
    with pytest.raises(ValueError, match="spacing"):
        find_lesions(prob, vertebrae, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        find_lesions(prob[0], vertebrae[0], SPACING)
    with pytest.raises(PP.PostprocessingError, match="lesion_threshold = 0.03: must not lie below "
                                                     "lesion_candidate_floor"):
        _params(lesion_threshold=0.03)
    with pytest.raises(PP.PostprocessingError, match="lesion_score = 'sum' must be one of max, mean, integrated"):
        PP.coerce("lesion_score", "sum")


# ------------------------------------------------------------------------------------------------ levels
def test_a_lesion_inside_one_vertebra_has_its_level_in_verse_codes():
    vertebrae, _ = _volume()
    mask = np.ones((3, 3, 3), bool)
    level = lesion_levels(vertebrae, (slice(2, 5), slice(8, 11), slice(8, 11)), mask, SPACING)
    assert (level["level_code"], level["level_name"]) == (20, "L1") and level["nearest"] is None
    assert level["levels"] == [{"code": 20, "name": "L1", "fraction": 1.0}]


def test_a_lesion_straddling_two_vertebrae_lists_both_and_takes_the_larger_share():
    vertebrae, prob = _volume()
    prob[8:14, 15:19, 15:19] = 0.9  # rows 8-9 in L1 (32 voxels), rows 10-13 in L2 (64)
    _, rows = find_lesions(prob, vertebrae, SPACING)
    (row,) = rows
    assert (row["level_code"], row["level_name"]) == (21, "L2")
    assert row["levels"] == [{"code": 20, "name": "L1", "fraction": pytest.approx(1 / 3, abs=1e-4)},
                             {"code": 21, "name": "L2", "fraction": pytest.approx(2 / 3, abs=1e-4)}]
    # an even split goes to the upper vertebra, head to foot in the anatomical order: T13 (28) above L1 (20)
    vertebrae = np.zeros((4, 4, 4), np.uint8)
    vertebrae[:2], vertebrae[2:] = labels.VERSE_CODE["T13"], labels.VERSE_CODE["L1"]
    level = lesion_levels(vertebrae, (slice(0, 4),) * 3, np.ones((4, 4, 4), bool), ISO)
    assert level["level_name"] == "T13" and [v["name"] for v in level["levels"]] == ["T13", "L1"]


def test_a_lesion_outside_every_vertebra_has_no_level_and_names_the_nearest():
    vertebrae, prob = _volume()
    prob[16:19, 26:29, 26:29] = 0.8  # beside L2: columns 26-28, the vertebra ends at column 24; 29 mm3
    _, rows = find_lesions(prob, vertebrae, SPACING, _params(lesion_min_volume_mm3=20.0))
    (row,) = rows
    assert (row["level_code"], row["level_name"], row["levels"]) == (0, None, [])
    assert row["nearest"] == {"code": 21, "name": "L2", "distance_mm": round(float(np.hypot(2 * 0.8, 2 * 0.9)), 2)}
    far = np.zeros((10, 10, 80), np.uint8)
    far[:, :, :5] = 22
    gone = int(np.ceil(NEAREST_SEARCH_MM)) + 10
    assert lesion_levels(far, (slice(4, 6), slice(4, 6), slice(gone, gone + 2)), np.ones((2, 2, 2), bool),
                         ISO)["nearest"] is None
    assert lesion_levels(None, (slice(0, 1),) * 3, np.ones((1, 1, 1), bool), ISO)["level_code"] == 0


def test_a_bright_spot_far_from_every_vertebra_is_a_candidate_not_a_lesion():
    vertebrae = np.zeros((10, 10, 80), np.uint8)
    vertebrae[:, :, :10] = 20
    prob = np.zeros(vertebrae.shape, np.float32)
    prob[4:7, 4:7, 60:63] = 0.95  # 50 mm from L1: a femoral head, not the spine
    prob[4:7, 4:7, 4:7] = 0.7  # inside L1
    candidate_map, rows = find_lesions(prob, vertebrae, ISO, _params(lesion_min_volume_mm3=0.0))
    assert [(r["id"], r["lesion"], r["level_name"], r["peak"]) for r in rows] == [(1, True, "L1", 0.7),
                                                                                 (2, False, None, 0.95)]
    assert written_lesions(candidate_map, rows)[0][4:7, 4:7, 60:63].max() == 0
    assert [r["lesion"] for r in find_lesions(prob, None, ISO, _params(lesion_min_volume_mm3=0.0))[1]] == [True] * 2
    no_spine = np.zeros_like(vertebrae)  # no vertebra found: nearness cannot be judged, nothing is dropped
    assert [r["lesion"] for r in find_lesions(prob, no_spine, ISO, _params(lesion_min_volume_mm3=0.0))[1]] == [True] * 2


def test_thin_arrays_that_cc3d_mislabels_as_booleans():
    prob = np.array([[[0.9, 0.0, 0.8]]], np.float32)  # cc3d 4.1's boolean path fails on one row [1, 0, 1]
    _, rows = find_lesions(prob, None, ISO, _params(lesion_min_volume_mm3=0.0))
    assert [r["peak"] for r in rows] == [pytest.approx(0.9), pytest.approx(0.8)]


# ------------------------------------------------------------------------------------------------ validation
def test_validation_compares_candidate_values_by_ap_and_the_threshold_by_f1():
    """determine-postprocessing's lesion criteria (inference/lesion_validation.py) on one synthetic case: reference
    lesions 1 and 2, a confident response on 1 and a faint one (0.2) on 2, a faint false one (0.15) elsewhere."""
    from vertebraformer_nn.inference.lesion_validation import LesionScorer, criterion, pooled_score

    shape = (20, 20, 40)
    reference = np.zeros(shape, np.uint8)
    reference[4:8, 4:8, 4:8] = 1
    reference[4:8, 4:8, 20:24] = 1
    prob = np.zeros(shape, np.float32)
    prob[4:8, 4:8, 4:8] = 0.9
    prob[4:8, 4:8, 20:24] = 0.2
    prob[12:16, 12:16, 30:34] = 0.15
    scorer = LesionScorer(prob, reference, ISO)
    at = {t: scorer.record(_params(lesion_threshold=t, lesion_min_volume_mm3=10.0)) for t in (0.1, 0.5)}
    assert [at[t]["n_predicted"] for t in (0.1, 0.5)] == [3, 1] and at[0.5]["n_candidates"] == 3
    # the AP ranks the same candidates at either threshold: 0.9 TP, 0.2 TP, 0.15 FP -> 1
    assert pooled_score("lesion_candidate_floor", [at[0.5]])[0] == pytest.approx(1.0)
    assert pooled_score("lesion_candidate_floor", [at[0.1]]) == pooled_score("lesion_candidate_floor", [at[0.5]])
    # the threshold moves F1 = 2TP / (2TP + FP + FN): 0.1 -> 4/5, 0.5 -> 2/3
    assert criterion("lesion_threshold") == "lesion F1" and criterion("lesion_score") == "lesion AP"
    assert pooled_score("lesion_threshold", [at[0.1]])[0] == pytest.approx(4 / 5)
    assert pooled_score("lesion_threshold", [at[0.5], None]) == (pytest.approx(2 / 3), [pytest.approx(2 / 3)])
    # a case without reference lesions scores minus its false positives (written for F1, candidates for AP)
    empty = LesionScorer(prob, np.zeros(shape, np.uint8), ISO).record(_params(lesion_min_volume_mm3=10.0))
    assert pooled_score("lesion_threshold", [at[0.5], empty])[1][1] == -1.0
    assert pooled_score("lesion_score", [at[0.5], empty])[1][1] == -3.0
