"""Anatomical anchors of the numbering (inference/anchors.py), found in the image: on MultiSpine-Sim phantoms against
their complete ground truth, and, for checking only, on the real CTs that have masks (example_ct with the
TotalSegmentator-derived labels, verse014) and a real cervical mask (gl003: the dens needs no image).
The instances are the reference vertebrae, resampled to the CPU preset's 3.5 mm like the model grid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vertebraformer_nn import image_io
from vertebraformer_nn import labels as L
from vertebraformer_nn.inference.anchors import (ANCHOR_LEVELS, BONE_FLOOR_HU, LEVEL_ANCHORS, THIN_BONE_FRACTION,
                                                Anchor, anchor_log_prior, bone_threshold, find_anchors, noise_sd)
from vertebraformer_nn.inference.instances import instance_geometry
from vertebraformer_nn.inference.numbering import order_instances
from vertebraformer_nn.inference.postprocessing import DEFAULTS

SPACING = 3.5


def on_model_grid(ct_path, label_path, spacing=SPACING):
    """(HU, VerSe-coded labels) resampled to ``spacing`` (3.5 mm) in LPS; array axis 0 grows towards the head."""
    labels = image_io.reorient(image_io.read_label(label_path), "LPS")
    ct = image_io.reorient(image_io.read_image(ct_path), "LPS") if ct_path else None
    ref = ct if ct is not None else labels
    size = [int(round(n * s / spacing)) for n, s in zip(ref.GetSize(), ref.GetSpacing())]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing((spacing,) * 3)
    grid.SetOrigin(ref.GetOrigin())
    grid.SetDirection(ref.GetDirection())
    codes = sitk.GetArrayFromImage(sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    hu = None if ct is None else sitk.GetArrayFromImage(
        sitk.Resample(sitk.Cast(ct, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, -1024.0))
    return hu, codes


def found_anchors(hu, codes, exclude=(), spacing=SPACING):
    """(kind, the VerSe name of its vertebra) of every anchor found with the reference vertebrae as instances."""
    present = [int(c) for c in np.unique(codes) if c in L.VERTEBRA_CODES and c not in exclude]
    instances = np.zeros(codes.shape, np.int32)
    for i, c in enumerate(present, start=1):
        instances[codes == c] = i
    ids, centres, _ = instance_geometry(instances, (spacing,) * 3)
    ids = ids[order_instances(centres, 0, 1)]
    found, _ = find_anchors(hu, instances, ids, (spacing,) * 3, 0, 1)
    return [(a.kind, L.name(present[ids[a.instance] - 1])) for a in found]


def anchors_of(hu, codes, exclude=(), spacing=SPACING):
    """{kind: the VerSe name of its vertebra} of the anchors that fix a level (LEVEL_ANCHORS)."""
    return {kind: name for kind, name in found_anchors(hu, codes, exclude, spacing) if kind in LEVEL_ANCHORS}


def rib_bearing_of(hu, codes, spacing=SPACING):
    """The VerSe names of the vertebrae found bearing ribs, head to foot."""
    return [name for kind, name in found_anchors(hu, codes, spacing=spacing) if kind == "rib_bearing"]


@pytest.fixture(scope="module")
def phantom_found(sim_root):
    """Per phantom case: (index entry, every anchor found as (kind, name))."""
    index = json.loads((sim_root / "ground_truth" / "index.json").read_text())
    out = []
    for case in index["cases"]:
        hu, codes = on_model_grid(sim_root / case["image"], sim_root / case["truth"]["vertebrae"])
        out.append((case, found_anchors(hu, codes)))
    return out


@pytest.fixture(scope="module")
def phantom_anchors(phantom_found):
    """Per phantom case: (index entry, {kind: name} of the anchors that fix a level)."""
    return [(case, {k: n for k, n in found if k in LEVEL_ANCHORS}) for case, found in phantom_found]


def _eligible(case, kind):
    """Whether the truth shows what the anchor needs: the whole anchoring vertebra and what tells it."""
    names = [L.name(c) for c in case["levels"]]
    whole = {L.name(c) for c in case["levels"] if c not in case["partial"]}
    if kind == "last_rib":
        last = "T13" if "T13" in names else "T12"
        return last in whole and "L1" in names
    if kind == "sacrum":
        return names[-1] in ("L5", "L6") and names[-1] in whole
    return {"C1", "C2"} <= whole  # skull (above C1), dens (C2 in C1)


@pytest.mark.parametrize("kind", LEVEL_ANCHORS)
def test_phantom_anchors_are_right_and_found_where_the_truth_shows_them(phantom_anchors, kind):
    found = [(case, anchors[kind]) for case, anchors in phantom_anchors if kind in anchors]
    wrong = [(case["case"], name) for case, name in found if name not in ANCHOR_LEVELS[kind]]
    assert not wrong, f"{kind} anchors on the wrong vertebra: {wrong}"
    eligible = [case["case"] for case, _ in phantom_anchors if _eligible(case, kind)]
    missed = sorted(set(eligible) - {case["case"] for case, _ in found})
    assert eligible, f"no phantom case shows a {kind} anchor"
    assert len(missed) <= len(eligible) // 4, f"{kind} anchor missed in {missed} of {eligible}"


def test_rib_bearing_phantom_vertebrae_are_thoracic_and_most_thoracic_ones_are_found(phantom_found):
    found, whole_thoracic = [], []
    for case, anchors in phantom_found:
        bearing = [name for kind, name in anchors if kind == "rib_bearing"]
        found += [(case["case"], name) for name in bearing]
        whole_thoracic += [(case["case"], L.name(c), L.name(c) in bearing) for c in case["levels"]
                           if L.name(c).startswith("T") and c not in case["partial"]]
    wrong = [(case, name) for case, name in found if name not in ANCHOR_LEVELS["rib_bearing"]]
    # where the junction is steeply tilted C7 takes T1's first rib (ctspine1k_verse502_CT-iso: they share 4 of their 9
    # rows at 3.5 mm), the limit anchors.py states; any other vertebra, or more of them, is a defect
    assert found and len(wrong) <= 1 and all(name in ("C7", "L1") for _, name in wrong), wrong
    missed = [(case, name) for case, name, hit in whole_thoracic if not hit]
    assert len(missed) <= len(whole_thoracic) // 4, f"ribs missed on {missed} of {len(whole_thoracic)}"


def test_the_t13_subject_anchors_its_last_rib_on_t12_or_t13(phantom_anchors):
    with_t13 = [(case, anchors) for case, anchors in phantom_anchors
                if 28 in case["levels"] and 20 in case["levels"]]
    for case, anchors in with_t13:
        assert anchors.get("last_rib") in ("T12", "T13", None), case["case"]


def test_real_abdomen_ct_sacrum_below_l5_and_last_rib_at_t12(real_data):
    derived = real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz"
    hu, codes = on_model_grid(real_data / "totalsegmentator" / "example_ct.nii.gz", derived)
    assert anchors_of(hu, codes) == {"sacrum": "L5", "last_rib": "T12"}


def test_real_abdomen_ct_with_faint_osteoporotic_bone_keeps_its_anchors(real_data):
    # every HU above 100 brought halfway down to 100: the vertebrae's median 162 -> 131 HU, and the last ribs, which
    # a fixed 200 HU threshold loses at a quarter of that, fall as far as the vertebrae do
    derived = real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz"
    hu, codes = on_model_grid(real_data / "totalsegmentator" / "example_ct.nii.gz", derived)
    faint = np.where(hu > 100.0, 100.0 + 0.5 * (hu - 100.0), hu)
    assert bone_threshold(faint, codes, DEFAULTS.anchor_bone_hu) < 140.0
    assert anchors_of(faint, codes) == {"sacrum": "L5", "last_rib": "T12"}


def test_real_ribs_are_found_on_the_thoracic_vertebrae_only(real_data):
    # example_ct: T11 (a 3-slice sliver at the top) and T12 bear ribs, L1-L5 none; verse014 (L1-L5): none
    derived = real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz"
    hu, codes = on_model_grid(real_data / "totalsegmentator" / "example_ct.nii.gz", derived)
    assert set(rib_bearing_of(hu, codes)) <= {"T11", "T12"} and "T12" in rib_bearing_of(hu, codes)
    hu, codes = on_model_grid(real_data / "verse_sub-verse014" / "sub-verse014_ct.nii.gz",
                              real_data / "verse_sub-verse014" / "sub-verse014_seg-vert_msk.nii.gz")
    assert rib_bearing_of(hu, codes) == []


def test_noise_is_measured_in_soft_tissue_whatever_the_bone_beside_it():
    rng = np.random.default_rng(3)
    image = np.full((40, 40, 40), 40.0)
    image[10:30, 15:25, 15:25] = 700.0  # bone: its edges are outliers, not noise
    for sd in (10.0, 60.0):
        assert noise_sd(image + rng.normal(0.0, sd, image.shape)) == pytest.approx(sd, rel=0.1)
    assert noise_sd(np.full((4, 4, 4), 40.0)) == 0.0  # too few voxels to tell


def test_bone_threshold_follows_faint_vertebrae_but_never_into_soft_tissue_or_noise():
    rng = np.random.default_rng(4)
    vertebrae = np.zeros((30, 30, 30), np.int32)
    vertebrae[10:20, 10:20, 10:20] = 1
    tissue = np.full(vertebrae.shape, 40.0)

    def case(vertebra_hu, sd):
        return np.where(vertebrae > 0, vertebra_hu, tissue) + rng.normal(0.0, sd, tissue.shape)

    assert bone_threshold(case(300.0, 10.0), vertebrae, 200.0) == 200.0  # dense bone: the fixed threshold
    # faint: its median, lowered for thin bone (ribs read fainter than bodies at 3.5 mm)
    assert bone_threshold(case(170.0, 10.0), vertebrae, 200.0) == pytest.approx(THIN_BONE_FRACTION * 170.0, abs=3.0)
    assert bone_threshold(case(80.0, 10.0), vertebrae, 200.0) == BONE_FLOOR_HU  # never into soft tissue
    assert bone_threshold(case(150.0, 45.0), vertebrae, 200.0) == pytest.approx(50.0 + 3 * 45.0, rel=0.1)  # noise
    assert bone_threshold(case(150.0, 10.0), np.zeros_like(vertebrae), 200.0) == 200.0  # no vertebra: as given


def test_anchors_on_a_fine_grid_are_looked_for_on_a_coarser_one_and_found_the_same(real_data):
    # a 1.5 mm model grid is read every second voxel (ANCHOR_GRID_MM): the same anchors as at 3.5 mm
    derived = real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz"
    hu, codes = on_model_grid(real_data / "totalsegmentator" / "example_ct.nii.gz", derived, spacing=1.5)
    assert anchors_of(hu, codes, spacing=1.5) == {"sacrum": "L5", "last_rib": "T12"}


def test_real_lumbar_crop_shows_no_false_anchor(real_data):
    # verse014: L1-L5 in an 80 mm wide crop, 17 mm below L5: too little of the sacrum to call it one
    hu, codes = on_model_grid(real_data / "verse_sub-verse014" / "sub-verse014_ct.nii.gz",
                              real_data / "verse_sub-verse014" / "sub-verse014_seg-vert_msk.nii.gz")
    found = anchors_of(hu, codes)
    assert all(name in ANCHOR_LEVELS[kind] for kind, name in found.items())
    # the top one or two vertebrae left out (as a network may miss the first vertebra of a crop): the bone above
    # the first instance is a lumbar vertebra of its size, not a skull base (which called L2 or L3 C1)
    for left_out in ((20,), (20, 21)):
        assert "skull" not in anchors_of(hu, codes, exclude=left_out), left_out


def test_thoracic_vertebrae_left_out_above_the_first_are_no_skull(phantom_anchors, sim_root):
    # the phantoms that start in the thorax, without their top two vertebrae: the bone above the first instance is
    # those vertebrae with their ribs (a "skull" in 5 of 6 before the skull had to lie above it and outsize it)
    tried = []
    for case, _ in phantom_anchors:
        first = L.name(case["levels"][0])
        if first.startswith("T") and first != "T1":
            hu, codes = on_model_grid(sim_root / case["image"], sim_root / case["truth"]["vertebrae"])
            tried.append((case["case"], anchors_of(hu, codes, exclude=tuple(case["levels"][:2])).get("skull")))
    assert tried and all(skull is None for _, skull in tried), tried


def test_real_cervical_mask_dens_rises_into_c1(real_data):
    # gl003 (C1-T5); gl017 shows the same but is stored as float64 and takes 14 s to read
    _, codes = on_model_grid(None, real_data / "verse_masks_only" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz")
    assert anchors_of(None, codes) == {"dens": "C2"}
    assert anchors_of(None, codes, exclude=(1,)) == {}  # without C1's ring there is no dens anchor


def test_anchor_log_prior_penalises_the_levels_an_anchor_does_not_allow():
    prior = anchor_log_prior([Anchor("last_rib", 1), Anchor("sacrum", 2)], 3, DEFAULTS)
    assert prior.shape == (3, 26) and not prior[0].any()
    allowed = [L.ANATOMICAL_ORDER.index(n) for n in ("T12", "T13")]
    assert (prior[1, allowed] == 0).all() and (np.delete(prior[1], allowed) == -DEFAULTS.anchor_rib_strength).all()
    assert prior[2, L.ANATOMICAL_ORDER.index("L5")] == 0 and prior[2, L.ANATOMICAL_ORDER.index("L4")] < 0
    off = anchor_log_prior([Anchor("sacrum", 0)], 1, DEFAULTS.__class__(anchor_sacrum_strength=0.0))
    assert not off.any()
    assert not anchor_log_prior([Anchor("rib_bearing", 0)], 1, DEFAULTS).any()  # off by default
    ribs = anchor_log_prior([Anchor("rib_bearing", 0)], 1, DEFAULTS.__class__(anchor_rib_bearing_strength=8.0))[0]
    thoracic = [L.ANATOMICAL_ORDER.index(n) for n in (*L.THORACIC, "T13")]
    assert (ribs[thoracic] == 0).all() and (np.delete(ribs, thoracic) == -8.0).all()


def test_anchors_need_instances_on_the_image_grid():
    with pytest.raises(ValueError, match="not on the instances' grid"):
        find_anchors(np.zeros((4, 4, 4)), np.ones((5, 4, 4), np.int32), [1], (3.5,) * 3, 0, 1)
    assert find_anchors(None, np.zeros((4, 4, 4), np.int32), [], (3.5,) * 3, 0, 1) == ([], [])


def test_left_right_axis_is_found_from_the_vertebrae_mirror_symmetry(real_data):
    # gl003 (C1-T5) on the LPS grid: axis 2 (x) runs left-right, the second in-plane axis; swapped, the first
    from vertebraformer_nn.inference.anchors import _Geometry, _instance_info, _left_right

    _, codes = on_model_grid(None, real_data / "verse_masks_only" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz")
    for instances, expected in ((codes, 1), (np.swapaxes(codes, 1, 2), 0)):
        geo = _Geometry(instances.shape, (SPACING,) * 3, 0, 1)
        boxes = ndimage.find_objects(instances)
        info = [_instance_info(instances, int(c), boxes[c - 1], geo) for c in np.unique(instances)
                if c in L.VERTEBRA_CODES]
        assert _left_right(info, geo) == expected
