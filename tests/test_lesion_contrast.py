"""Lesion candidates judged on the CT (inference/lesion_contrast.py): contrast, factor, extent, disjointness."""
import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn.inference import postprocessing as PP
from vertebraformer_nn.inference.case_outputs import write_case_outputs
from vertebraformer_nn.inference.lesion_candidates import Candidate
from vertebraformer_nn.inference.lesion_contrast import UNKNOWN_FACTOR, judge_on_ct
from vertebraformer_nn.inference.lesions import found_lesions

SHAPE = (40, 40, 40)
SPACING = (1.0, 1.0, 1.0)


def _ball(centre, radius, shape=SHAPE):
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _scan(seed=0, noise=30.0):
    """A vertebra (label 20) of trabecular bone at 200 HU in soft tissue at 40 HU, with noise."""
    rng = np.random.default_rng(seed)
    vertebrae = np.zeros(SHAPE, np.uint8)
    vertebrae[4:36, 4:36, 4:36] = 20
    hu = np.where(vertebrae > 0, 200.0, 40.0) + rng.normal(0, noise, SHAPE)
    return hu.astype(np.float32), vertebrae


def _candidate(mask, prob):
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(mask))
    return Candidate(box=box, mask=mask[box], peak=float(prob[mask].max()), mean=float(prob[mask].mean()),
                     integrated_mm3=float(prob[mask].sum()), voxels=int(mask.sum()), volume_mm3=float(mask.sum()),
                     centre_index=tuple(float(v) for v in np.argwhere(mask).mean(axis=0)))


def _full(c, shape=SHAPE):
    out = np.zeros(shape, bool)
    out[c.box] = c.mask
    return out


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_a_lytic_lesion_gets_its_own_extent_and_a_full_factor():
    hu, vertebrae = _scan()
    lesion = _ball((20, 20, 20), 6)
    hu[lesion] = 0.0 + np.random.default_rng(1).normal(0, 30, int(lesion.sum()))
    narrow = _ball((20, 20, 20), 3)  # the head's extent: narrower than the lesion
    prob = np.where(narrow, 0.9, 0.0)
    (judged,) = judge_on_ct([_candidate(narrow, prob)], prob, hu, vertebrae, SPACING, band_mm=3.0)
    assert judged.contrast_hu == pytest.approx(-200, abs=25)
    assert judged.ct_factor == 1.0
    assert _iou(_full(judged), lesion) > 0.8 > _iou(narrow, lesion)
    assert judged.volume_mm3 == judged.voxels == int(judged.mask.sum())
    # without the band the extent stays the head's, the contrast is still measured
    (kept,) = judge_on_ct([_candidate(narrow, prob)], prob, hu, vertebrae, SPACING, band_mm=0.0)
    assert np.array_equal(_full(kept), narrow) and kept.contrast_hu == pytest.approx(judged.contrast_hu, abs=40)


def test_a_blastic_lesion_grows_no_further_than_the_band():
    hu, vertebrae = _scan()
    hu[_ball((20, 20, 20), 8)] = 900.0  # larger than what the head saw; bone from 8 mm on
    narrow = _ball((20, 20, 20), 3)
    prob = np.where(narrow, 0.9, 0.0)
    (judged,) = judge_on_ct([_candidate(narrow, prob)], prob, hu, vertebrae, SPACING, band_mm=2.0)
    assert judged.contrast_hu > 500
    assert _full(judged).sum() > narrow.sum()
    assert not (_full(judged) & ~_ball((20, 20, 20), 5.5)).any()
    # the head's core alone inside a lesion wider than the shell: no bone to compare with, nothing changes
    hu[_ball((20, 20, 20), 10)] = 900.0
    (unknown,) = judge_on_ct([_candidate(narrow, prob)], prob, hu, vertebrae, SPACING, band_mm=2.0)
    assert unknown.contrast_hu is None and np.array_equal(_full(unknown), narrow)


def test_a_response_the_ct_cannot_tell_from_bone_counts_for_little_and_keeps_its_extent():
    hu, vertebrae = _scan()
    spot = _ball((20, 20, 20), 4)
    prob = np.where(spot, 0.95, 0.0)
    (judged,) = judge_on_ct([_candidate(spot, prob)], prob, hu, vertebrae, SPACING, band_mm=3.0)
    assert judged.ct_factor < 0.3
    assert np.array_equal(_full(judged), spot)
    assert judged.score("max") == pytest.approx(judged.ct_factor * 0.95)
    assert judged.weighted_peak == pytest.approx(judged.ct_factor * judged.peak)
    (unweighted,) = judge_on_ct([_candidate(spot, prob)], prob, hu, vertebrae, SPACING, band_mm=3.0, weigh=False)
    assert unweighted.ct_factor == 1.0 and unweighted.contrast_hu == judged.contrast_hu


def test_without_bone_around_it_the_factor_is_the_unknown_one_and_without_vertebrae_nothing_is_judged():
    hu, vertebrae = _scan()
    vertebrae[:] = 0
    vertebrae[30:38, 30:38, 30:38] = 20  # far from the candidate
    spot = _ball((10, 10, 10), 3)
    prob = np.where(spot, 0.9, 0.0)
    (judged,) = judge_on_ct([_candidate(spot, prob)], prob, hu, vertebrae, SPACING, band_mm=3.0)
    assert judged.ct_factor == UNKNOWN_FACTOR and judged.contrast_hu is None and not judged.on_metal
    c = _candidate(spot, prob)
    assert judge_on_ct([c], prob, hu, np.zeros_like(vertebrae), SPACING, band_mm=3.0) == [c]


