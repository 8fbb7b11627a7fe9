"""The four converters and finalize end to end on MultiSpine-Sim (session fixtures ``sim_root`` and
``multispine_raw`` of conftest.py), checked against the generator's complete ground truth."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.dataset_conversion import convert_source

SOURCES = ("verse", "ctspine1k", "spineweb", "dicom")


def _affine(img):
    d = np.array(img.GetDirection()).reshape(3, 3)
    return d * np.array(img.GetSpacing()), np.array(img.GetOrigin())


def physical(img, kji):
    m, o = _affine(img)
    return o + kji[:, ::-1] @ m.T


def nearest_index(img, points):
    m, o = _affine(img)
    return np.rint((points - o) @ np.linalg.inv(m).T).astype(int)[:, ::-1]


@pytest.fixture(scope="module")
def truth(sim_root):
    return {c["case"]: c for c in json.loads((sim_root / "ground_truth/index.json").read_text())["cases"]
            if c["source"] in SOURCES}


@pytest.fixture(scope="module")
def assembled(multispine_raw):
    raw = multispine_raw
    manifests = {s: json.loads((raw / "conversion" / f"{s}.json").read_text()) for s in SOURCES}
    return raw, json.loads((raw / "dataset.json").read_text()), manifests, json.loads((raw / "conversion/finalize.json").read_text())


def test_every_phantom_case_is_accounted_for(truth, assembled):
    raw, ds, manifests, fin = assembled
    converted = {r["case"]: r for m in manifests.values() for r in m["converted"]}
    skipped = {s["case"]: s["reason"] for m in manifests.values() for s in m["skipped"]}
    duplicates = {d["case"]: d["duplicate_of"] for d in fin["duplicates"]}
    for case, c in truth.items():
        assert (case in converted) != (case in skipped), case
        if case in skipped:
            assert skipped[case], case
            continue
        if c["duplicate_of"]:
            assert duplicates[case] == [c["duplicate_of"]]
            assert not list(raw.rglob(f"{case}_0000.nii.gz"))
        elif converted[case]["centroid_only"]:
            assert case in ds["centroid_only_cases"] and case not in ds["case_info"]
        else:
            assert case in ds["case_info"], case
    assert not skipped, skipped  # the phantom sources hold no bad case
    assert set(duplicates) == {c for c, t in truth.items() if t["duplicate_of"]}


def test_dataset_json_and_integrity(assembled):
    raw, ds, _, fin = assembled
    assert fin["integrity"] == "passed" and fin["ok"], fin
    images = sorted(p.name[: -len("_0000.nii.gz")] for p in (raw / "imagesTr").glob("*_0000.nii.gz"))
    assert ds["numTraining"] == len(images) and ds["numTest"] == len(list((raw / "imagesTs").glob("*.nii.gz")))
    assert sorted(c for c, i in ds["case_info"].items() if i["split"] == "train") == images
    assert {i["domain"] for i in ds["case_info"].values()} == set(SOURCES)
    for case, info in ds["case_info"].items():
        split = "Tr" if info["split"] == "train" else "Ts"
        assert (raw / f"lesions{split}" / f"{case}.nii.gz").is_file() == info["annotations"]["lesion_mask"]
        assert info["domain"] == case.split("_", 1)[0]


def test_labels_kept_at_their_physical_place_partial_vertebrae_ignored(sim_root, truth, assembled):
    """Sampled voxels of the complete truth (on the source grid): the converted training label is the truth's, except
    exactly the vertebrae cut by the head/foot border, which are nnU-Net's ignore label in every source. Sources
    that label them (CTSpine1K, SpineWeb, DICOM): those voxels and no others are ignore. VerSe, which leaves them
    unlabelled: every voxel of a cut vertebra is ignore (the border-slab rule), no voxel of a whole one is, and the
    rest of the ignore region is background of the slab by the spine."""
    raw, ds, _, _ = assembled
    checked = slabs = 0
    for case, info in ds["case_info"].items():
        c = truth[case]
        split = "Tr" if info["split"] == "train" else "Ts"
        lab = sitk.ReadImage(str(raw / f"labels{split}" / f"{case}.nii.gz"))
        gt = sitk.ReadImage(str(sim_root / c["truth"]["vertebrae"]))
        t = sitk.GetArrayFromImage(gt)
        pts = np.argwhere(np.ones(t.shape, bool))[::5]
        true_codes = t[tuple(pts.T)].astype(int)
        got = sitk.GetArrayFromImage(lab)[tuple(nearest_index(lab, physical(gt, pts)).T)].astype(int)
        cut = np.isin(true_codes, c["partial"])
        ignored = got == labels.IGNORE_LABEL
        assert ignored[cut].all(), (case, int((~ignored[cut]).sum()))
        whole = (true_codes > 0) & ~cut
        expected = labels.verse_to_training(true_codes[whole])
        assert np.array_equal(got[whole], expected), (case, int((got[whole] != expected).sum()))
        if c["source"] == "verse":
            assert set(info["ignored_border_slabs"]) <= {"superior", "inferior"}
            slabs += len(info["ignored_border_slabs"])
            assert (got[true_codes == 0] != labels.IGNORE_LABEL).any()  # the slab is near the spine, not everywhere
            assert set(got[true_codes == 0]) <= {0, labels.IGNORE_LABEL}
        else:
            assert info["ignored_border_slabs"] == []
            assert np.array_equal(ignored, cut), case
            assert not got[true_codes == 0].any()
        assert info["partial_vertebrae_ignored"] == (
            [] if c["source"] == "verse" else labels.sort_anatomically(c["partial"]))
        assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(lab.GetDirection()) == "RAS"
        checked += 1
    assert checked >= 8 and slabs >= 1


def test_centroids_inside_their_vertebra_and_near_the_truth(truth, assembled):
    raw, ds, _, _ = assembled
    for case, info in ds["case_info"].items():
        split = "Tr" if info["split"] == "train" else "Ts"
        lab = sitk.ReadImage(str(raw / f"labels{split}" / f"{case}.nii.gz"))
        arr = sitk.GetArrayFromImage(lab)
        arr = labels.training_to_verse(np.where(arr == labels.IGNORE_LABEL, 0, arr))
        codes = {int(c) for c in np.unique(arr) if c}
        assert {int(c) for c in info["centroids_mm"]} == codes, case
        expected_kind = "annotated" if case.startswith("verse_") else "estimated"
        assert info["annotations"]["centroids"] == expected_kind
        for code, point in info["centroids_mm"].items():
            k, j, i = nearest_index(lab, np.array([point]))[0]
            assert arr[k, j, i] == int(code), (case, code)
            distance = np.linalg.norm(np.subtract(point, truth[case]["centroids_mm"][code]))
            assert distance < (0.1 if expected_kind == "annotated" else 20.0), (case, code, distance)


def test_lesion_maps_match_the_truth_where_the_source_annotates_them(sim_root, truth, assembled):
    raw, ds, _, _ = assembled
    with_lesions = [c for c, i in ds["case_info"].items() if i["annotations"]["lesion_mask"]]
    assert with_lesions and all(c.startswith("dicom_") for c in with_lesions)
    for case in with_lesions:
        split = "Tr" if ds["case_info"][case]["split"] == "train" else "Ts"
        les = sitk.ReadImage(str(raw / f"lesions{split}" / f"{case}.nii.gz"))
        gt = sitk.ReadImage(str(sim_root / truth[case]["truth"]["lesions"]))
        t = sitk.GetArrayFromImage(gt) > 0
        pts = np.argwhere(np.ones(t.shape, bool))
        got = sitk.GetArrayFromImage(les)[tuple(nearest_index(les, physical(gt, pts)).T)] > 0
        exp = t[tuple(pts.T)]
        dice = 2 * np.count_nonzero(got & exp) / max(np.count_nonzero(got) + np.count_nonzero(exp), 1)
        assert dice > 0.9, (case, dice)


def test_official_test_splits_go_to_imagesTs(truth, assembled):
    _, ds, _, _ = assembled
    for case, c in truth.items():
        if case in ds["case_info"]:
            # the generator records each source's own split name (training / validation / test, trainset / test_public ...)
            official_test = c["split"] not in ("training", "trainset", "train", None)
            assert (ds["case_info"][case]["split"] == "test") == official_test, (case, c["split"])


def test_splits_are_by_subject_and_leave_one_domain_out_does_not_leak(assembled):
    raw, ds, manifests, _ = assembled
    splits = json.loads((raw / "splits_final.json").read_text())
    pre = Path(str(raw).replace("nnUNet_raw", "nnUNet_preprocessed")) / "splits_final.json"
    assert pre.read_text() == (raw / "splits_final.json").read_text()
    info = ds["case_info"]
    train = sorted(c for c, i in info.items() if i["split"] == "train")
    fold_of_subject = {}
    for k, entry in enumerate(splits[:5]):
        assert sorted(entry["train"] + entry["val"]) == train and entry["val"]
        for c in entry["val"]:
            assert fold_of_subject.setdefault(info[c]["subject"], k) == k  # a subject sits in one fold
    seen = {s: {r["subject"] for r in m["converted"]} for s, m in manifests.items()}
    held = [e["held_out_domain"] for e in splits[5:]]
    assert held == list(SOURCES)
    for entry in splits[5:]:
        d = entry["held_out_domain"]
        assert entry["val"] == sorted(c for c in train if info[c]["domain"] == d)
        assert not {info[c]["subject"] for c in entry["train"]} & seen[d], d
    # VerSe subjects that CTSpine1K also holds are kept out of the CTSpine1K-held-out fold's training
    both = seen["verse"] & seen["ctspine1k"]
    assert both
    ct_fold = splits[5 + held.index("ctspine1k")]
    assert not [c for c in ct_fold["train"] if info[c]["subject"] in both]


def test_source_tree_is_never_modified(sim_root, tmp_path, monkeypatch):
    def state(root):
        return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(root.rglob("*")) if p.is_file()}

    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    before = state(sim_root / "dicom"), state(sim_root / "spineweb")
    convert_source("dicom", sim_root / "dicom", 502)
    convert_source("spineweb", sim_root / "spineweb", 502, append=True)
    assert (state(sim_root / "dicom"), state(sim_root / "spineweb")) == before
