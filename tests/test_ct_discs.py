"""Instances cut and joined at the discs the CT shows (``inference.ct_discs``): pure, no model."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vertebraformer_nn.inference import ct_discs as C
from vertebraformer_nn.inference.cases import Reorientation
from vertebraformer_nn.inference.grid_map import GridMap

MODEL_MM = 3.0
PITCH = 24  # mm, body + disc
DISC = 4
BODIES = 6
FOOT = 10  # mm of nothing below the first body


def _column(input_mm=1.0, seed=0):
    """A synthetic spine along axis 0 (head at high index): ``BODIES`` bodies (180 HU, 1.5 mm endplates of 600 HU)
    with 4 mm discs (60 HU) between them, an arch behind each (y grows towards the back), on a 1 mm input grid;
    returns (CT, body index of every input row along axis 0 (-1: disc or outside), InputCT, model-grid shape)."""
    n_si = int((FOOT * 2 + BODIES * PITCH) / input_mm)
    shape = (n_si, 40, 50)
    ct = np.zeros(shape, np.float32)
    body_of_row = np.full(n_si, -1)
    for b in range(BODIES):
        lo, hi = FOOT + b * PITCH, FOOT + b * PITCH + PITCH - DISC  # mm
        rows = slice(int(lo / input_mm), int(hi / input_mm))
        ct[rows, 5:25, 15:35] = 180.0
        ct[rows, 25:35, 22:28] = 400.0  # the arch
        for plate in (lo, hi - 1.5):
            ct[int(round(plate / input_mm)):int(round((plate + 1.5) / input_mm)), 5:25, 15:35] = 600.0
        body_of_row[rows] = b
        disc = slice(int(hi / input_mm), int((hi + DISC) / input_mm))
        if b < BODIES - 1:
            ct[disc, 5:25, 15:35] = 60.0
    ct += np.random.default_rng(seed).normal(0, 15, shape).astype(np.float32)
    sp_in = (input_mm, 1.0, 1.0)
    model_shape = tuple(int(np.ceil(n * s / MODEL_MM)) for n, s in zip(shape, sp_in))
    coords = tuple(np.clip((np.arange(n) + 0.5) * s / MODEL_MM - 0.5, 0, m - 1)
                   for n, s, m in zip(shape, sp_in, model_shape))
    grid = GridMap(shape, model_shape, (0, 1, 2), coords)
    return ct, body_of_row, C.InputCT.from_grid(ct, sp_in, grid, (MODEL_MM,) * 3, (1, 1)), model_shape


def _spine_on_model(ct_input: C.InputCT, model_shape):
    """Model voxels whose centre lies in bone (body or arch), and the body index of each model row."""
    centres = [(np.arange(n) + 0.5) * MODEL_MM for n in model_shape]
    mm = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, 3)
    # exact geometry of the phantom, not the noisy CT
    z, y, x = mm.T
    in_body = (y >= 5) & (y < 25) & (x >= 15) & (x < 35)
    in_arch = (y >= 25) & (y < 35) & (x >= 22) & (x < 28)
    local = (z - FOOT) % PITCH
    body = np.floor((z - FOOT) / PITCH).astype(int)
    bone = (in_body | in_arch) & (z >= FOOT) & (body < BODIES) & (local < PITCH - DISC)
    return bone.reshape(model_shape), body.reshape(model_shape)


def test_input_ct_samples_the_input_at_model_mm():
    ct, _, seen, _ = _column()
    # a point in the middle of the first body's front part (model mm = input mm here: both grids start at 0)
    assert abs(seen.sample(np.array([[FOOT + 10.0, 15.0, 25.0]]))[0] - 180.0) < 60
    assert seen.head_foot_spacing(0) == 1.0


def test_input_ct_finds_each_model_voxel_through_flips_a_transpose_and_a_crop():
    """At the input's resolution every model voxel is one input voxel: sampled at its model mm, the input gives
    exactly the model array's value there."""
    rng = np.random.default_rng(5)
    ct = rng.integers(-1000, 2000, (9, 11, 7)).astype(np.float32)
    reo = Reorientation((1, 0, 2), (True, False, True))
    tf = [2, 0, 1]
    transposed = reo.apply(ct).transpose(tf)
    bbox = [[1, transposed.shape[0]], [0, transposed.shape[1] - 2], [2, transposed.shape[2]]]
    model = transposed[tuple(slice(lo, hi) for lo, hi in bbox)]
    props = {"shape_before_cropping": list(transposed.shape), "bbox_used_for_cropping": bbox,
             "shape_after_cropping_and_before_resampling": [hi - lo for lo, hi in bbox]}
    grid = GridMap.from_properties(props, model.shape, tf, reo)
    spacing = (2.0, 0.5, 1.5)
    seen = C.InputCT.from_grid(ct, (1.0, 1.0, 1.0), grid, spacing, (1, 1))
    index = np.argwhere(np.ones(model.shape, bool))
    assert np.array_equal(seen.sample(index * np.asarray(spacing)), model[tuple(index.T)])
    # a crop holds the same values inside it (determine-postprocessing keeps only the raw image around the spine)
    window = (slice(2, 8), slice(1, 9), slice(0, 5))
    crop = seen.cropped(window)
    assert crop.array.shape == (6, 8, 5) and crop.array.base is None
    points = index * np.asarray(spacing)
    sampled = seen.sample(points)
    input_index = np.stack([np.interp(index[:, seen.model_axis[a]], *seen.inverse[a]) for a in range(3)], axis=1)
    inside = np.all([(input_index[:, a] >= w.start) & (input_index[:, a] < w.stop) for a, w in enumerate(window)],
                    axis=0)
    assert inside.sum() > 20 and np.array_equal(crop.sample(points[inside]), sampled[inside])


