"""Structure-aware vertebra numbering: instances, ordering, the joint decoder and the whole pipeline, on
hand-made volumes (boxes stacked along the head-foot axis, probabilities built from their true levels with
controlled ambiguity and noise) and hand-made log-probability matrices."""
from __future__ import annotations

from dataclasses import replace

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io
from vertebraformer_nn.inference import decoder as D
from vertebraformer_nn.inference import instances as I
from vertebraformer_nn.inference import numbering as N
from vertebraformer_nn.inference.decoder import decode_levels, gap_ratios
from vertebraformer_nn.inference.numbering import number_vertebrae, order_instances
from vertebraformer_nn.inference.postprocessing import DEFAULTS
from vertebraformer_nn.labels import ANATOMICAL_ORDER, CERVICAL, LUMBAR, THORACIC, verse_to_training

SPACING = (3.5, 3.5, 3.5)
NORMAL = CERVICAL + THORACIC + LUMBAR  # C1..L5
HEIGHT, DISC, WIDTH, MARGIN = 5, 2, 6, 2  # voxels: box height along head-foot, disc, in-plane box width


def level(name: str) -> int:
    return ANATOMICAL_ORDER.index(name)


def distribution(evidence, n=26):
    """Level distribution: {name: p} as given, the rest spread evenly (a plain name = 0.9 on it)."""
    if isinstance(evidence, str):
        evidence = {evidence: 0.9}
    vec = np.full(n, (1.0 - sum(evidence.values())) / (n - len(evidence)))
    for name, p in evidence.items():
        vec[level(name)] = p
    return vec


def phantom(boxes, *, axis=0, sign=-1, extra_gap=None, heights=None, seed=0, noise=0.05):
    """Boxes head to foot; ``boxes[i]`` is a level name or a {name: p} evidence dict (the box's true level is
    its most likely name). ``extra_gap``: {i: voxels} of extra space below box i. Built with index 0 at the
    head of axis 0, then placed so that ``axis`` grows towards the head when ``sign`` is +1.

    Returns (seg_probs (27, ...) float16, id_probs (26, ...) float16, box map (ids 1..n in head-foot order))."""
    extra_gap = extra_gap or {}
    heights = heights or [HEIGHT] * len(boxes)
    length = 2 * MARGIN + sum(h + DISC for h in heights) + sum(extra_gap.values())
    box_map = np.zeros((length, WIDTH + 2 * MARGIN, WIDTH + 2 * MARGIN), dtype=np.int32)
    start = MARGIN
    for i, h in enumerate(heights):
        box_map[start:start + h, MARGIN:MARGIN + WIDTH, MARGIN:MARGIN + WIDTH] = i + 1
        start += h + DISC + extra_gap.get(i, 0)
    seg, idp = probabilities(box_map, boxes, seed=seed, noise=noise)
    return orient(seg, axis, sign, 1), orient(idp, axis, sign, 1), orient(box_map, axis, sign, 0)


def probabilities(box_map, boxes, *, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    seg = np.zeros((27,) + box_map.shape, dtype=np.float32)
    seg[0] = 0.97
    seg[1:] = 0.03 / 26
    for i, evidence in enumerate(boxes, start=1):
        inside = box_map == i
        seg[:, inside] = np.concatenate([[0.02], 0.98 * distribution(evidence)])[:, None]
    seg *= rng.uniform(1 - noise, 1 + noise, size=seg.shape)
    seg /= seg.sum(axis=0, keepdims=True)
    idp = seg[1:] / seg[1:].sum(axis=0, keepdims=True)
    return seg.astype(np.float16), idp.astype(np.float16)


def orient(arr, axis, sign, first_spatial):
    if sign == 1:
        arr = np.flip(arr, axis=first_spatial)
    return np.ascontiguousarray(np.moveaxis(arr, first_spatial, first_spatial + axis))


def names(result):
    return [inst["name"] for inst in result.instances]


def truth_labels(box_map, box_levels):
    lut = np.zeros(len(box_levels) + 1, dtype=np.uint8)
    lut[1:] = [level(n) + 1 for n in box_levels]
    return lut[box_map]


def log_probs(per_instance):
    return np.log(np.stack([distribution(e) for e in per_instance]))


# --- whole pipeline -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis,sign", [(0, -1), (0, 1), (1, 1), (2, 1), (2, -1)])
def test_clean_spine_decodes_to_itself_in_any_orientation(axis, sign):
    seg, _, box_map = phantom(NORMAL, axis=axis, sign=sign)
    result = number_vertebrae(seg, SPACING, axis, sign)
    assert names(result) == NORMAL
    assert result.labels.dtype == np.uint8
    np.testing.assert_array_equal(result.labels, truth_labels(box_map, NORMAL))
    heights = [sign * inst["centre_mm"][axis] for inst in result.instances]
    assert heights == sorted(heights, reverse=True)  # head first
    assert [inst["instance_id"] for inst in result.instances] == list(range(1, 25))
    first = result.instances[0]
    assert (first["label"], first["code"], first["name"]) == (1, 1, "C1")
    assert first["volume_mm3"] == pytest.approx(HEIGHT * WIDTH * WIDTH * 3.5 ** 3)
    assert len(first["log_probs"]) == 26 and np.argmax(first["log_probs"]) == 0
    assert all(inst["confidence"] > 0.9 for inst in result.instances)
    assert "field of view starts at C1 and ends at L5 (24 vertebrae)" in result.notes


def test_identification_probabilities_are_the_evidence_when_given():
    levels = ["T4", "T5", "T6", "T7", "T8"]
    seg, _, _ = phantom(levels)
    _, idp, _ = phantom([ANATOMICAL_ORDER[level(n) + 1] for n in levels])  # the id head says T5..T9
    assert names(number_vertebrae(seg, SPACING, 0, -1)) == levels
    assert names(number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)) == ["T5", "T6", "T7", "T8", "T9"]


