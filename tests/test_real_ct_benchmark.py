"""The pure parts of benchmarks/real_ct.py (level check, binary Dice over the reference's extent, targets) and its
reading of the real TotalSegmentator reference: fast, no model."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import labels

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("real_ct", REPO / "benchmarks" / "real_ct.py")
rc = importlib.util.module_from_spec(_spec)
sys.modules["real_ct"] = rc  # dataclasses look their module up there
_spec.loader.exec_module(rc)

L1, L2, L3, T12 = (labels.code(n) for n in ("L1", "L2", "L3", "T12"))


def _stack():
    """A 12-slice column (axis 0 head-foot): L1 on slices 2-4, L2 on 5-7, L3 on 8-9; slices 0-1 and 10-11 hold no
    reference label."""
    ref = np.zeros((12, 4, 4), np.uint8)
    ref[2:5, 1:3, 1:3], ref[5:8, 1:3, 1:3], ref[8:10, 1:3, 1:3] = L1, L2, L3
    return ref


def test_level_check_takes_the_label_overlapping_most():
    ref = _stack()
    pred = np.zeros_like(ref)
    pred[2:5, 1:3, 1:3] = L1  # right
    pred[5:8, 1:3, 1:3] = L1  # L2 called L1 (a label that also names another vertebra)
    pred[5, 1, 1] = L2  # a little of the right label is not the most
    pred[8:10, 1:3, 1:2] = L3  # right, half covered
    rows = rc.level_check(ref, pred)
    assert [(r["reference"], r["predicted"], r["right"]) for r in rows] == [
        ("L1", "L1", True), ("L2", "L1", False), ("L3", "L3", True)]
    assert rows[1]["covered"] == 11 / 12 and rows[2]["covered"] == 0.5
    untouched = rc.level_check(ref, np.zeros_like(ref))
    assert [(r["predicted"], r["right"], r["covered"]) for r in untouched] == [(None, False, 0.0)] * 3


def test_binary_dice_only_over_the_reference_extent():
    ref = _stack()
    pred = np.where(ref > 0, ref + 1, 0).astype(np.uint8)  # every level wrong: binary Dice does not care
    pred[0:2, 1:3, 1:3] = T12  # an unlabelled neighbour above the reference: not scored at all
    dice, not_scored = rc.spine_dice(ref, pred, axis=0)
    assert dice == 1.0 and not_scored == [T12]
    pred[10:12, 1:3, 1:3] = 0
    pred[9, 1:3, 1:3] = 0  # 4 of the 32 reference voxels missed, inside the extent
    pred[3, 0, 0] = L1  # one false voxel inside the extent
    dice, _ = rc.spine_dice(ref, pred, axis=0)
    assert np.isclose(dice, 2 * 28 / (29 + 32))
    outside = rc.outside_extent(ref, 0)
    assert outside[:2].all() and outside[10:].all() and not outside[2:10].any()
    assert not rc.outside_extent(np.zeros_like(ref), 0).any()


def test_targets():
    verse014 = next(c for c in rc.CASES if c.name == "verse014")
    right = [{"reference": n, "right": True} for n in labels.LUMBAR]
    assert rc.target_verdict(verse014, 0.81, right) == "met"
    one_wrong = [*right[:4], {"reference": "L5", "right": False}]
    assert rc.target_verdict(verse014, 0.79, one_wrong) == "missed: Dice 0.79 < 0.80; 4 of L1/L2/L3/L4/L5 right, " \
        "5 needed"
    assert rc.target_text(verse014) == "binary Dice >= 0.80, L1-L5 right"
    example = next(c for c in rc.CASES if c.name == "example_ct")
    assert rc.target_text(example) == "binary Dice >= 0.75, >= 5 of T11-L5 right"
    assert rc.target_verdict(next(c for c in rc.CASES if c.name == "chest"), None, []) == "by eye"


def test_totalsegmentator_reference_reads_as_the_manifest_says(real_data):
    """TotalSegmentator's prediction on example_ct, read with the manifest's coding (VerSe = 51 - TS, the sacrum TS 26
    as background), is the VerSe-coded derived file voxel for voxel: T11-L5."""
    case = next(c for c in rc.CASES if c.name == "example_ct")
    reference, image = rc.read_reference(real_data / case.reference, case.coding)
    derived = sitk.GetArrayFromImage(sitk.ReadImage(str(
        real_data / "derived" / "example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz")))
    assert reference.shape == (112, 101, 122) and np.array_equal(reference, derived)
    assert rc.predicted_names(reference) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    raw = sitk.GetArrayFromImage(image)
    assert np.array_equal(reference == 0, (raw == 0) | (raw == 26))