def test_discs_of_a_column_are_found_where_they_are_and_evenly_spaced():
    _, _, seen, model_shape = _column()
    bone, _ = _spine_on_model(seen, model_shape)
    curve = C.body_curve(bone.astype(np.int32), (MODEL_MM,) * 3, 0, seen.front)
    assert curve is not None
    # the curve runs through the bodies' front part, not the arch behind them
    middle = curve[len(curve) // 4:-len(curve) // 4]
    assert np.all((middle[:, 1] > 5.0) & (middle[:, 1] < 20.0)) and np.all(np.abs(middle[:, 2] - 25.0) < 3.0)
    score = C.endplate_score(C.profile(seen, curve))
    pitch = C.pitch_mm(score)
    assert abs(pitch - PITCH) <= 2
    discs = C.find_discs(score, pitch, 20.0)
    along = curve[discs, 0]  # the curve runs along axis 0, in model mm: index x spacing
    truth = FOOT + np.arange(1, BODIES) * PITCH - DISC / 2 - MODEL_MM / 2  # model voxel 0's centre is at 1.5 mm
    assert len(along) == len(truth)
    assert np.all(np.abs(np.sort(along) - truth) <= 2.5)
    assert C.regular(discs, pitch)


def test_the_pitch_is_the_distance_between_neighbouring_discs_not_its_multiple():
    # every other disc brighter (the chest series: its score correlates a little better at twice the pitch, the
    # range's end, than at the pitch itself): the distance between neighbouring discs is still the pitch
    step = int(20 / C.STEP_MM)
    score = np.zeros(12 * step)
    score[::step] = 1.0
    score[::2 * step] = 1.6
    score = np.convolve(score, np.hanning(9), mode="same")
    centred = score - score.mean()
    at = [np.dot(centred[:-lag], centred[lag:]) / (len(score) - lag) for lag in (step, 2 * step)]
    assert at[1] > at[0] >= C.HARMONIC_FRACTION * at[1]  # twice the pitch correlates better: argmax alone reads 40
    assert C.pitch_mm(score) == 20.0
    # a period alone: its peak, wherever it lies in the range
    plain = np.zeros(12 * step)
    plain[::step] = 1.0
    assert C.pitch_mm(np.convolve(plain, np.hanning(9), mode="same")) == 20.0


def test_a_run_loses_the_end_discs_that_are_not_dark_between_bright_endplates():
    step = int(24 / C.STEP_MM)
    values = np.full(9 * step, 150.0)
    discs = np.arange(1, 9) * step
    for k, d in enumerate(discs):
        if k in (0, 1, 4, 7):  # a bright band and nothing darker beside it: a body's middle, or a thin disc blurred
            values[d - 2:d + 3] = 400.0
        else:  # a disc: dark between its two bright endplates
            values[d - 6:d - 3] = values[d + 4:d + 7] = 400.0
            values[d - 1:d + 2] = 60.0
    assert list(C.disc_contrast(values, discs) < C.RUN_END_MIN_CONTRAST_HU) == [True, True, False, False, True,
                                                                                   False, False, True]
    # the two at the foot and the one at the head go; the one inside stays (evenly spaced between dark ones)
    assert list(C.dark_ended(values, discs)) == list(discs[2:7])
    # where the curve ends too close to the last one to see its flank, it cannot be judged (NaN): it stays
    assert list(C.dark_ended(values[:discs[-1] + 4], discs)) == list(discs[2:])
    assert len(C.dark_ended(values, discs[:2])) == 0


def test_irregular_or_too_few_discs_are_not_used():
    assert not C.regular(np.array([0, 48]), 24.0)  # two discs tell no spacing
    steps = np.array([0, 48, 96, 120, 144]) // C.STEP_MM  # a body's middle taken for a disc
    assert not C.regular(steps.astype(int), 24.0)
    assert C.regular((np.arange(5) * 24 / C.STEP_MM).astype(int), 24.0)


def _steps(mm):
    return (np.asarray(mm) / C.STEP_MM).astype(int)


@pytest.mark.parametrize("discs_mm, pitch, runs_mm", [
    # a thoracolumbar spine (three unseen phantoms of the demo): lumbar gaps at the foot, ...
    ([4.5, 40, 58.5, 77, 107.5, 138, 163.5, 188, 216, 240.5, 264, 287, 311, 335, 358], 25.0,
     [[77, 107.5, 138, 163.5, 188, 216, 240.5, 264, 287, 311, 335, 358]]),
    # ... a body's bright middle taken for a disc (241) and the disc beside it missed: two runs on either side, ...
    ([6.5, 25, 55, 83.5, 123.5, 148.5, 173.5, 199, 223, 241, 276, 300, 326.5, 350], 26.0,
     [[123.5, 148.5, 173.5, 199, 223], [276, 300, 326.5, 350]]),
    # ... a disc missed (156.5 -> 192)
    ([2.5, 37.5, 74.5, 110, 134.5, 156.5, 192, 218.5, 249, 274.5, 298, 324.5, 349, 377, 400.5], 25.5,
     [[192, 218.5, 249, 274.5, 298, 324.5, 349, 377, 400.5]]),
    ([0, 24, 40, 64, 88], 24.0, []),  # too short a run on either side of a false disc
    ([0, 34, 68, 102, 136], 34.0, []),  # a lumbar pitch: thick discs, two endplates each
])
def test_evenly_spaced_runs_are_read_where_the_whole_spine_is_not(discs_mm, pitch, runs_mm):
    assert not C.regular(_steps(discs_mm), pitch) or not runs_mm
    runs = C.regular_runs(_steps(discs_mm), pitch)
    assert [list(r * C.STEP_MM) for r in runs] == runs_mm


def test_a_disc_is_darker_than_the_endplates_either_side_of_it():
    """A disc between two bright endplates dips deep; a bright band in a body's middle, an endplate alone, do not."""
    mm = np.arange(0.0, 60.0, C.STEP_MM)
    disc = np.where(np.abs(mm - 30) <= 2, 80.0, 150.0)
    disc[(np.abs(mm - 30) > 2) & (np.abs(mm - 30) <= 3.5)] = 600.0
    band = np.where(np.abs(mm - 30) <= 2.5, 600.0, 150.0)
    endplate = np.where(mm < 30, 150.0, 60.0)
    endplate[(mm >= 28.5) & (mm < 30)] = 600.0
    at = _steps([30.0])
    assert C.disc_contrast(disc, at)[0] > 400
    assert C.disc_contrast(band, at)[0] <= 0
    assert C.disc_contrast(endplate, _steps([29.0]))[0] < C.RUN_MIN_CONTRAST_HU
    assert np.isnan(C.disc_contrast(disc, _steps([2.0]))[0])  # too near the end of the curve


def test_a_spine_is_read_where_its_discs_are_evenly_spaced_and_left_where_not():
    """A bright band in the top body's middle is taken for a disc instead of the one below it: the discs are not
    all evenly spaced, the run below is read (the fused lowest two bodies cut at their disc), the top left alone."""
    _, _, seen, model_shape = _column()
    bone, body = _spine_on_model(seen, model_shape)
    middle = FOOT + (BODIES - 1) * PITCH + (PITCH - DISC) / 2
    seen.array[int(middle) - 1:int(middle) + 2, 5:25, 15:35] = 900.0
    instance = np.where(bone, np.maximum(body, 1), 0).astype(np.int32)
    out, notes, found = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, seen, 20.0, 0.2)
    assert "used" not in found and len(found["runs_mm"]) == 1 and len(found["runs_mm"][0]) == BODIES - 2
    assert any("evenly spaced run" in n for n in notes) and any("cut 1 instance" in n for n in notes)
    assert len(np.unique(out[bone & (body == 0)])) == 1 and len(np.unique(out[bone & (body == 1)])) == 1
    assert len(np.unique(out[out > 0])) == BODIES