def test_coarse_levels_on_their_own_grid_weigh_in_and_weight_zero_ignores_them():
    """The coarse stage's levels on a grid half as fine (as the 7 mm coarse model over the 3.5 mm one) are read at the
    instances' voxels: the same evidence as expanding them onto the fine grid first."""
    from vertebraformer_nn.inference.coarse_resample import to_fine_grid
    from vertebraformer_nn.inference.grid_probabilities import GridProbabilities

    levels = ["T4", "T5", "T6", "T7", "T8"]
    seg, idp, _ = phantom([{n: 0.3} for n in levels])  # weak fine evidence for T4..T8
    _, shifted, _ = phantom([ANATOMICAL_ORDER[level(n) + 1] for n in levels])  # the coarse model says T5..T9
    coarse = np.stack([c[::2, ::2, ::2] for c in shifted.astype(np.float32)])  # every other voxel: a coarse grid
    on_fine = to_fine_grid(coarse, seg.shape[1:])
    grid = GridProbabilities.from_dense({"seg": seg, "id": idp, "coarse_id": coarse})
    assert grid.coarse.shape == coarse.shape and grid.nbytes() == GridProbabilities.from_dense(
        {"seg": seg, "id": idp}).nbytes() + coarse.size * 2
    weighed = N.ordered_instances(grid, SPACING, 0, -1)
    dense = N.ordered_instances(seg, SPACING, 0, -1, idp, coarse_probs=on_fine)
    np.testing.assert_allclose(weighed.coarse_log_probs, dense.coarse_log_probs, atol=2e-2)
    assert names(N.decode_instances(weighed, DEFAULTS)) == ["T5", "T6", "T7", "T8", "T9"]
    off = replace(DEFAULTS, coarse_level_weight=0.0)
    assert names(N.decode_instances(weighed, off)) == names(number_vertebrae(seg, SPACING, 0, -1, idp, params=off))
    assert names(number_vertebrae(seg, SPACING, 0, -1, idp)) == levels


def test_a_coarse_stage_that_never_says_t13_does_not_veto_one():
    # T10-T13 and L1: the fine evidence says so, against the shift T9-T12 + L1 (~1.8 nats, the transitional prior
    # paid); a coarse stage that cannot place the spine (flat over T9-L1) and never says T13 (as every coarse model
    # measured: its T13 channel at most 0.09) made T13 cost ~3.6 nats, and the shift won
    boxes = [{"T10": 0.7, "T9": 0.25}, {"T11": 0.7, "T10": 0.25}, {"T12": 0.7, "T11": 0.25}, {"T13": 0.7, "T12": 0.25},
             "L1"]
    seg, idp, _ = phantom(boxes)
    _, flat, _ = phantom([{name: 0.18 for name in ("T9", "T10", "T11", "T12", "L1")}] * len(boxes))
    found = N.ordered_instances(seg, SPACING, 0, -1, idp, coarse_probs=flat)
    assert names(N.decode_instances(found, DEFAULTS)) == ["T10", "T11", "T12", "T13", "L1"]
    own = replace(DEFAULTS, coarse_transitional=0.0)
    assert names(N.decode_instances(found, own)) == ["T9", "T10", "T11", "T12", "L1"]
    assert names(N.decode_instances(found, replace(own, coarse_level_weight=0.0))) == ["T10", "T11", "T12", "T13", "L1"]


@pytest.mark.parametrize("levels", [THORACIC[3:] + ["L1", "L2"], CERVICAL[2:]])
def test_partial_field_of_view(levels):
    seg, idp, box_map = phantom(levels)
    for id_probs in (None, idp):
        result = number_vertebrae(seg, SPACING, 0, -1, id_probs=id_probs)
        assert names(result) == levels
        np.testing.assert_array_equal(result.labels, truth_labels(box_map, levels))
        assert f"field of view starts at {levels[0]} and ends at {levels[-1]} ({len(levels)} vertebrae)" in result.notes