def test_grown_extents_stay_disjoint_and_the_higher_score_keeps_the_contested_voxels():
    hu, vertebrae = _scan()
    hu[_ball((20, 14, 20), 5) | _ball((20, 26, 20), 5)] = 900.0
    hu[18:23, 18:23, 18:23] = 900.0  # a bright bridge both may grow into
    a, b = _ball((20, 14, 20), 2), _ball((20, 26, 20), 2)
    prob = np.where(a, 0.95, 0.0) + np.where(b, 0.6, 0.0)
    ja, jb = judge_on_ct([_candidate(a, prob), _candidate(b, prob)], prob, hu, vertebrae, SPACING, band_mm=4.0)
    fa, fb = _full(ja), _full(jb)
    assert not (fa & fb).any()
    assert fa[20, 20, 20] and not fb[20, 20, 20]
    assert jb.voxels == int(fb.sum())


def test_found_lesions_ranks_and_writes_by_the_weighted_peak():
    hu, vertebrae = _scan()
    lytic = _ball((12, 20, 20), 4)
    hu[lytic] = 20.0
    plain = _ball((28, 20, 20), 4)  # the head's brighter response where the bone is plain
    prob = np.where(lytic, 0.85, 0.0) + np.where(plain, 0.95, 0.0)
    params = PP.Postprocessing(lesion_threshold=0.8, lesion_min_volume_mm3=10)
    _, rows, _ = found_lesions(prob, vertebrae, SPACING, params, hu=hu)
    assert [r["contrast_hu"] is not None for r in rows] == [True, True]
    first, second = rows
    assert first["centre_index"][0] < 20 and first["lesion"] and not second["lesion"]  # the lytic one first
    assert second["peak"] == pytest.approx(0.95) and second["score"] < 0.8
    # off: the head's peaks alone decide, as before
    off = PP.Postprocessing(lesion_threshold=0.8, lesion_min_volume_mm3=10, lesion_ct_contrast=0,
                            lesion_ct_band_mm=0)
    _, rows_off, _ = found_lesions(prob, vertebrae, SPACING, off, hu=hu)
    assert rows_off[0]["centre_index"][0] > 20 and all(r["lesion"] for r in rows_off)
    assert all(r["ct_factor"] == 1.0 for r in rows_off)
    with pytest.raises(ValueError, match="CT"):
        found_lesions(prob, vertebrae, SPACING, params, hu=hu[:-1])


def test_a_response_to_metal_ranks_last_and_keeps_its_extent():
    hu, vertebrae = _scan()
    screw = _ball((20, 20, 20), 3)
    hu[screw] = 3000.0
    around = _ball((20, 20, 20), 4)
    prob = np.where(around, 0.99, 0.0)
    (judged,) = judge_on_ct([_candidate(around, prob)], prob, hu, vertebrae, SPACING, band_mm=3.0)
    assert judged.ct_factor == 0.0 and judged.contrast_hu > 1000 and judged.on_metal
    assert np.array_equal(_full(judged), around)


def test_a_case_with_an_implant_says_so_and_writes_no_lesion_on_it(tmp_path):
    hu, vertebrae = _scan()
    hu[_ball((20, 20, 20), 3)] = 3000.0
    prob = np.where(_ball((20, 20, 20), 4), 0.99, 0.0).astype(np.float32)
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing(SPACING)
    report = write_case_outputs(tmp_path, "implant", ct, vertebrae, prob, preview=False)
    (row,) = report["lesion_candidates"]
    assert row["on_metal"] and row["ct_factor"] == 0.0 and report["lesions"] == []
    assert any("1 lesion candidate(s) lie on metal" in n and "not written" in n for n in report["notes"])


def test_determine_postprocessing_chooses_the_threshold_on_the_peaks_predict_compares():
    """The search's lesion scorer (inference/lesion_validation.py) judges the candidates on the CT as predict does:
    a confident response on a screw (3000 HU) is written without the CT, not with it, and a lesion the CT shows
    is written both ways; so F1 at threshold 0.5 goes from 2/3 to 1."""
    from vertebraformer_nn.inference.lesion_validation import LesionScorer, pooled_score

    hu, vertebrae = _scan()
    lesion, screw = _ball((12, 20, 20), 4), _ball((28, 20, 20), 3)
    hu[lesion] = 900.0
    hu[screw] = 3000.0
    prob = np.where(lesion | screw, 0.9, 0.0).astype(np.float32)
    params = PP.Postprocessing(lesion_threshold=0.5, lesion_min_volume_mm3=10.0)
    blind = LesionScorer(prob, lesion, SPACING).record(params)
    judged = LesionScorer(prob, lesion, SPACING, hu, vertebrae).record(params)
    assert (blind["n_predicted"], judged["n_predicted"]) == (2, 1) and judged["n_candidates"] == 2
    assert pooled_score("lesion_threshold", [blind])[0] == pytest.approx(2 / 3)
    assert pooled_score("lesion_threshold", [judged])[0] == pytest.approx(1.0)
    # with the judging switched off the CT changes nothing
    off = PP.Postprocessing(lesion_threshold=0.5, lesion_min_volume_mm3=10.0, lesion_ct_contrast=0,
                            lesion_ct_band_mm=0)
    assert LesionScorer(prob, lesion, SPACING, hu, vertebrae).record(off)["n_predicted"] == 2