def test_instances_are_joined_only_between_two_discs_of_one_run():
    """A run of the first four discs: the fused lowest two bodies are cut at its first disc, the body cut across
    within it is joined, the one cut across above its last disc stays in two pieces."""
    _, _, seen, model_shape = _column()
    bone, body = _spine_on_model(seen, model_shape)
    rows = np.arange(model_shape[0])[:, None, None]
    instance = np.zeros(model_shape, np.int32)
    instance[bone & (body <= 1)] = 1
    for b in range(2, BODIES):
        mid = (FOOT + b * PITCH + (PITCH - DISC) / 2) / MODEL_MM
        instance[bone & (body == b)] = 10 * b
        if b in (2, 4):
            instance[bone & (body == b) & (rows >= mid)] = 10 * b + 1
    curve = C.body_curve(bone.astype(np.int32), (MODEL_MM,) * 3, 0, seen.front)
    score = C.endplate_score(C.profile(seen, curve))
    discs = C.find_discs(score, C.pitch_mm(score), 20.0)
    assert len(discs) == BODIES - 1
    out, notes = C.recut(instance, (MODEL_MM,) * 3, curve, [discs[:4]], 0.2)
    assert any("cut 1 instance" in n for n in notes) and any("joined 1 instance" in n for n in notes)
    pieces = [len(np.unique(out[bone & (body == b)])) for b in range(BODIES)]
    assert pieces == [1, 1, 1, 1, 2, 1]
    assert len(np.unique(out[out > 0])) == BODIES + 1


