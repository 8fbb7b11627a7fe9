"""Converters and the MultiSpine assembler on tiny hand-made sources (fast; no phantoms needed).

Physical-space checks read the source files with SimpleITK / nibabel directly, not through the converters' code."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.dataset_conversion import ConversionError, convert_source, finalize
from vertebraformer_nn.dataset_conversion import common, splits
from vertebraformer_nn.dataset_conversion import partial_vertebrae as pv
from vertebraformer_nn.dataset_conversion.cli import add_parser

# --- helpers ---------------------------------------------------------------------------------------------------

# VerSe's usual scanner orientation: index axes point to P, I, R (nibabel affine, RAS world), 1 x 2 x 1 mm.
PIR_AFFINE = np.array([[0, 0, -1.0, 20], [-1.0, 0, 0, 30], [0, -2.0, 0, 50], [0, 0, 0, 1]])


def _save_qform_only(arr, affine, path: Path):
    """NIfTI as VerSe ships it: qform_code 1, sform_code 0."""
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, 1)
    img.set_sform(None, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def verse_arrays(codes, shape=(30, 40, 24), first=4, height=8):
    """CT and mask (PIR array order): vertebrae stacked along axis 1 (I), the head-foot axis."""
    ct = np.full(shape, -1000, np.int16)
    seg = np.zeros(shape, np.float64)  # VerSe ships float64 masks
    for i, c in enumerate(codes):
        j0 = first + i * height
        seg[8:22, j0:j0 + height - 2, 6:18] = c
        ct[8:22, j0:j0 + height - 2, 6:18] = 300 + 10 * i
    return ct, seg


def add_verse_subject(root: Path, sub: str, codes=(19, 28, 20), release="dataset-verse20training", ctd=True,
                      prefix=None, **kw):
    prefix = prefix or f"sub-{sub}"
    ct, seg = verse_arrays(codes, **kw)
    rel = root / release
    _save_qform_only(ct, PIR_AFFINE, rel / "rawdata" / f"sub-{sub}" / f"{prefix}_ct.nii.gz")
    _save_qform_only(seg, PIR_AFFINE, rel / "derivatives" / f"sub-{sub}" / f"{prefix}_seg-vert_msk.nii.gz")
    if ctd:
        entries = [{"direction": ["P", "I", "R"]}]
        for c in [c for c in codes if c]:
            idx = np.argwhere(seg == c).mean(axis=0)
            entries.append({"label": int(c), "X": float(idx[0]), "Y": float(idx[1]), "Z": float(idx[2])})
        (rel / "derivatives" / f"sub-{sub}" / f"{prefix}_seg-subreg_ctd.json").write_text(json.dumps(entries))
    return rel


def lps_image(arr_kji, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=None):
    img = sitk.GetImageFromArray(arr_kji)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def stacked_kji(codes, shape=(30, 24, 20), first=3, height=6, touch_bottom=False, touch_top=False):
    """Array in k, j, i order with vertebrae stacked along k (S for an identity direction)."""
    ct = np.full(shape, -1000, np.int16)
    seg = np.zeros(shape, np.uint8)
    for i, c in enumerate(codes):
        k0 = first + i * height
        seg[k0:k0 + height - 1, 6:18, 5:15] = c
        ct[k0:k0 + height - 1, 6:18, 5:15] = 400
    if touch_bottom:
        seg[0:first, 6:18, 5:15] = seg[first, 10, 10]
    if touch_top:
        last = first + len(codes) * height - 2
        seg[last:, 6:18, 5:15] = seg[last, 10, 10]
    return ct, seg


def add_ctspine1k_case(root: Path, stem: str, codes=(20, 21, 22), collection="MSD-T03", **kw):
    ct, seg = stacked_kji(codes, **kw)
    (root / "volumes" / collection).mkdir(parents=True, exist_ok=True)
    (root / "labels" / collection).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(lps_image(ct), str(root / "volumes" / collection / f"{stem}.nii.gz"))
    sitk.WriteImage(lps_image(seg), str(root / "labels" / collection / f"{stem}_seg.nii.gz"))


def write_split(root: Path, train=(), test_public=(), test_private=()):
    blocks = [("trainset", train), ("test_public", test_public), ("test_private", test_private)]
    (root / "data_split.txt").write_text("\n".join(f"{b}:\n" + "".join(f"{s}.nii.gz\n" for s in stems) for b, stems in blocks))


def tree_state(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def read(path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def assert_labels_in_place(source_mask: sitk.Image, converted: sitk.Image, ignored=(), background_may_be_ignored=False,
                           n_background=500, seed=0):
    """Every labelled voxel of the source (and a sample of background) has its training label at the same physical
    point of the converted training-label map: the label of its VerSe code, or the ignore label for the vertebrae
    cut by the field of view (``ignored``); background stays background (or may be ignore, in a VerSe case's border
    slabs, with ``background_may_be_ignored``)."""
    src = sitk.GetArrayFromImage(source_mask)
    conv = sitk.GetArrayFromImage(converted)
    rng = np.random.default_rng(seed)
    fg = np.argwhere(src != 0)
    bg = np.argwhere(src == 0)
    pts = np.concatenate([fg, bg[rng.choice(len(bg), min(n_background, len(bg)), replace=False)]])
    for k, j, i in pts:
        p = source_mask.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
        ci, cj, ck = converted.TransformPhysicalPointToIndex(p)
        code = int(src[k, j, i])
        expected = {labels.IGNORE_LABEL} if code in ignored else {labels.verse_to_training(np.array(code)).item()}
        if code == 0 and background_may_be_ignored:
            expected.add(labels.IGNORE_LABEL)
        assert conv[ck, cj, ci] in expected, (p, expected, conv[ck, cj, ci])


def assert_centroids_inside(case_info: dict, label_img: sitk.Image):
    arr = sitk.GetArrayFromImage(label_img)
    arr = labels.training_to_verse(np.where(arr == labels.IGNORE_LABEL, 0, arr))
    assert case_info["centroids_mm"], "no centroids recorded"
    for code, point in case_info["centroids_mm"].items():
        i, j, k = label_img.TransformPhysicalPointToIndex(point)
        assert arr[k, j, i] == int(code), (code, point, arr[k, j, i])


def raw_folder(base: Path, dataset_id=501) -> Path:
    return base / "nnUNet_raw" / f"Dataset{dataset_id:03d}_MultiSpine"


def run_cli(*argv) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


# --- pure pieces -----------------------------------------------------------------------------------------------

def test_partial_vertebrae_of_labelling_sources_become_ignore_exactly():
    arr = np.zeros((10, 4, 4), np.int64)
    arr[0:3] = 20   # touches the first S slice
    arr[4:6] = 21   # inside
    arr[7:10, 0, 0] = 28  # touches the last slice with a single voxel column
    arr[5, :, 3] = 22  # touches the left/right border only: not cut along head-foot
    for superior in ((0, 1), (0, -1)):
        ignore, cut, slabs = pv.ignore_region(arr, superior, (2.0, 1.0, 1.0))
        assert cut == [28, 20] and slabs == []  # anatomical order: T13 before L1
        np.testing.assert_array_equal(ignore, np.isin(arr, [20, 28]))
    assert pv.cut_vertebrae(np.where(np.isin(arr, [20, 28]), 0, arr), 0) == []
    # the same on another axis: head-foot is axis 2 of this array
    ignore, cut, _ = pv.ignore_region(np.moveaxis(arr, 0, 2), (2, 1), (1.0, 1.0, 2.0))
    assert cut == [28, 20] and ignore.sum() == np.isin(arr, [20, 28]).sum()


def _unlabelled_border_case():
    """A VerSe-style array (k = S, 1 mm) and its complete truth: T11 cut by the head border and L2 by the foot
    border, both unlabelled (VerSe's convention); T12 and L1 whole and labelled."""
    arr = np.zeros((40, 50, 50), np.int64)
    truth = np.zeros_like(arr)
    truth[33:40, 20:30, 20:30] = 18  # T11, cut at the head border (k = 39)
    truth[22:31, 20:30, 21:31] = 19  # T12
    truth[11:20, 21:31, 20:30] = 20  # L1
    truth[0:9, 20:30, 20:30] = 21    # L2, cut at the foot border (k = 0)
    arr[np.isin(truth, [19, 20])] = truth[np.isin(truth, [19, 20])]
    return arr, truth


def test_unlabelled_partial_vertebrae_become_ignore_through_the_border_slabs():
    arr, truth = _unlabelled_border_case()
    ignore, cut, slabs = pv.ignore_region(arr, (0, 1), (1.0, 1.0, 1.0), labels_partial_vertebrae=False)
    assert cut == [] and slabs == ["superior", "inferior"]
    assert ignore[truth == 18].all() and ignore[truth == 21].all()  # the cut ones: ignore
    assert not ignore[arr > 0].any()  # labelled voxels never
    assert not ignore[16].any() and not ignore[25].any()  # between the middles of T12 and L1: taught as is
    assert not ignore[30:, 0, 0].any()  # far (28 mm) from the spine's footprint: background stays background
    # flipped head-foot (k runs to the feet): the same voxels
    flipped = pv.ignore_region(arr[::-1], (0, -1), (1.0, 1.0, 1.0), labels_partial_vertebrae=False)
    np.testing.assert_array_equal(flipped[0][::-1], ignore)
    assert flipped[2] == ["superior", "inferior"]
    # a labelled vertebra at a border: nothing beyond it to ignore there; C1 on top, L5 below: nothing either
    touching = arr.copy()
    touching[33:40][truth[33:40] == 18] = 18
    ignore, cut, slabs = pv.ignore_region(touching, (0, 1), (1.0, 1.0, 1.0), labels_partial_vertebrae=False)
    assert cut == [18] and slabs == ["inferior"] and ignore[truth == 18].all()
    ends = arr.copy()
    ends[arr == 19], ends[arr == 20] = 1, 24  # C1 on top, L5 at the bottom
    assert pv.ignore_region(ends, (0, 1), (1.0, 1.0, 1.0), labels_partial_vertebrae=False)[2] == []
    assert not pv.ignore_region(np.zeros((5, 5, 5), np.int64), (0, 1), (1, 1, 1), False)[0].any()


def test_tiny_origin_mismatch_is_fixed_and_said_anything_else_skips():
    ct = lps_image(np.zeros((5, 6, 7), np.int16), spacing=(1.0, 1.0, 2.0))
    near = lps_image(np.zeros((5, 6, 7), np.uint8), spacing=(1.0, 1.0, 2.0), origin=(0.1, 0.0, 0.2))
    notes = []
    fixed = common.align_to_image(ct, near, "vertebra mask", notes)
    assert fixed.GetOrigin() == ct.GetOrigin() and notes and "origin" in notes[0]
    for bad in (lps_image(np.zeros((5, 6, 7), np.uint8), spacing=(1.0, 1.0, 2.0), origin=(0.4, 0.0, 0.0)),  # 0.4 voxel
                lps_image(np.zeros((5, 6, 8), np.uint8), spacing=(1.0, 1.0, 2.0)),
                lps_image(np.zeros((5, 6, 7), np.uint8), spacing=(1.0, 1.5, 2.0))):
        with pytest.raises(common.CaseSkipped, match="not on the CT's grid"):
            common.align_to_image(ct, bad, "vertebra mask", [])


def test_case_names_are_sanitised():
    assert common.case_name("dicom", "pat 01/ä") == "dicom_pat_01"  # the one rule (vertebraformer_nn.case_names)
    assert common.case_name("ctspine1k", "1.3.6.1.4.1.9328.50.4.0001") == "ctspine1k_1.3.6.1.4.1.9328.50.4.0001"


def test_folds_are_stratified_by_domain_and_balanced():
    subject_domain = {f"a{i}": "verse" for i in range(12)} | {f"b{i}": "dicom" for i in range(7)}
    folds = splits.assign_folds(subject_domain, {})
    for domain, n in (("verse", 12), ("dicom", 7)):
        counts = np.bincount([f for s, f in folds.items() if subject_domain[s] == domain], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert np.bincount(list(folds.values()), minlength=5).min() >= 3
    assert splits.assign_folds(dict(reversed(subject_domain.items())), {}) == folds  # order of input is irrelevant


def test_small_dataset_fills_every_fold():
    subject_domain = {f"{d}{i}": d for d in ("verse", "ctspine1k", "spineweb", "dicom") for i in range(2)}
    assert sorted(set(splits.assign_folds(subject_domain, {}).values())) == [0, 1, 2, 3, 4]


def test_existing_subjects_keep_their_fold_new_ones_are_stratified():
    old = {f"a{i}": "verse" for i in range(10)}
    folds = splits.assign_folds(old, {})
    moved = {s: (f + 1) % 5 for s, f in folds.items()}  # an unusual but existing assignment must be kept as is
    new = old | {f"c{i}": "ctspine1k" for i in range(5)}
    again = splits.assign_folds(new, moved)
    assert all(again[s] == moved[s] for s in old)
    assert sorted(again[f"c{i}"] for i in range(5)) == [0, 1, 2, 3, 4]


def test_folds_from_an_existing_splits_file_by_subject():
    existing = [{"train": [], "val": ["verse_x1", "verse_x2"]}, {"train": [], "val": ["verse_y"]}]
    got = splits.folds_from_existing(existing, {"verse_x1": "x", "verse_x2": "x", "verse_y": "y"})
    assert got == {"x": 0, "y": 1}
    assert splits.folds_from_existing({"not": "a list"}, {}) == {}


def test_leave_one_domain_out_never_leaks_a_subject_of_the_held_out_domain():
    train_cases = {"verse_s1": ("s1", "verse"), "verse_s2": ("s2", "verse"), "ctspine1k_c1": ("c1", "ctspine1k"),
                   "dicom_d1": ("d1", "dicom")}
    folds = splits.assign_folds({s: d for s, d in train_cases.values()}, {})
    # s1 was also converted from ctspine1k (its copy removed as a duplicate), d1 also appears in spineweb's test data
    seen = {"verse": {"s1", "s2"}, "ctspine1k": {"c1", "s1"}, "dicom": {"d1"}, "spineweb": {"d1"}}
    result, _ = splits.build_splits(train_cases, folds, seen)
    lodo = {e["held_out_domain"]: e for e in result[5:]}
    assert list(lodo) == ["verse", "ctspine1k", "dicom"]
    assert lodo["ctspine1k"]["val"] == ["ctspine1k_c1"] and "verse_s1" not in lodo["ctspine1k"]["train"]
    assert lodo["verse"]["train"] == ["ctspine1k_c1", "dicom_d1"]
    for e in result[:5]:
        assert sorted(e["train"] + e["val"]) == sorted(train_cases)


# --- VerSe -----------------------------------------------------------------------------------------------------

def test_verse_case_lands_in_ras_with_labels_in_place_t13_kept_and_centroids_inside(tmp_path, nnunet_dirs):
    src = tmp_path / "verse"
    add_verse_subject(src, "verse001", codes=(19, 28, 20))
    add_verse_subject(src, "verse002", codes=(23, 24, 25), release="dataset-verse20validation")
    (src / "fracture_grades.csv").write_text("subject,label,grade,type\nsub-verse001,20,2,wedge\nverse001,T12,0,\n")
    before = tree_state(src)
    report = convert_source("verse", src, 501)
    assert report.ok and [r.case for r in report.converted] == ["verse_sub-verse001", "verse_sub-verse002"]
    assert tree_state(src) == before  # the source is only read
    raw = raw_folder(nnunet_dirs)
    rec = {r.case: r for r in report.converted}
    assert (raw / "imagesTr/verse_sub-verse001_0000.nii.gz").is_file()
    assert (raw / "imagesTs/verse_sub-verse002_0000.nii.gz").is_file() and rec["verse_sub-verse002"].split == "test"
    assert not (raw / "lesionsTr").exists()  # VerSe annotates no lesions
    for case, split, codes in (("verse_sub-verse001", "Tr", (19, 28, 20)), ("verse_sub-verse002", "Ts", (23, 24, 25))):
        img, lab = read(raw / f"images{split}/{case}_0000.nii.gz"), read(raw / f"labels{split}/{case}.nii.gz")
        assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection()) == "RAS"
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        sub = case.split("sub-")[1]
        release = "dataset-verse20training" if split == "Tr" else "dataset-verse20validation"
        source_mask = read(src / release / f"derivatives/sub-{sub}/sub-{sub}_seg-vert_msk.nii.gz")
        assert_labels_in_place(source_mask, lab, background_may_be_ignored=True)
        # the CT too: same HU at the same physical point
        src_ct = read(src / release / f"rawdata/sub-{sub}/sub-{sub}_ct.nii.gz")
        a, b = sitk.GetArrayFromImage(src_ct), sitk.GetArrayFromImage(img)
        for k, j, i in np.argwhere(a > -1000)[::97]:
            ci, cj, ck = img.TransformPhysicalPointToIndex(src_ct.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
            assert b[ck, cj, ci] == a[k, j, i]
        assert sorted(rec[case].codes) == sorted(codes)
        assert set(np.unique(sitk.GetArrayFromImage(lab))) - {0, labels.IGNORE_LABEL} == \
            {labels.TRAINING_LABEL_OF_CODE[c] for c in codes}
        # VerSe labels no cut vertebra: the slab beyond each outermost vertebra is ignore, except below L6
        assert rec[case].ignored_border_slabs == (["superior", "inferior"] if split == "Tr" else ["superior"])
        assert rec[case].annotations["centroids"] == "annotated"
    # T13 is 28 in VerSe codes and training label 20, L6 is 25 -> 26: never renumbered
    assert labels.TRAINING_LABEL_OF_CODE[28] == 20 and labels.TRAINING_LABEL_OF_CODE[25] == 26
    assert rec["verse_sub-verse001"].fracture_grades == {"19": 0, "20": 2}

    fin = finalize(501, check=False)
    info = json.loads((raw / "dataset.json").read_text())["case_info"]
    assert set(info) == {"verse_sub-verse001", "verse_sub-verse002"} and fin.num_test == 1
    assert info["verse_sub-verse001"]["subject"] == "verse001" and info["verse_sub-verse001"]["licence"] == "CC BY-SA 4.0"
    assert info["verse_sub-verse001"]["fracture_grades"] == {"19": 0, "20": 2}
    assert info["verse_sub-verse001"]["annotations"] == {"vertebra_mask": True, "lesion_mask": False,
                                                        "centroids": "annotated", "fracture_grades": True}
    assert_centroids_inside(info["verse_sub-verse001"], read(raw / "labelsTr/verse_sub-verse001.nii.gz"))


def test_split_series_share_the_subject_and_the_fold(tmp_path, nnunet_dirs):
    src = tmp_path / "verse"
    for sub in ("verse010", "verse011", "verse012", "verse013", "verse014", "verse015"):
        add_verse_subject(src, sub, ctd=False)
    add_verse_subject(src, "verse010", prefix="sub-verse010_split-verse610", ctd=False)
    report = convert_source("verse", src, 501)
    assert report.ok and len(report.converted) == 7
    rec = {r.case: r for r in report.converted}
    assert rec["verse_sub-verse010_split-verse610"].subject == "verse010"
    assert rec["verse_sub-verse010_split-verse610"].annotations["centroids"] == "estimated"
    finalize(501, check=False)
    folds = json.loads((raw_folder(nnunet_dirs) / "splits_final.json").read_text())
    for entry in folds[:5]:
        assert ("verse_sub-verse010" in entry["val"]) == ("verse_sub-verse010_split-verse610" in entry["val"])


def test_bad_cases_are_listed_with_their_reason_and_the_others_still_convert(tmp_path, nnunet_dirs, capsys):
    src = tmp_path / "verse"
    rel = add_verse_subject(src, "verse001")
    add_verse_subject(src, "verse002")
    (rel / "rawdata/sub-verse002/sub-verse002_ct.nii.gz").write_bytes(b"this is not a NIfTI file")  # corrupt
    add_verse_subject(src, "verse003")
    (rel / "rawdata/sub-verse003/sub-verse003_ct.nii.gz").unlink()  # CT missing
    add_verse_subject(src, "verse004")
    ct, seg = verse_arrays((19, 20), shape=(30, 40, 25))  # mask on another grid
    _save_qform_only(seg, PIR_AFFINE, rel / "derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz")
    add_verse_subject(src, "verse005", codes=(24, 26))  # 26 (sacrum) is not a vertebra code
    ct, seg = verse_arrays((20, 21))
    seg[seg == 21] = 20.5  # not a label map
    add_verse_subject(src, "verse006")
    _save_qform_only(seg, PIR_AFFINE, rel / "derivatives/sub-verse006/sub-verse006_seg-vert_msk.nii.gz")
    before = tree_state(src)
    code = run_cli("convert", "verse", str(src), "-d", "501", "--quiet")
    out = capsys.readouterr().out
    assert code == 1  # something was skipped; the rest is converted
    assert tree_state(src) == before
    manifest = json.loads((raw_folder(nnunet_dirs) / "conversion/verse.json").read_text())
    assert [r["case"] for r in manifest["converted"]] == ["verse_sub-verse001"]
    reasons = {s["case"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {f"verse_sub-verse00{i}" for i in range(2, 7)}
    assert "sub-verse002_ct.nii.gz" in reasons["verse_sub-verse002"] and "unreadable" in reasons["verse_sub-verse002"]
    assert reasons["verse_sub-verse003"].startswith("CT missing")
    assert "not on the CT's grid" in reasons["verse_sub-verse004"] and "size" in reasons["verse_sub-verse004"]
    assert "[26]" in reasons["verse_sub-verse005"]
    assert "non-integral" in reasons["verse_sub-verse006"]
    for case in reasons:
        assert case in out  # the terminal report names every skipped case
        assert not list(raw_folder(nnunet_dirs).rglob(f"{case}*"))  # nothing half-written


def test_empty_or_missing_source_is_a_clear_error(tmp_path, nnunet_dirs, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no verse cases found"):
        convert_source("verse", tmp_path / "empty", 501)
    assert run_cli("convert", "ctspine1k", str(tmp_path / "empty"), "-d", "501") == 2
    assert "no ctspine1k cases found" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="does not exist"):
        convert_source("spineweb", tmp_path / "nowhere", 501)
    with pytest.raises(ConversionError, match="takes no option"):
        convert_source("verse", tmp_path / "empty", 501, mapping="x.json")
    assert not list((nnunet_dirs / "nnUNet_raw").iterdir())  # nothing was created


def test_border_touching_verse_vertebra_follows_the_same_policy(tmp_path, nnunet_dirs):
    src = tmp_path / "verse"
    add_verse_subject(src, "verse001", codes=(20, 21, 22), first=0)  # L1 starts at the first I slice
    report = convert_source("verse", src, 501)
    (rec,) = report.converted
    assert rec.partial_vertebrae_ignored == [20] and rec.codes == [21, 22]
    assert rec.ignored_border_slabs == ["inferior"]  # the head border is reached by the labelled (cut) L1
    assert "20" not in rec.centroids_mm and any("dropped" in n for n in rec.notes)
    lab = read(raw_folder(nnunet_dirs) / "labelsTr/verse_sub-verse001.nii.gz")
    assert_labels_in_place(read(src / "dataset-verse20training/derivatives/sub-verse001/sub-verse001_seg-vert_msk.nii.gz"),
                           lab, ignored=(20,), background_may_be_ignored=True)


def test_verse_miccai_naming_is_read_with_estimated_centroids(tmp_path, nnunet_dirs):
    src = tmp_path / "verse19" / "training"
    ct, seg = verse_arrays((16, 17))
    _save_qform_only(ct, PIR_AFFINE, src / "verse004.nii.gz")
    _save_qform_only(seg, PIR_AFFINE, src / "verse004_seg.nii.gz")
    (src / "verse004_ctd.json").write_text("[]")  # MICCAI centroid frame: not used
    _save_qform_only(seg, PIR_AFFINE, src / "verse005_seg.nii.gz")  # CT missing
    report = convert_source("verse", tmp_path / "verse19", 501)
    (rec,) = report.converted
    assert rec.case == "verse_verse004" and rec.subject == "verse004" and rec.codes == [16, 17]
    assert rec.annotations["centroids"] == "estimated" and any("MICCAI" in n for n in rec.notes)
    assert [s.case for s in report.skipped] == ["verse_verse005"]


# --- CTSpine1K, SpineWeb, DICOM --------------------------------------------------------------------------------

def test_ctspine1k_pairs_by_stem_splits_and_ignores_partial_vertebrae(tmp_path, nnunet_dirs):
    src = tmp_path / "ctspine1k"
    add_ctspine1k_case(src, "liver_1", touch_bottom=True)
    add_ctspine1k_case(src, "HN_P001", codes=(3, 4, 5), collection="HNSCC-3DCT-RT", touch_top=True)
    add_ctspine1k_case(src, "verse007_CT-iso", codes=(22, 23, 24, 25), collection="VERSE")
    add_ctspine1k_case(src, "liver_2")
    (src / "labels/MSD-T03/liver_2_seg.nii.gz").unlink()
    add_ctspine1k_case(src, "liver_3", codes=(20, 28))  # T13 is not a CTSpine1K code
    write_split(src, train=["liver_1", "verse007_CT-iso", "liver_2", "liver_3", "liver_9"], test_public=["HN_P001"])
    report = convert_source("ctspine1k", src, 501)
    rec = {r.case: r for r in report.converted}
    assert set(rec) == {"ctspine1k_liver_1", "ctspine1k_HN_P001", "ctspine1k_verse007_CT-iso"}
    skipped = {s.case: s.reason for s in report.skipped}
    assert "no label file" in skipped["ctspine1k_liver_2"] and "[28]" in skipped["ctspine1k_liver_3"]
    assert skipped["ctspine1k_liver_9"].startswith("CT missing")
    assert rec["ctspine1k_liver_1"].partial_vertebrae_ignored == [20] and rec["ctspine1k_liver_1"].codes == [21, 22]
    assert rec["ctspine1k_HN_P001"].partial_vertebrae_ignored == [5] and rec["ctspine1k_HN_P001"].split == "test"
    assert all(r.ignored_border_slabs == [] for r in rec.values())  # CTSpine1K labels its cut vertebrae
    assert rec["ctspine1k_verse007_CT-iso"].subject == "verse007" and rec["ctspine1k_verse007_CT-iso"].codes == [22, 23, 24, 25]
    assert rec["ctspine1k_liver_1"].annotations["centroids"] == "estimated"
    raw = raw_folder(nnunet_dirs)
    assert_labels_in_place(read(src / "labels/MSD-T03/liver_1_seg.nii.gz"), read(raw / "labelsTr/ctspine1k_liver_1.nii.gz"),
                           ignored=(20,))
    assert (raw / "imagesTs/ctspine1k_HN_P001_0000.nii.gz").is_file()


def test_spineweb_patterns_formats_and_centroid_only_cases(tmp_path, nnunet_dirs):
    src = tmp_path / "spineweb"
    ct, seg = stacked_kji((18, 19, 20))
    (src / "caseA").mkdir(parents=True)
    sitk.WriteImage(lps_image(ct), str(src / "caseA/caseA.mhd"), True)  # .mhd + .zraw
    sitk.WriteImage(lps_image(seg), str(src / "caseA/caseA_Label.nrrd"))  # case-insensitive pattern
    centre = lps_image(seg).TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in np.argwhere(seg == 19).mean(axis=0)[::-1]])
    (src / "caseA/caseA_centroids.csv").write_text("label,x,y,z\nT12,%f,%f,%f\n" % tuple(centre))
    (src / "caseB").mkdir()
    sitk.WriteImage(lps_image(ct), str(src / "caseB/caseB.nii.gz"))
    (src / "caseB/caseB_centroids.csv").write_text("20,1.0,2.0,3.0\nL2,1.0,2.0,30.0\n")
    (src / "caseC").mkdir()  # empty folder
    (src / "caseD").mkdir()
    sitk.WriteImage(lps_image(seg), str(src / "caseD/caseD_label.nii.gz"))  # CT missing
    report = convert_source("spineweb", src, 501)
    rec = {r.case: r for r in report.converted}
    assert set(rec) == {"spineweb_caseA", "spineweb_caseB"}
    assert rec["spineweb_caseA"].annotations["centroids"] == "annotated" and list(rec["spineweb_caseA"].centroids_mm) == ["19"]
    assert rec["spineweb_caseB"].centroid_only and rec["spineweb_caseB"].files == []
    skipped = {s.case: s.reason for s in report.skipped}
    assert "empty folder" in skipped["spineweb_caseC"] and skipped["spineweb_caseD"].startswith("CT missing")
    fin = finalize(501, check=False)
    ds = json.loads((raw_folder(nnunet_dirs) / "dataset.json").read_text())
    assert ds["centroid_only_cases"] == ["spineweb_caseB"] and fin.centroid_only == ["spineweb_caseB"]
    assert "spineweb_caseB" not in ds["case_info"] and ds["numTraining"] == 1
    assert not list(raw_folder(nnunet_dirs).rglob("spineweb_caseB*"))


def _dicom_cohort(root: Path, label_values=None):
    from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

    ct, seg = stacked_kji((20, 21, 22), shape=(30, 24, 20))
    img = lps_image(ct, spacing=(0.8, 0.8, 2.0), origin=(-10.0, -5.0, 100.0))
    files = write_dicom_series(img, root / "p1/study/ct", patient_id="PAT-1", shuffle_file_names=True)
    write_dicom_series(img[:, :, :4], root / "p1/study/scout", patient_id="PAT-1", series_number=9,
                       image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    lab = lps_image(seg * 2, spacing=(0.8, 0.8, 2.0), origin=(-10.0, -5.0, 100.0))  # values 40, 42, 44
    (root / "p1/labels").mkdir(parents=True)
    sitk.WriteImage(lab, str(root / "p1/labels/vert.nii.gz"))
    les = np.zeros_like(seg)
    les[10:12, 8:10, 8:10] = 3
    sitk.WriteImage(lps_image(les, spacing=(0.8, 0.8, 2.0), origin=(-10.0, -5.0, 100.0)), str(root / "p1/labels/les.nii.gz"))
    mapping = {"licence": "test cohort", "label_values": label_values or {"40": "L1", "42": "L2", "44": "L3"},
               "cases": [{"case": "p1", "study": "p1/study", "vertebrae": "p1/labels/vert.nii.gz",
                          "lesions": "p1/labels/les.nii.gz"},
                         {"case": "p2", "study": "p2/study", "vertebrae": "p2/labels/vert.nii.gz"}]}
    (root / "mapping.json").write_text(json.dumps(mapping))
    (root / "stray").mkdir()
    return files


def test_dicom_cohort_series_choice_label_values_lesions_and_subject(tmp_path, nnunet_dirs):
    src = tmp_path / "dicom"
    _dicom_cohort(src)
    report = convert_source("dicom", src, 501)
    (rec,) = report.converted
    assert rec.case == "dicom_p1" and rec.subject == "dicom:PAT-1" and rec.licence == "test cohort"
    assert rec.annotations["lesion_mask"] and rec.codes == [20, 21, 22]
    assert any("study/scout" in n and "LOCALIZER" in n for n in rec.notes)
    skipped = {s.case: s.reason for s in report.skipped}
    assert skipped["dicom_p2"].startswith("CT missing") and "not named by mapping.json" in skipped["dicom_stray"]
    raw = raw_folder(nnunet_dirs)
    les = sitk.GetArrayFromImage(read(raw / "lesionsTr/dicom_p1.nii.gz"))
    assert set(np.unique(les)) == {0, 1} and les.sum() == 8
    # same physical place: the label file (values 40/42/44) vs the converted map
    src_lab = read(src / "p1/labels/vert.nii.gz")
    src_codes = sitk.GetImageFromArray((sitk.GetArrayFromImage(src_lab) // 2).astype(np.uint8))
    src_codes.CopyInformation(src_lab)
    assert_labels_in_place(src_codes, read(raw / "labelsTr/dicom_p1.nii.gz"))


def test_dicom_label_value_not_in_mapping_is_skipped_naming_it(tmp_path, nnunet_dirs):
    src = tmp_path / "dicom"
    _dicom_cohort(src, label_values={"40": "L1", "42": "L2"})
    report = convert_source("dicom", src, 501)
    assert "[44]" in {s.case: s.reason for s in report.skipped}["dicom_p1"]
    (src / "mapping.json").write_text('{"cases": [{"case": "x"}]}')
    with pytest.raises(ConversionError, match="needs at least 'case' and 'study'"):
        convert_source("dicom", src, 501)
    with pytest.raises(ConversionError, match="no mapping file"):
        convert_source("dicom", src, 501, mapping=str(tmp_path / "none.json"))


# --- assembling: append, replace, dedup, splits, idempotence -------------------------------------------------

def _two_sources(tmp_path):
    verse, ctspine = tmp_path / "verse", tmp_path / "ctspine1k"
    for sub in ("verse001", "verse002", "verse003"):
        add_verse_subject(verse, sub, ctd=False)
    for stem, coll in (("verse001_CT-iso", "VERSE"), ("liver_1", "MSD-T03"), ("liver_2", "MSD-T03"), ("HN_P001", "HN")):
        add_ctspine1k_case(ctspine, stem, collection=coll)
    write_split(ctspine, train=["verse001_CT-iso", "liver_1", "liver_2"], test_public=["HN_P001"])
    return verse, ctspine


def test_append_is_required_and_reconversion_replaces_only_that_source(tmp_path, nnunet_dirs, capsys):
    verse, ctspine = _two_sources(tmp_path)
    convert_source("verse", verse, 501)
    convert_source("verse", verse, 501)  # the dataset holds only verse: re-converting needs no --append
    assert run_cli("convert", "ctspine1k", str(ctspine), "-d", "501") == 2
    assert "--append" in capsys.readouterr().err
    convert_source("ctspine1k", ctspine, 501, append=True)
    raw = raw_folder(nnunet_dirs)
    ctspine_files = {p: p.stat().st_mtime_ns for p in raw.rglob("ctspine1k_*")}
    # the source loses a subject: re-converting it removes that subject's files, nothing of ctspine1k
    import shutil
    shutil.rmtree(verse / "dataset-verse20training/rawdata/sub-verse003")
    shutil.rmtree(verse / "dataset-verse20training/derivatives/sub-verse003")
    report = convert_source("verse", verse, 501, append=True)
    assert report.ok and any("verse_sub-verse003" in p for p in report.removed_stale)
    assert not list(raw.rglob("verse_sub-verse003*"))
    assert {p: p.stat().st_mtime_ns for p in raw.rglob("ctspine1k_*")} == ctspine_files
    with pytest.raises(ConversionError, match="already exists as"):
        convert_source("verse", verse, 501, append=True, name="Other")


def test_finalize_dedups_splits_stay_stable_under_append_and_it_is_idempotent(tmp_path, nnunet_dirs):
    verse, ctspine = _two_sources(tmp_path)
    raw = raw_folder(nnunet_dirs)
    pre_splits = nnunet_dirs / "nnUNet_preprocessed" / raw.name / "splits_final.json"
    convert_source("verse", verse, 501)
    finalize(501, check=False)
    first = json.loads((raw / "splits_final.json").read_text())
    fold_of = {c: k for k, e in enumerate(first[:5]) for c in e["val"]}

    convert_source("ctspine1k", ctspine, 501, append=True)
    report = finalize(501, check=True)
    assert report.ok and report.integrity == "passed", report.format()
    assert report.duplicates == [{"case": "ctspine1k_verse001_CT-iso", "subject": "verse001",
                                  "duplicate_of": ["verse_sub-verse001"]}]
    assert not list(raw.rglob("ctspine1k_verse001_CT-iso*"))
    ds = json.loads((raw / "dataset.json").read_text())
    assert ds["numTraining"] == 5 and ds["numTest"] == 1 == len(list((raw / "imagesTs").iterdir()))
    assert ds["overwrite_image_reader_writer"] == "SimpleITKIOWithReorient" and ds["file_ending"] == ".nii.gz"
    assert ds["labels"] == labels.dataset_json_labels() and ds["verse_codes"] == labels.dataset_json_verse_codes()
    assert ds["channel_names"] == {"0": "CT"}
    folds = json.loads((raw / "splits_final.json").read_text())
    assert pre_splits.read_text() == (raw / "splits_final.json").read_text()
    assert all(c in folds[k]["val"] for c, k in fold_of.items())  # earlier subjects kept their folds
    train_cases = sorted(c for c in ds["case_info"] if ds["case_info"][c]["split"] == "train")
    for entry in folds[:5]:
        assert sorted(entry["train"] + entry["val"]) == train_cases and not set(entry["train"]) & set(entry["val"])
    lodo = {e["held_out_domain"]: e for e in folds[5:]}
    assert list(lodo) == ["verse", "ctspine1k"]
    assert lodo["ctspine1k"]["val"] == ["ctspine1k_liver_1", "ctspine1k_liver_2"]
    assert "verse_sub-verse001" not in lodo["ctspine1k"]["train"]  # its subject was in ctspine1k too
    assert lodo["verse"]["train"] == ["ctspine1k_liver_1", "ctspine1k_liver_2"]
    assert "ctspine1k_HN_P001" not in json.dumps(folds)  # test-split cases are in no fold

    snapshot = [p.read_bytes() for p in (raw / "dataset.json", raw / "splits_final.json", pre_splits)]
    finalize(501, check=False)
    assert [p.read_bytes() for p in (raw / "dataset.json", raw / "splits_final.json", pre_splits)] == snapshot


def test_finalize_reports_files_no_source_lists(tmp_path, nnunet_dirs):
    verse, _ = _two_sources(tmp_path)
    convert_source("verse", verse, 501)
    raw = raw_folder(nnunet_dirs)
    (raw / "imagesTr/mystery_0000.nii.gz").write_bytes(b"x")
    report = finalize(501, check=True)
    assert not report.ok and any("mystery" in e for e in report.errors) and report.integrity.startswith("not run")
    with pytest.raises(ConversionError, match="no dataset 502"):
        finalize(502)


def test_only_verse_subject_ids_are_shared_between_sources():
    """VerSe scans reappear inside CTSpine1K, so 'verse506' is one person everywhere; 'patient001' of two
    sources is two people and must not be de-duplicated."""
    assert common.dataset_subject("verse", "sub-verse506") == "verse506"
    assert common.dataset_subject("ctspine1k", "verse506_CT-iso") == "verse506"
    assert common.dataset_subject("ctspine1k", "liver_12") == "ctspine1k:liver_12"
    assert common.dataset_subject("dicom", "patient001") != common.dataset_subject("spineweb", "patient001")
    assert common.dataset_subject("verse", "sub-gl003") == "verse:gl003"


def test_a_manifest_of_version_0_1_asks_for_reconversion():
    old = {"case": "ctspine1k_a", "source": "ctspine1k", "partial_vertebrae_removed": [20]}
    with pytest.raises(ConversionError, match="re-convert source 'ctspine1k'"):
        common.CaseRecord.from_json(old)