def test_argmax_duplicate_is_numbered_consecutively():
    boxes = ["T4", "T5", "T6", {"T7": 0.6, "T6": 0.35}, {"T7": 0.55, "T8": 0.4}, "T9", "T10"]
    seg, _, box_map = phantom(boxes)
    argmax = seg.argmax(axis=0)
    assert {int(v) for v in np.unique(argmax[(box_map == 4) | (box_map == 5)])} == {level("T7") + 1}  # duplicate
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ["T4", "T5", "T6", "T7", "T8", "T9", "T10"]
    assert any("voxel-wise majority" in n and "T7 -> T8" in n for n in result.notes)
    # without neighbours to anchor them, the evidence decides between (T6, T7) and (T7, T8), and is unsure
    seg, _, _ = phantom(boxes[3:5])
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ["T7", "T8"]
    assert all(0.5 < inst["confidence"] < 0.7 for inst in result.instances)


def test_missing_vertebra_is_skipped_only_across_a_gap():
    levels = ["T8", "T9", "T10", "T11", "L1", "L2", "L3"]  # T12 missing
    seg, _, _ = phantom(levels, extra_gap={3: HEIGHT + DISC})
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == levels
    assert any(n.startswith("level T12 skipped between T11 and L1: gap 49 mm (2.0 x") for n in result.notes)
    seg, _, _ = phantom(levels)  # same evidence, no gap: the labels must stay consecutive
    result = number_vertebrae(seg, SPACING, 0, -1)
    got = [level(n) for n in names(result)]
    assert all(D._SKIPS[a, b] == 0 for a, b in zip(got, got[1:]))
    assert not any("skipped" in n for n in result.notes)


def test_transitional_t13_and_l6_in_volumes():
    levels = ["T11", "T12", "T13", "L1", "L2", "L3", "L4", "L5", "L6"]
    seg, _, box_map = phantom(levels)
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == levels
    np.testing.assert_array_equal(result.labels, truth_labels(box_map, levels))
    assert any(n.startswith("T13 suspected (transitional: 13 thoracic vertebrae)") for n in result.notes)
    assert any(n.startswith("L6 suspected (transitional: 6 lumbar vertebrae)") for n in result.notes)
    # the field of view ends at the candidate: only the evidence against the prior decides
    strong, weak = {"T13": 0.95, "L1": 0.03}, {"T13": 0.5, "L1": 0.3}
    assert names(number_vertebrae(phantom(["T11", "T12", strong])[0], SPACING, 0, -1))[-1] == "T13"
    assert names(number_vertebrae(phantom(["T11", "T12", weak])[0], SPACING, 0, -1))[-1] == "L1"


def test_an_l6_the_field_of_view_cuts_without_a_sacrum_below_is_the_sacrum_s_top():
    """verse014: the scan ends in S1, which a network trained without a sacrum label names "L6". Cut by the field of
    view with no sacrum seen below, it is left out; an L6 with room below it, or with the sacrum found, stays."""
    levels = ["L1", "L2", "L3", "L4", "L5", "L6"]
    seg, _, _ = phantom(levels)
    cut = np.ascontiguousarray(seg[:, :-(DISC + MARGIN + 1)])  # the scan ends in the last box
    result = number_vertebrae(cut, SPACING, 0, -1)
    assert names(result) == levels[:-1] and result.report["left_out"] == {"head": 0, "foot": 1}
    assert any("named L6, left out as the sacrum's first segment" in n for n in result.notes)
    assert "transitional_unconfirmed" not in [r["reason"] for r in result.quality["reasons"]]
    off = replace(DEFAULTS, cut_l6_is_sacrum=0.0)
    assert names(number_vertebrae(cut, SPACING, 0, -1, params=off)) == levels
    found = N.ordered_instances(cut, SPACING, 0, -1)
    decoding = decode_levels(found.log_probs, None)
    assert N.sacrum_top(decoding, found)
    assert not N.sacrum_top(decoding, replace(found, anchors=[N.Anchor("sacrum", len(levels) - 1, {})]))
    whole = N.ordered_instances(seg, SPACING, 0, -1)  # 14 mm of scan below the L6
    assert not N.sacrum_top(decode_levels(whole.log_probs, None), whole)


def test_touching_vertebrae_in_one_component_are_split():
    seg, _, box_map = phantom(["T6", "T7", "T8", "T9"])
    # bridge the disc between T7 and T8 with a 2x2 column of T7-looking voxels
    below_t7 = np.flatnonzero((box_map == 2).any(axis=(1, 2)))[-1] + 1
    seg[:, below_t7:below_t7 + DISC, 4:6, 4:6] = seg[:, below_t7 - 1:below_t7, 4:6, 4:6]
    assert cc3d.connected_components(seg.argmax(axis=0) > 0, connectivity=26, return_N=True)[1] == 3
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ["T6", "T7", "T8", "T9"]
    assert "split one connected component into 2 touching vertebrae (T7, T8)" in result.notes