def test_fused_and_split_instances_end_at_the_discs_the_ct_shows():
    _, _, seen, model_shape = _column()
    bone, body = _spine_on_model(seen, model_shape)
    instance = np.zeros(model_shape, np.int32)
    # bodies 0+1 fused into one instance; body 2 cut across into two; the rest right
    instance[bone & (body <= 1)] = 1
    mid = (FOOT + 2 * PITCH + (PITCH - DISC) / 2) / MODEL_MM
    rows = np.arange(model_shape[0])[:, None, None]
    instance[bone & (body == 2) & (rows < mid)] = 2
    instance[bone & (body == 2) & (rows >= mid)] = 3
    for b in range(3, BODIES):
        instance[bone & (body == b)] = b + 1
    out, notes, found = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, seen, 20.0, 0.2)
    assert any("cut 1 instance" in n for n in notes) and any("joined 1 instance" in n for n in notes)
    assert len(found["discs_mm"]) == BODIES - 1
    assert np.array_equal(out > 0, instance > 0)  # every voxel kept, none added
    for b in range(BODIES):
        ids, counts = np.unique(out[bone & (body == b)], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum(), f"body {b} is spread over instances {ids} ({counts})"
    assert len(np.unique(out[out > 0])) == BODIES


def test_a_quiet_ct_s_3_mm_slices_show_its_discs():
    """3 mm slices hold one sample of a 4 mm disc (here only its upper endplate survives the phantom's rounding, so
    the discs are read up to a sample high): found where the 1 mm slices show them, evenly spaced, and used."""
    _, _, thin, model_shape = _column()
    _, _, thick, _ = _column(input_mm=3.0)
    bone, _ = _spine_on_model(thin, model_shape)
    instance = bone.astype(np.int32)
    found = [C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, ct, 20.0, 0.2)[2] for ct in (thin, thick)]
    assert found[1].get("used") and len(found[1]["discs_mm"]) == len(found[0]["discs_mm"]) == BODIES - 1
    assert np.abs(np.subtract(found[1]["discs_mm"], found[0]["discs_mm"])).max() <= 4.0


