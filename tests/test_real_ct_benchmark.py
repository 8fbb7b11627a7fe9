"""The pure parts of benchmarks/real_ct.py (level check, binary Dice over the reference's extent, targets) and its
reading of the real TotalSegmentator reference, fast and without a model; and the built-in model on the two lumbar
real CT, scored as the script scores them (about 15 s)."""
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


# ------------------------------------------------------------------------------------------------ variants
_pspec = importlib.util.spec_from_file_location("real_ct_perturbed", REPO / "benchmarks" / "real_ct_perturbed.py")
rcp = importlib.util.module_from_spec(_pspec)
sys.modules["real_ct_perturbed"] = rcp
_pspec.loader.exec_module(rcp)


def _ct_image():
    a = np.full((8, 9, 10), -100.0, np.float32)  # fat
    a[2:6, 3:6, 3:7] = 600.0  # bone
    a[0] = -1000.0  # air
    image = sitk.GetImageFromArray(a.astype(np.int16))
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    return image


def test_the_builtin_model_meets_its_targets_on_the_lumbar_real_ct(real_data, tmp_path):
    """The user's path (``predict`` without a model) on verse014 and example_ct: binary Dice and levels as
    benchmarks/real_ct.py scores them meet the targets (verse014: Dice >= 0.80, L1-L5 right; example_ct: Dice >=
    0.75, at least 5 of T11-L5 right)."""
    from vertebraformer_nn.cli import main

    cases = [c for c in rc.CASES if c.name in ("verse014", "example_ct")]
    rc.link_inputs(real_data, tmp_path / "input", cases)
    out = tmp_path / "predictions"
    assert main(["predict", "-i", str(tmp_path / "input"), "-o", str(out), "--no_preview",
                 "--disable_progress_bar"]) == 0
    for case in cases:
        result = rc.score_case(case, real_data, out)
        assert result["target"] == "met", (case.name, result["dice"], result["levels"])


def test_variants_change_what_they_say_and_keep_the_grid():
    image = _ct_image()
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    for v in rcp.VARIANTS:
        out = v.ct(image, 3)
        assert out.GetSize() == image.GetSize() and out.GetDirection() == image.GetDirection(), v.name
        if not v.moves_voxels:
            assert out.GetSpacing() == image.GetSpacing() and out.GetOrigin() == image.GetOrigin(), v.name
    get = lambda name: sitk.GetArrayFromImage(rcp.BY_NAME[name].ct(image, 3))  # noqa: E731
    assert np.array_equal(get("original"), a)
    assert np.allclose(get("hu+40"), a + 40) and np.allclose(get("hu-40"), a - 40)
    assert np.allclose(get("bone0.7")[3, 4, 4], 100 + 0.7 * 500) and np.allclose(get("bone0.7")[1], a[1])
    assert np.allclose(get("bone1.4")[3, 4, 4], 100 + 1.4 * 500)
    noise = get("noise30") - a
    assert 20 < noise.std() < 40 and np.array_equal(get("noise30"), get("noise30"))  # seeded
    assert get("soft2").max() < get("soft1").max() < a.max()  # blur flattens the bone's peak
    big = rcp.BY_NAME["size1.1"].ct(image, 0)
    assert np.allclose(big.GetSpacing(), (0.88, 0.99, 2.2)) and np.allclose(big.GetOrigin(), (11.0, -22.0, 33.0))
    assert np.array_equal(sitk.GetArrayFromImage(big), a)


def test_variant_data_mirrors_the_real_layout_and_moves_the_reference_with_the_voxels(tmp_path):
    data = tmp_path / "real"
    case = rc.RealCase("x", "a/ct.nii.gz", "a/ref.nii.gz")
    (data / "a").mkdir(parents=True)
    (data / "MANIFEST.md").write_text("m")
    sitk.WriteImage(_ct_image(), str(data / case.ct))
    ref = sitk.GetImageFromArray(np.full((8, 9, 10), 22, np.uint8))
    ref.CopyInformation(_ct_image())
    sitk.WriteImage(ref, str(data / case.reference))
    before = (data / case.ct).read_bytes()
    for name in ("hu+40", "size0.9"):
        out = tmp_path / name
        rcp.write_variant_data(rcp.BY_NAME[name], data, out, [case])
        ct, moved = sitk.ReadImage(str(out / case.ct)), sitk.ReadImage(str(out / case.reference))
        assert (out / "MANIFEST.md").is_file() and ct.GetSpacing() == moved.GetSpacing()
        assert (out / case.reference).is_symlink() == (name == "hu+40")
        assert np.array_equal(sitk.GetArrayFromImage(moved), sitk.GetArrayFromImage(ref))
    assert (data / case.ct).read_bytes() == before  # the source is only read


def test_summary_counts_levels_and_targets_per_variant():
    def case(name, rights, target):
        return {"case": name, "levels": [{"right": r} for r in rights], "target": target}

    results = {"original": [case("a", [1, 1, 0], "met"), case("b", [0], "missed: ...")],
               "soft1": [case("a", [0, 0, 0], "missed: ..."), case("b", [1], "met")]}
    s = rcp.summarise(results)
    assert s["variants"]["original"] == {"levels_right": 2, "levels": 4, "met": ["a"]}
    assert s["target_met_in"] == {"a": 1, "b": 1}
    assert s["levels_right"] == {"min": 1, "max": 2, "mean": 1.5}