def test_vertebra_with_two_argmax_levels_stays_whole_and_fragments_join():
    seg, _, box_map = phantom(["T5", "T6", "T7"], heights=[HEIGHT, HEIGHT, 6])
    rows = np.flatnonzero((box_map == 3).any(axis=(1, 2)))
    t7, t8 = level("T7") + 1, level("T8") + 1
    lower = seg[:, rows[3:]]
    lower[[t7, t8]] = lower[[t8, t7]]  # lower half of the T7 box: argmax T8
    seg[:, rows[3:]] = lower
    t4, t5 = level("T4") + 1, level("T5") + 1
    cap = seg[:, np.flatnonzero((box_map == 1).any(axis=(1, 2)))[0], 3:5, 3:5]
    cap[[t4, t5]] = cap[[t5, t4]]  # a 4-voxel (171 mm3) T4 cap on T5
    argmax = seg.argmax(axis=0)
    assert set(np.unique(argmax[box_map == 3])) == {level("T7") + 1, level("T8") + 1}
    assert (argmax[box_map == 1] == level("T4") + 1).sum() == 4
    found = I.vertebra_instances(seg, SPACING)
    assert found.instance_map.max() == 3
    assert len(np.unique(found.instance_map[box_map == 3])) == 1
    assert "one vertebra carried voxel-wise levels T7, T8 across a wide contact: kept whole" in found.notes
    assert not any(n.startswith("split") for n in found.notes)
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ["T5", "T6", "T7"]
    np.testing.assert_array_equal(result.labels, truth_labels(box_map, ["T5", "T6", "T7"]))


def test_flipped_half_touching_the_vertebra_whose_level_it_took_is_not_fused_with_it():
    levels = ["T5", "T6", "T7", "T8", "T9"]
    seg, _, box_map = phantom(levels, heights=[6] * 5)
    t7_rows = np.flatnonzero((box_map == 3).any(axis=(1, 2)))
    t8_rows = np.flatnonzero((box_map == 4).any(axis=(1, 2)))
    seg[:, t7_rows[3]:t8_rows[0]] = seg[:, t8_rows[0]:t8_rows[0] + 1]  # lower half of T7 and the disc: T8
    pieces, n = cc3d.connected_components(seg.argmax(axis=0), connectivity=26, return_N=True)
    assert n == 5 and len(np.unique(pieces[box_map == 4])) == 1 and len(np.unique(pieces[box_map == 3])) == 2
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == levels
    assert "voxel-wise levels T7, T8 meet across a wide contact, but together they are too large for one " \
           "vertebra: kept apart" in result.notes
    # the guard is what keeps them apart
    fused = I.vertebra_instances(seg, SPACING, replace(DEFAULTS, max_merged_growth=100))
    assert fused.instance_map.max() == 4


def salt_and_pepper(levels):
    """(seg, box map) of bodies ``levels`` in which a third of each body's voxels have their argmax (0.40) on a
    neighbouring level and their own level at 0.30."""
    seg, _, box_map = phantom(levels, heights=[6] * len(levels))
    rng = np.random.default_rng(1)
    for i, name in enumerate(levels, start=1):
        inside = np.argwhere(box_map == i)
        flip = inside[rng.random(len(inside)) < 0.35]
        wrong = level(name) + 1 + rng.choice([-2, -1, 1, 2], size=len(flip))
        dist = np.full((27, len(flip)), 0.28 / 24, dtype=np.float32)
        dist[0] = 0.02
        dist[level(name) + 1] = 0.30
        dist[wrong, np.arange(len(flip))] = 0.40
        seg[(slice(None), *flip.T)] = dist.astype(np.float16)
    return seg, box_map


def test_uncertain_salt_and_pepper_levels_take_their_neighbourhood_s_level():
    levels = ["T9", "T10", "T11", "T12", "L1"]
    seg, box_map = salt_and_pepper(levels)
    plain = I.smoothed_levels(seg, SPACING, sigma_mm=0)
    assert all(len(np.unique(plain[box_map == i])) > 1 for i in range(1, 6))
    smoothed = I.smoothed_levels(seg, SPACING)
    for i, name in enumerate(levels, start=1):
        assert set(np.unique(smoothed[box_map == i])) == {level(name) + 1}
    np.testing.assert_array_equal(smoothed == 0, box_map == 0)  # the foreground is the argmax's, unchanged
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == levels
    np.testing.assert_array_equal(result.labels, truth_labels(box_map, levels))


def test_votes_filtered_in_blocks_are_close_to_the_fine_filter():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    shape = np.array([60, 50, 40])
    points = np.unique(rng.integers(0, shape, size=(4000, 3)), axis=0)
    values = rng.random(len(points)).astype(np.float32)
    read = rng.integers(0, shape, size=(500, 3))
    sigma = np.array([7.0, 6.0, 7.5])  # a 1 mm grid: blocks of 3 x 3 x 3
    field = np.zeros(tuple(shape), np.float32)
    field[tuple(points.T)] = values
    exact = gaussian_filter(field, sigma, mode="constant", truncate=4.0)[tuple(read.T)]
    blocks = I.vote_field(points, values, shape, sigma, read)
    # random sparse votes are the hardest case (all high frequencies): ~1 % typical, a few % at most
    assert np.median(np.abs(blocks - exact) / exact) < 0.02 and np.abs(blocks - exact).max() < 0.08 * exact.max()
    fine = I.vote_field(points, values, shape, np.array([3.0, 3.0, 3.0]), read)  # below 4 voxels: exact
    np.testing.assert_allclose(fine, gaussian_filter(field, 3.0, mode="constant", truncate=4.0)[tuple(read.T)])