def test_a_lumbar_pitch_is_not_read_whole(monkeypatch):
    """Discs evenly spaced, but farther apart than thin discs lie: not read as a whole spine; its runs would need a
    median gap of thin discs too."""
    _, _, seen, model_shape = _column()
    bone, body = _spine_on_model(seen, model_shape)
    instance = np.where(bone, np.maximum(body, 1), 0).astype(np.int32)
    monkeypatch.setattr(C, "MAX_PITCH_MM", PITCH - 4.0)
    out, notes, found = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, seen, 20.0, 0.2)
    assert out is instance and "thick lumbar discs" in notes[0]
    assert "used" not in found and "runs_mm" not in found and len(found["discs_mm"]) == BODIES - 1


def test_thick_or_noisy_thick_slices_no_ct_or_off_change_nothing():
    _, _, seen, model_shape = _column(input_mm=3.5)
    bone, _ = _spine_on_model(seen, model_shape)
    instance = bone.astype(np.int32)
    out, notes, _ = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, seen, 20.0, 0.2)
    assert out is instance and "3.5 mm apart" in notes[0]
    for ct, score in ((None, 20.0), (seen, 0.0)):
        out, notes, _ = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, ct, score, 0.2)
        assert out is instance and notes == []
    _, _, seen, model_shape = _column(input_mm=3.0)
    noisy = replace(seen, array=seen.array + np.random.default_rng(3).normal(0, 40, seen.array.shape))
    assert C.unreadable(seen, 0) is None
    bone, _ = _spine_on_model(noisy, model_shape)
    instance = bone.astype(np.int32)
    out, notes, _ = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, noisy, 20.0, 0.2)
    assert out is instance and "3 mm apart" in notes[0] and "noise 4" in notes[0]
    _, _, seen, _ = _column(input_mm=2.5)
    noisy = replace(seen, array=seen.array + np.random.default_rng(3).normal(0, 40, seen.array.shape))
    assert C.unreadable(noisy, 0) is None  # thin slices are read whatever the noise


@pytest.mark.parametrize("seed", [1, 2])
def test_a_column_without_discs_is_left_alone(seed):
    """One long bone without endplates or discs (a fused spine, a femur): no disc, no cut."""
    _, _, seen, model_shape = _column(seed=seed)
    seen.array[:] = 180.0 + np.random.default_rng(seed).normal(0, 15, seen.array.shape)
    bone, _ = _spine_on_model(seen, model_shape)
    instance = bone.astype(np.int32)
    out, _, found = C.cut_at_ct_discs(instance, (MODEL_MM,) * 3, 0, seen, 20.0, 0.2)
    assert np.array_equal(out, instance)


