"""Vertebra boundaries snapped to the bone edge (inference/bone_boundary.py): synthetic CT with bone blocks of known
extent in soft tissue, label maps off by a voxel or two as a 3.5 mm network's are. No model."""
from __future__ import annotations

import numpy as np
import pytest

from vertebraformer_nn.inference.bone_boundary import band_footprint, fill_cavities, snap_to_bone

SHAPE = (40, 30, 30)
UPPER = (slice(6, 18), slice(8, 22), slice(8, 22))  # two "vertebrae" of bone, a 4-voxel "disc" between them
LOWER = (slice(22, 34), slice(8, 22), slice(8, 22))
CORTEX_HU, TRABECULAR_HU, TISSUE_HU, DISC_HU = 700.0, 160.0, 40.0, 90.0


def _ct(shift_hu: float = 0.0, noise_hu: float = 0.0) -> np.ndarray:
    ct = np.full(SHAPE, TISSUE_HU, np.float32)
    ct[18:22, 8:22, 8:22] = DISC_HU
    for block in (UPPER, LOWER):
        ct[block] = CORTEX_HU
        inner = tuple(slice(s.start + 1, s.stop - 1) for s in block)
        ct[inner] = TRABECULAR_HU  # a 1-voxel cortex around dark trabecular bone, as in an osteoporotic body
    if noise_hu:
        ct += np.random.default_rng(0).normal(0, noise_hu, SHAPE).astype(np.float32)
    return ct + shift_hu


def _truth() -> np.ndarray:
    truth = np.zeros(SHAPE, np.uint8)
    truth[UPPER], truth[LOWER] = 20, 21
    return truth


def _network_like() -> np.ndarray:
    """The truth moved by one voxel along two axes and grown by one on a face, as a coarse grid's boundary is
    (errors within the band: a voxel farther out stays as it is)."""
    labels = np.roll(np.roll(_truth(), 1, axis=1), -1, axis=2)
    labels[UPPER[0], 8:23, 22] = 20
    return labels


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_a_boundary_a_voxel_off_moves_onto_the_bone_and_keeps_each_label():
    labels = _network_like()
    before = _dice(labels, _truth())
    snapped, info = snap_to_bone(labels, _ct(), (1.0, 1.0, 1.0), 2.0)
    assert _dice(snapped, _truth()) > 0.99 > before + 0.1
    # each block keeps its own label; the disc between them is left out
    assert set(np.unique(snapped[UPPER])) == {20} and set(np.unique(snapped[LOWER])) == {21}
    assert not snapped[18:22].any()
    assert TISSUE_HU < info["threshold_hu"] < CORTEX_HU and info["added"] > 0 and info["removed"] > 0


def test_the_threshold_follows_a_shifted_hu_scale():
    """A scanner (or phantom style) whose HU are offset gets the same labels: the threshold is the scan's own."""
    labels = _network_like()
    plain, info = snap_to_bone(labels, _ct(), (1.0, 1.0, 1.0), 2.0)
    shifted, info_shifted = snap_to_bone(labels, _ct(shift_hu=-250.0), (1.0, 1.0, 1.0), 2.0)
    assert np.array_equal(plain, shifted)
    assert info_shifted["threshold_hu"] == pytest.approx(info["threshold_hu"] - 250.0)


def test_noise_does_not_undo_the_gain():
    snapped, _ = snap_to_bone(_network_like(), _ct(noise_hu=60.0), (1.0, 1.0, 1.0), 2.0)
    assert _dice(snapped, _truth()) > _dice(_network_like(), _truth()) + 0.05


def test_labels_far_from_the_boundary_never_change():
    labels = _network_like()
    snapped, _ = snap_to_bone(labels, _ct(), (1.0, 1.0, 1.0), 2.0)
    core = (slice(10, 14), slice(12, 18), slice(12, 18))
    assert np.array_equal(snapped[core], labels[core])
    # a bright structure beyond the band is not taken in
    ct = _ct()
    ct[10:14, 26:29, 12:16] = CORTEX_HU
    far, _ = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0)
    assert not far[10:14, 26:29, 12:16].any()


def test_growth_takes_in_a_body_front_the_network_left_out_and_nothing_apart_from_it():
    """The network's body stops short of the front of the bone (real CT: the anterior third of dark trabecular bone
    left out). Within bone_edge_grow_mm the bright cortex joins through the cortex it touches, and the dark bone it
    then encloses fills; a bright structure as near but not touching the spine stays out, and so does bone beyond
    the reach."""
    truth, labels, ct = _truth(), _truth(), _ct()
    labels[UPPER[0], 8:14, UPPER[2]] = 0  # the upper block's front 6 voxels missing
    ct[8:16, 2:5, 12:16] = CORTEX_HU  # a bright structure 4 voxels in front of the spine, apart from it
    band, _ = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0)
    grown, info = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0, grow_mm=7.0)
    assert info["grow_mm"] == 7.0 and snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0, grow_mm=1.0)[1]["grow_mm"] == 2.0
    assert band[UPPER[0], 8:11, UPPER[2]].sum() == 0  # the band alone does not reach the front
    assert set(np.unique(grown[UPPER])) == {20} and set(np.unique(grown[LOWER])) == {21}
    assert _dice(grown, truth) > 0.99 > _dice(band, truth) + 0.05
    assert not grown[8:16, 2:5, 12:16].any() and not grown[18:22].any()
    # reach too short for the front: the same as the band's
    assert np.array_equal(snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0, grow_mm=2.0)[0], band)