def test_salt_and_pepper_levels_on_a_three_times_finer_grid_take_the_same_levels():
    levels = ["T9", "T10", "T11", "T12", "L1"]
    seg, box_map = salt_and_pepper(levels)
    fine = seg.repeat(3, axis=1).repeat(3, axis=2).repeat(3, axis=3)  # the same scene at 3.5 / 3 mm
    smoothed = I.smoothed_levels(fine, [s / 3 for s in SPACING])  # sigma 6 voxels: filtered in blocks of 3
    fine_boxes = box_map.repeat(3, axis=0).repeat(3, axis=1).repeat(3, axis=2)
    for i, name in enumerate(levels, start=1):
        assert set(np.unique(smoothed[fine_boxes == i])) == {level(name) + 1}


def test_confident_levels_are_not_smoothed():
    seg, _, box_map = phantom(["T5", "T6"], heights=[6, 6], noise=0.0)
    seg[:, box_map == 1] = 0.0
    seg[level("T5") + 1, box_map == 1] = 1.0  # confident voxels keep their argmax exactly
    seg[level("T7") + 1, 4, 5, 5], seg[level("T5") + 1, 4, 5, 5] = 0.95, 0.05  # one confident T7 voxel
    levels = I.smoothed_levels(seg, SPACING)
    assert levels[4, 5, 5] == level("T7") + 1
    assert (levels[box_map == 2] == level("T6") + 1).all()


def test_vertebra_cut_by_the_field_of_view_is_kept():
    seg, _, _ = phantom(["T3", "T4", "T5"])
    seg = np.ascontiguousarray(seg[:, MARGIN + HEIGHT - 1:])  # T3 cut to its last row: 36 voxels, 1543 mm3
    relative = replace(DEFAULTS, min_relative_volume=0.3)  # 0.3 x 7717 mm3 = 2315 mm3
    result = number_vertebrae(seg, SPACING, 0, -1, params=relative)
    assert names(result) == ["T3", "T4", "T5"]
    padded = np.concatenate([seg[:, :1] * 0, seg], axis=1)  # one background row: the sliver leaves the border
    padded[0, 0] = 1
    result = number_vertebrae(padded, SPACING, 0, -1, params=relative)
    assert names(result) == ["T4", "T5"]
    assert "dropped 1 isolated fragment(s) too small for a vertebra (1544 mm3)" in result.notes


def test_small_and_relatively_small_isolated_pieces_are_dropped():
    seg, _, box_map = phantom(["L1", "L2", "L3"])
    # a 2-voxel speckle (86 mm3, on the border) and a 15-voxel blob (643 mm3: above 500 mm3, below a tenth of
    # a box, off the border)
    inside = seg[:, MARGIN + 1, MARGIN + 1, MARGIN + 1]
    seg[:, 0, 0, 0:2] = inside[:, None]
    seg[:, -2, 1:4, 1:6] = inside[:, None, None]
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ["L1", "L2", "L3"]
    assert "dropped 2 isolated fragment(s) too small for a vertebra (729 mm3)" in result.notes
    assert result.labels[0, 0, 0] == 0 and result.labels[-2, 1, 1] == 0
    no_relative = replace(DEFAULTS, min_relative_volume=0)
    assert len(number_vertebrae(seg, SPACING, 0, -1, params=no_relative).instances) == 4


def test_more_instances_than_levels_keeps_the_largest():
    levels = ANATOMICAL_ORDER + ["L6", "L6"]
    seg, _, _ = phantom(levels, heights=[HEIGHT] * 26 + [3, 3])
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert names(result) == ANATOMICAL_ORDER
    assert "2 smallest of 28 instances dropped: only 26 levels exist" in result.notes


def test_empty_prediction():
    seg = np.zeros((27, 4, 5, 6), dtype=np.float32)
    seg[0] = 1
    result = number_vertebrae(seg, SPACING, 2)
    assert result.instances == [] and not result.labels.any() and result.notes == ["no vertebra found"]


def test_input_errors_are_clear():
    seg, idp, _ = phantom(["T1", "T2"])
    with pytest.raises(ValueError, match=r"seg_probs must be \(27, X, Y, Z\)"):
        number_vertebrae(seg[1:], SPACING, 0)
    with pytest.raises(ValueError, match=r"id_probs must be \(26, X, Y, Z\)"):
        number_vertebrae(seg, SPACING, 0, id_probs=seg)
    with pytest.raises(ValueError, match="id_probs spatial shape"):
        number_vertebrae(seg, SPACING, 0, id_probs=idp[:, 1:])
    with pytest.raises(ValueError, match="floating-point"):
        number_vertebrae(seg.astype(np.int32), SPACING, 0)
    with pytest.raises(ValueError, match="spacing must be three positive"):
        number_vertebrae(seg, (3.5, 3.5), 0)
    with pytest.raises(ValueError, match="spacing must be three positive"):
        number_vertebrae(seg, (3.5, 0, 3.5), 0)
    with pytest.raises(ValueError, match="superior_axis must be 0, 1 or 2"):
        number_vertebrae(seg, SPACING, 3)
    with pytest.raises(ValueError, match=r"superior_sign must be \+1 or -1"):
        number_vertebrae(seg, SPACING, 0, 0)
    with pytest.raises(ValueError, match=r"log_probs must be \(K, 26\)"):
        decode_levels(np.zeros((3, 24)))
    with pytest.raises(ValueError, match="gaps_mm must hold K-1 = 2"):
        decode_levels(np.zeros((3, 26)), [1.0])
    with pytest.raises(ValueError, match="cannot number 27 instances"):
        decode_levels(np.zeros((27, 26)))