def test_the_numbering_reads_the_ct_s_discs_when_asked():
    """Through ``number_vertebrae``: two bodies the network gave one level become two vertebrae at the disc the CT
    shows, and every body ends up in one vertebra of its own, numbered in order; off (0), nothing is read."""
    from dataclasses import replace

    from vertebraformer_nn import labels as L
    from vertebraformer_nn.inference.numbering import number_vertebrae
    from vertebraformer_nn.inference.postprocessing import DEFAULTS

    _, _, seen, model_shape = _column()
    bone, body = _spine_on_model(seen, model_shape)
    names = ["T9", "T8", "T7", "T6", "T5", "T4"]  # body 0 is the lowest: axis 0 grows towards the head
    said = np.where(body <= 1, 1, body)  # bodies 0 and 1 both "T8", their disc bridged: one instance
    rows = (np.arange(model_shape[0]) + 0.5) * MODEL_MM
    bridge = (rows >= FOOT + PITCH - DISC - MODEL_MM) & (rows < FOOT + PITCH + MODEL_MM)
    bone = bone | (bridge[:, None, None] & bone.any(axis=0)[None] & (body == 0))
    seg = np.full((27,) + tuple(model_shape), 0.001, np.float32)
    seg[0] = 0.97
    for b in range(BODIES):
        inside = bone & (said == b)
        seg[:, inside] = 0.001
        seg[L.ANATOMICAL_ORDER.index(names[b]) + 1, inside] = 0.97
    seg /= seg.sum(axis=0, keepdims=True)
    on = replace(DEFAULTS, ct_disc_min_score=20.0, split_height_ratio=0.0, level_run_height_ratio=0.0)
    result = number_vertebrae(seg.astype(np.float16), (MODEL_MM,) * 3, 0, 1, params=on, ct=seen)
    assert any("discs the CT shows" in n for n in result.notes)
    assert [i["name"] for i in result.instances] == names[::-1]
    for b in range(BODIES):
        values, counts = np.unique(result.labels[bone & (body == b)], return_counts=True)
        assert values[np.argmax(counts)] == L.ANATOMICAL_ORDER.index(names[b]) + 1
    off = number_vertebrae(seg.astype(np.float16), (MODEL_MM,) * 3, 0, 1, params=replace(on, ct_disc_min_score=0.0),
                           ct=seen)
    assert not any("CT" in n for n in off.notes) and len(off.instances) == BODIES - 1


@pytest.mark.parametrize("thoracic_pitch", [False, True])
def test_ribs_count_where_the_ct_s_discs_show_a_thoracic_pitch(thoracic_pitch):
    """Three instances the network calls C6, C7, T1, ribs found on the lower two: the ribs say T1 and T2 (so the
    top one is C7) only where the CT's discs were used at a thoracic pitch (``ct_disc_rib_bearing_strength``), or
    where ``anchor_rib_bearing_strength`` says so everywhere."""
    from dataclasses import replace

    from vertebraformer_nn import labels as L
    from vertebraformer_nn.inference.anchors import Anchor
    from vertebraformer_nn.inference.numbering import OrderedInstances, decode_instances
    from vertebraformer_nn.inference.postprocessing import DEFAULTS

    said = ["C6", "C7", "T1"]
    log_probs = np.full((3, 26), np.log(0.7 / 25))  # weak evidence: 2.4 nats for each named level
    for k, name in enumerate(said):
        log_probs[k, L.ANATOMICAL_ORDER.index(name)] = np.log(0.3)
    instance_map = np.zeros((12, 4, 4), np.int32)
    for k in range(3):
        instance_map[1 + 4 * k:4 + 4 * k, 1:3, 1:3] = k + 1
    found = OrderedInstances(instance_map, np.arange(1, 4), np.array([[3.5 + 14 * k, 7, 7] for k in range(3)]),
                             np.full(3, 30000.0), log_probs, {k + 1: L.ANATOMICAL_ORDER.index(n) + 1
                                                              for k, n in enumerate(said)},
                             anchors=[Anchor("rib_bearing", 1), Anchor("rib_bearing", 2)], anchors_looked_for=True,
                             on_border=np.zeros(3, bool), thoracic_pitch=thoracic_pitch)
    params = replace(DEFAULTS, ct_disc_rib_bearing_strength=8.0)
    names = [i["name"] for i in decode_instances(found, params).instances]
    assert names == (["C7", "T1", "T2"] if thoracic_pitch else said)
    everywhere = replace(DEFAULTS, anchor_rib_bearing_strength=8.0)
    assert [i["name"] for i in decode_instances(found, everywhere).instances] == ["C7", "T1", "T2"]