def test_off_empty_or_coarser_than_the_model_leaves_labels_alone():
    labels, ct = _network_like(), _ct()
    for out, info in (snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 0.0),
                      snap_to_bone(labels, ct, (4.0, 4.0, 4.0), 2.0, model_spacing=(3.5, 3.5, 3.5))):
        assert np.array_equal(out, labels) and info["threshold_hu"] is None
    empty = np.zeros(SHAPE, np.uint8)
    assert not snap_to_bone(empty, ct, (1.0, 1.0, 1.0), 2.0)[0].any()
    with pytest.raises(ValueError, match="differ in shape"):
        snap_to_bone(labels, ct[:-1], (1.0, 1.0, 1.0), 2.0)


def test_the_band_reaches_only_along_axes_finer_than_the_model():
    footprint = band_footprint(2.0, (6.8, 1.0, 1.0), model_spacing=(3.5, 3.5, 3.5))
    assert footprint.shape == (1, 5, 5)
    # at least one voxel where the spacing exceeds the band, the face neighbours always
    footprint = band_footprint(2.0, (3.0, 3.0, 1.0))
    assert footprint.shape == (3, 3, 5) and footprint[0, 1, 2] and footprint[1, 0, 2] and not footprint[0, 0, 2]
    assert band_footprint(2.0, (4.0, 4.0, 4.0), model_spacing=(3.5, 3.5, 3.5)) is None


def test_an_enclosed_cavity_is_filled_an_open_one_is_not():
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[1:8, 1:8, 1:8] = 5
    labels[3:6, 3:6, 3:6] = 0          # enclosed on every side: a dark patch inside a body
    labels[3:6, 3:6, 6:8] = 0          # ... now it opens to the outside through a channel
    assert not fill_cavities(labels)[4, 4, 4]
    labels[3:6, 3:6, 6:8] = 5
    filled = fill_cavities(labels)
    assert (filled[3:6, 3:6, 3:6] == 5).all()
    canal = np.zeros((9, 9, 9), np.uint8)
    canal[:, 1:8, 1:8] = 7
    canal[:, 3:6, 3:6] = 0             # a canal open at both ends of the array stays open
    assert not fill_cavities(canal)[:, 4, 4].any()


def test_cavities_are_what_scipy_fills_as_holes():
    """``fill_cavities`` labels the enclosed background in one pass; scipy's hole filling is the definition."""
    from scipy import ndimage
    rng = np.random.default_rng(0)
    for _ in range(200):  # thin arrays included (cc3d's boolean path mislabels some)
        own = rng.random(tuple(rng.integers(1, 10, 3))) < rng.random()
        filled = fill_cavities(own.astype(np.uint8) * 9)
        expected = np.where(ndimage.binary_fill_holes(own), 9, 0)
        np.testing.assert_array_equal(filled, expected)


def test_the_same_scan_stored_in_another_axis_order_gets_the_same_labels():
    """Where two vertebrae's growth meets, the voxel's label must not depend on which axis comes first."""
    labels, ct = _network_like(), _ct(noise_hu=60.0)
    labels[21, 10:20, 10:20] = 21  # a 3-voxel gap: its middle is as near to one vertebra as to the other
    ct[18:21, 14:16, 8:22] = CORTEX_HU  # a bright bridge across it that both vertebrae grow into
    snapped, _ = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0)
    order = (2, 0, 1)
    moved, _ = snap_to_bone(np.flip(labels.transpose(order), 1), np.flip(ct.transpose(order), 1), (1.0, 1.0, 1.0), 2.0)
    assert np.array_equal(np.flip(moved, 1), snapped.transpose(order))
    assert set(np.unique(snapped[19, 14:16, 12:18])) == {20}  # the tie goes to the lowest code


def test_a_vertebra_cut_by_the_field_of_view_keeps_its_cut_face():
    """The array's edge is no boundary: a vertebra running out of the scan keeps its cut face, dark trabecular
    bone behind its cortex included."""
    ct, labels = _ct(), _truth()
    labels[:6, 8:22, 8:22] = 20  # the upper vertebra reaches the array's top face
    ct[:6, 8:22, 8:22] = CORTEX_HU
    ct[:6, 9:21, 9:21] = TRABECULAR_HU - 100.0  # darker than the tissue's threshold: osteoporotic bone, cut
    snapped, _ = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0)
    assert np.array_equal(snapped[:6], labels[:6])


def test_a_faint_thin_vertebra_is_not_deleted():
    """A vertebra fainter than the rest and thin enough to lie wholly in the band keeps its labels."""
    ct, labels = _ct(), _truth()
    ct[UPPER] = TISSUE_HU + 20.0  # as faint as soft tissue (the band's threshold comes from the bright one)
    snapped, _ = snap_to_bone(labels, ct, (1.0, 1.0, 1.0), 2.0)
    assert np.count_nonzero(snapped == 20) >= np.count_nonzero(labels == 20)
    assert np.array_equal(snapped[LOWER] > 0, labels[LOWER] > 0)