# --- real masks -----------------------------------------------------------------------------------------------


def real_training_labels(path):
    """A real VerSe-coded mask resampled (nearest) to 3.5 mm, LPS: array (z, y, x), axis 0 grows towards S."""
    img = image_io.reorient(image_io.read_label(path), "LPS")
    size = [int(round(n * s / 3.5)) for n, s in zip(img.GetSize(), img.GetSpacing())]
    img = sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor, img.GetOrigin(), SPACING,
                        img.GetDirection(), 0)
    return verse_to_training(sitk.GetArrayFromImage(img))


def one_hot(training):
    seg = np.full((27,) + training.shape, 0.01 / 26, dtype=np.float32)
    for c in np.unique(training):
        seg[c][training == c] = 0.99
    return seg


def test_real_verse004_mask_touching_vertebrae_and_flipped_halves(real_data):
    truth = real_training_labels(real_data / "verse_sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz")
    levels = THORACIC[8:] + LUMBAR  # T9..L5, all touching at 3.5 mm
    result = number_vertebrae(one_hot(truth), SPACING, 0, 1)
    assert names(result) == levels
    np.testing.assert_array_equal(result.labels, truth)
    assert f"split one connected component into 9 touching vertebrae ({', '.join(levels)})" in result.notes
    for name, flipped_to in [("L1", "L2"), ("L3", "L4"), ("L5", "L4")]:
        c, other = level(name) + 1, level(flipped_to) + 1
        rows = np.flatnonzero((truth == c).any(axis=(1, 2)))
        lower = truth == c
        lower[(rows[0] + rows[-1] + 1) // 2:] = False  # lower half (axis 0 grows towards the head)
        seg = one_hot(truth)
        seg[c][lower], seg[other][lower] = seg[other][lower], seg[c][lower]
        result = number_vertebrae(seg, SPACING, 0, 1)
        assert names(result) == levels, name
        upper = (truth == c) & ~lower
        assert (result.labels[upper] == c).all()


def test_real_prediction_with_a_vertebra_cut_by_the_field_of_view(real_data):
    truth = real_training_labels(
        real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz")
    assert (truth == level("T11") + 1).sum() * 3.5 ** 3 < 0.1 * (truth == level("L3") + 1).sum() * 3.5 ** 3
    result = number_vertebrae(one_hot(truth), SPACING, 0, 1)
    assert names(result) == ["T11", "T12"] + LUMBAR


# --- the decoder on hand-made evidence ----------------------------------------------------------------------


def decoded(per_instance, gaps=None, params=DEFAULTS):
    return [ANATOMICAL_ORDER[s] for s in decode_levels(log_probs(per_instance), gaps, params).levels]


def test_gap_ratios_compare_each_gap_with_its_neighbours():
    np.testing.assert_allclose(gap_ratios([20, 22, 44, 24, 26]), [20 / 33, 22 / 24, 44 / 23, 24 / 26, 26 / 34])
    np.testing.assert_allclose(gap_ratios([30]), [1.0])
    assert gap_ratios([]).shape == (0,)


def test_two_missing_vertebrae_need_a_gap_of_three():
    levels = ["T8", "T9", "T10", "L1", "L2", "L3"]  # T11 and T12 missing
    result = decode_levels(log_probs(levels), [25, 25, 75, 25, 25])
    assert [ANATOMICAL_ORDER[s] for s in result.levels] == levels
    assert result.skips == [(2, 2)]
    assert any(n.startswith("levels T11, T12 skipped between T10 and L1") and "2 missing vertebrae" in n
               for n in result.notes)
    two = decode_levels(log_probs(levels), [25, 25, 50, 25, 25])  # two spacings: one missing vertebra at most
    assert two.skips == [(2, 1)] and [ANATOMICAL_ORDER[s] for s in two.levels] != levels
    assert decode_levels(log_probs(levels), [25, 25, 35, 25, 25]).skips == []  # 1.4 spacings: none


def test_a_gap_does_not_force_a_skip_against_consecutive_evidence():
    levels = ["T8", "T9", "T10", "T11", "T12", "L1"]
    result = decode_levels(log_probs(levels), [25, 25, 50, 25, 25])
    assert [ANATOMICAL_ORDER[s] for s in result.levels] == levels and result.skips == []
    assert any("a vertebra there may be unsegmented" in n for n in result.notes)


def test_pieces_of_one_vertebra_far_closer_than_its_pitch_share_its_level():
    """A body cut across into two instances (TPTBox: six pieces for three lumbar vertebrae): both pieces take one
    level, instead of two that shift every level below; a gap as long as a short pitch never shares one."""
    evidence = ["L2", "L3", "L3", "L4"]
    result = decode_levels(log_probs(evidence), [30, 12, 30])  # 12 mm < 0.5 x L3's typical 33 mm
    assert [ANATOMICAL_ORDER[s] for s in result.levels] == evidence and result.skips == []
    assert "two consecutive instances 12 mm apart both numbered L3: pieces of one vertebra" in result.notes[1]
    assert result.notes[0].endswith("(3 vertebrae)")
    assert decoded(evidence, [30, 20, 30]) != evidence  # 20 mm: two vertebrae, whatever the evidence
    off = replace(DEFAULTS, shared_level_prior=0.0)
    strict = decoded(evidence, [30, 12, 30], off)
    assert len(set(strict)) == 4 and strict != evidence
    assert decoded(evidence, None) != evidence  # distances unknown: no sharing


def test_pieces_side_by_side_share_a_level_by_their_height_apart():
    """C1's ring in two halves (spineweb_case01 of the quick protocol): 20 mm apart across, 1 mm in height; with the
    heights both are C1 and nothing below shifts, from the distances alone each took a level. Whole vertebrae a pitch
    apart in height never share one, however their evidence reads."""
    evidence = ["C1", "C1", "C2", "C3"]
    gaps, heights = [20, 16, 15], [1, 15, 14]
    result = decode_levels(log_probs(evidence), gaps, DEFAULTS, heights_mm=heights)
    assert [ANATOMICAL_ORDER[s] for s in result.levels] == evidence
    assert "two consecutive instances 20 mm apart (1 mm in height) both numbered C1: pieces of one vertebra" \
        in result.notes[1]
    assert decoded(evidence, gaps) != evidence
    stacked = decode_levels(log_probs(["L3", "L3"]), [30], DEFAULTS, heights_mm=[29]).levels
    assert stacked[0] != stacked[1]
    with pytest.raises(ValueError, match="heights_mm"):
        decode_levels(log_probs(evidence), gaps, DEFAULTS, heights_mm=[1, 2])
    instance_map = np.zeros((20, 4, 12), dtype=np.int32)  # 3 mm voxels, axis 0 head to foot
    instance_map[0:4, :, 0:4], instance_map[0:4, :, 8:12] = 1, 2  # the ring's halves, 24 mm apart across
    instance_map[7:11, :, 2:10], instance_map[14:18, :, 2:10] = 3, 4
    ids, centres, volumes = I.instance_geometry(instance_map, [3.0, 3.0, 3.0])
    found = N.OrderedInstances(instance_map, ids, centres, volumes, log_probs(evidence),
                               {i: level(n) + 1 for i, n in zip(ids, evidence)}, on_border=np.zeros(4, bool),
                               spacing=np.array([3.0, 3.0, 3.0]), si_axis=0, si_sign=-1)
    result = N.decode_instances(found, DEFAULTS)
    assert names(result) == ["C1", "C2", "C3"]
    assert (result.labels[instance_map == 2] == level("C1") + 1).all()
    found.on_border = np.array([True, False, False, False])  # cut by the field of view: perhaps another's process
    assert len(names(N.decode_instances(found, DEFAULTS))) == 4


def test_pieces_numbered_alike_are_one_vertebra_in_the_records_and_the_map():
    rows = [(0, 8), (10, 13), (15, 18), (20, 28)]  # head to foot along axis 0 (index 0 at the head), 3 mm voxels
    instance_map = np.zeros((30, 4, 4), dtype=np.int32)
    for i, (a, b) in enumerate(rows, start=1):
        instance_map[a:b + 1] = i
    spacing = np.array([3.0, 3.0, 3.0])
    ids = np.arange(1, 5)
    centres = np.array([[(a + b) / 2 * 3.0, 4.5, 4.5] for a, b in rows])
    volumes = np.array([(b - a + 1) * 16 * 27.0 for a, b in rows])
    found = N.OrderedInstances(instance_map, ids, centres, volumes, log_probs(["L2", "L3", "L3", "L4"]),
                               {1: level("L2") + 1, 2: level("L3") + 1, 3: level("L3") + 1, 4: level("L4") + 1},
                               on_border=np.zeros(4, bool), spacing=spacing, si_axis=0, si_sign=-1)
    result = N.decode_instances(found, DEFAULTS)
    assert names(result) == ["L2", "L3", "L4"]
    l3 = result.instances[1]
    assert l3["volume_mm3"] == pytest.approx(volumes[1] + volumes[2])
    np.testing.assert_allclose(l3["centre_mm"], (centres[1] * volumes[1] + centres[2] * volumes[2]) / l3["volume_mm3"])
    assert np.exp(l3["log_probs"]).sum() == pytest.approx(1.0) and np.argmax(l3["log_probs"]) == level("L3")
    assert (result.labels[instance_map == 2] == level("L3") + 1).all()
    assert (result.labels[instance_map == 3] == level("L3") + 1).all()
    assert not any(r["reason"] == "implausible_spacing" for r in result.quality["reasons"])
    strict = N.decode_instances(found, replace(DEFAULTS, shared_level_prior=0.0))
    assert len(names(strict)) == 4


def test_transitional_levels_need_evidence_that_outweighs_their_prior():
    # Two readings of the same instances: 12 thoracic (A) or 13 thoracic (B); B's levels hold p_b each.
    a_levels = ["T11", "T12", "L1", "L2", "L3", "L4"]
    b_levels = ["T11", "T12", "T13", "L1", "L2", "L3"]
    for p_b, p_a, expected in [(0.5, 0.45, a_levels), (0.8, 0.15, b_levels)]:
        evidence = [a if a == b else {b: p_b, a: p_a} for a, b in zip(a_levels, b_levels)]
        assert decoded(evidence) == expected
    # 5 lumbar + L6 (B) or T12 + 5 lumbar (A)
    a_levels = ["T12", "L1", "L2", "L3", "L4", "L5"]
    b_levels = ["L1", "L2", "L3", "L4", "L5", "L6"]
    for p_b, p_a, expected in [(0.5, 0.45, a_levels), (0.8, 0.15, b_levels)]:
        assert decoded([{b: p_b, a: p_a} for a, b in zip(a_levels, b_levels)]) == expected


def test_transitional_levels_only_in_their_place():
    # strong T13 / L6 evidence between two levels that leave no room for it cannot put it there
    assert decoded(["T5", {"T13": 0.95}, "T7"]) == ["T5", "T6", "T7"]
    assert decoded(["L4", {"L6": 0.95}, "L5"]) == ["L3", "L4", "L5"]


def test_confidence_is_the_posterior_marginal():
    # two instances, both T7-leaning: the marginal of the chosen path is its share of all consecutive paths
    evidence = [{"T7": 0.6, "T6": 0.3, "T8": 0.09}, {"T7": 0.5, "T8": 0.44, "T6": 0.05}]
    result = decode_levels(log_probs(evidence), params=replace(DEFAULTS, end_drop_cost=0.0))  # one lattice
    lp = log_probs(evidence)
    p = np.exp(lp[0][:, None] + lp[1][None, :] + np.where(D._TRANSITIONAL, DEFAULTS.transitional_log_prior, 0)[:, None]
               + np.where(D._TRANSITIONAL, DEFAULTS.transitional_log_prior, 0)[None, :])
    p = np.where(D._SKIPS == 0, p, 0)
    p /= p.sum()
    chosen = result.levels
    assert [ANATOMICAL_ORDER[s] for s in chosen] == ["T7", "T8"]
    assert result.confidence[0] == pytest.approx(p[chosen[0]].sum())
    assert result.confidence[1] == pytest.approx(p[:, chosen[1]].sum())
    # with the ends allowed out, the same share of the paths that keep both: a little less
    mixed = decode_levels(log_probs(evidence))
    assert mixed.dropped == (0, 0) and (mixed.confidence < result.confidence).all()
    assert mixed.confidence == pytest.approx(result.confidence, abs=1e-2)


def test_order_instances_follows_the_superior_direction():
    centres = np.array([[0, 10, 5], [0, 30, 1], [0, 20, 9]], dtype=float)
    assert order_instances(centres, 1, 1).tolist() == [1, 2, 0]
    assert order_instances(centres, 1, -1).tolist() == [0, 2, 1]
    assert order_instances(centres, 2, 1).tolist() == [2, 0, 1]


# --- argmax numbering (ablation / baseline) -----------------------------------------------------------------


def test_argmax_numbering_keeps_what_the_decoder_corrects():
    boxes = ["T4", "T5", "T6", {"T7": 0.6, "T6": 0.35}, {"T7": 0.55, "T8": 0.4}, "T9", "T10"]
    seg, _, box_map = phantom(boxes)
    result = N.argmax_numbering(seg)
    np.testing.assert_array_equal(result.labels, seg.argmax(axis=0))
    assert result.labels.dtype == np.uint8
    np.testing.assert_array_equal(result.labels[box_map == 5], level("T7") + 1)  # the duplicate stays
    assert names(result) == ["T4", "T5", "T6", "T7", "T9", "T10"]  # one record per label, head to foot
    assert result.notes == [N.ARGMAX_NOTE]
    t7 = result.instances[3]
    assert (t7["label"], t7["code"], t7["voxels"]) == (level("T7") + 1, 14, 2 * HEIGHT * WIDTH * WIDTH)
    winning = seg.max(axis=0).astype(np.float64)[result.labels == t7["label"]]
    assert t7["confidence"] == pytest.approx(winning.mean())
    assert 0.5 < t7["confidence"] < 0.65 < result.instances[0]["confidence"]
    assert names(number_vertebrae(seg, SPACING, 0, -1)) == ["T4", "T5", "T6", "T7", "T8", "T9", "T10"]


def test_argmax_numbering_of_background_only_and_bad_input():
    seg = np.zeros((27, 3, 4, 5), np.float32)
    seg[0] = 1
    result = N.argmax_numbering(seg)
    assert result.instances == [] and not result.labels.any()
    with pytest.raises(ValueError, match="27"):
        N.argmax_numbering(seg[:26])
