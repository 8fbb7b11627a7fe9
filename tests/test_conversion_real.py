"""The VerSe converter on real files (``real_data`` fixture: ../shared/data/real, or VERTEBRAFORMER_REAL_DATA;
skipped with the reason when absent): the official sub-verse004 mask + centroid file, and the TPTBox CT crop laid
out as a VerSe subject."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.dataset_conversion import convert_source, finalize


def _same_place(source: sitk.Image, converted: sitk.Image, to_source_values=lambda a: a, step=3):
    """Values of ``converted`` at the physical points of (a sample of) ``source``'s voxels equal the source's."""
    src = sitk.GetArrayFromImage(source)
    conv = to_source_values(sitk.GetArrayFromImage(converted))
    kji = np.argwhere(np.ones(src.shape, bool))[::step]
    d, s, o = (np.array(source.GetDirection()).reshape(3, 3), np.array(source.GetSpacing()), np.array(source.GetOrigin()))
    points = o + (kji[:, ::-1] * s) @ d.T
    dc, sc, oc = (np.array(converted.GetDirection()).reshape(3, 3), np.array(converted.GetSpacing()), np.array(converted.GetOrigin()))
    idx = np.rint((points - oc) @ np.linalg.inv(dc * sc).T).astype(int)[:, ::-1]
    return src[tuple(kji.T)], conv[tuple(idx.T)]


def _verse_codes(training: np.ndarray) -> np.ndarray:
    """Training labels -> VerSe codes, the ignore label as -1."""
    return np.where(training == labels.IGNORE_LABEL, -1,
                    labels.training_to_verse(np.where(training == labels.IGNORE_LABEL, 0, training)).astype(int))


def test_real_verse004_mask_and_centroids_convert_with_every_centroid_inside_its_vertebra(real_data, tmp_path, nnunet_dirs):
    folder = real_data / "verse_sub-verse004"
    mask_nii = nib.load(str(folder / "sub-verse004_seg-vert_msk.nii.gz"))
    # The CT of verse004 is not among the real files: a stand-in CT on the mask's exact grid and header (qform only).
    mask = np.asarray(mask_nii.dataobj)
    ct = np.where(mask > 0, 350, -1000).astype(np.int16)
    root = tmp_path / "verse" / "dataset-verse19training"
    (root / "rawdata/sub-verse004").mkdir(parents=True)
    (root / "derivatives/sub-verse004").mkdir(parents=True)
    header = mask_nii.header.copy()
    header.set_data_dtype(np.int16)
    nib.save(nib.Nifti1Image(ct, None, header), str(root / "rawdata/sub-verse004/sub-verse004_ct.nii.gz"))
    shutil.copy(folder / "sub-verse004_seg-vert_msk.nii.gz", root / "derivatives/sub-verse004/")
    shutil.copy(folder / "sub-verse004_seg-subreg_ctd.json", root / "derivatives/sub-verse004/")
    # Published Genant grades of verse004 (MANIFEST.md): T9 2, T10 2, T11 0, T12 0, L1 3, L2 0, L3 0.
    (tmp_path / "verse/fracture_grades.csv").write_text(
        "subject,label,grade,type\n" + "".join(f"sub-verse004,{n},{g},\n" for n, g in
                                              (("T9", 2), ("T10", 2), ("T11", 0), ("T12", 0), ("L1", 3), ("L2", 0), ("L3", 0))))

    report = convert_source("verse", tmp_path / "verse", 501)
    assert report.ok, report.format()
    (rec,) = report.converted
    assert rec.case == "verse_sub-verse004" and rec.subject == "verse004" and rec.split == "train"
    assert rec.codes == list(range(16, 25)) and rec.partial_vertebrae_ignored == []
    assert rec.ignored_border_slabs == ["superior"]  # above T9 a cut T8 may hide; below L5 comes the sacrum
    assert rec.annotations["centroids"] == "annotated" and sorted(map(int, rec.centroids_mm)) == list(range(16, 25))
    assert rec.fracture_grades == {"16": 2, "17": 2, "18": 0, "19": 0, "20": 3, "21": 0, "22": 0}

    raw = nnunet_dirs / "nnUNet_raw/Dataset501_MultiSpine"
    lab = sitk.ReadImage(str(raw / "labelsTr/verse_sub-verse004.nii.gz"))
    arr = _verse_codes(sitk.GetArrayFromImage(lab))
    for code, point in rec.centroids_mm.items():
        i, j, k = lab.TransformPhysicalPointToIndex(point)
        assert arr[k, j, i] == int(code), (code, arr[k, j, i])
    # the label map is the official mask, voxel for voxel, at the same physical places; the ignore label only on
    # the mask's background, above the middle of T9 (the head end)
    src_mask = sitk.ReadImage(str(folder / "sub-verse004_seg-vert_msk.nii.gz"))
    expected, got = _same_place(src_mask, lab, _verse_codes)
    expected = np.rint(expected).astype(int)
    assert np.array_equal(expected[got != -1], got[got != -1]) and (expected[got == -1] == 0).all()
    ignored = np.argwhere(sitk.GetArrayFromImage(lab) == labels.IGNORE_LABEL)
    t9 = np.argwhere(arr == 16)
    assert len(ignored) and ignored[:, 0].min() >= np.rint(t9[:, 0].mean())  # RAS: k grows to the head
    assert sorted(lab.GetSize()) == sorted(src_mask.GetSize())

    fin = finalize(501, check=False)
    info = json.loads((raw / "dataset.json").read_text())["case_info"]["verse_sub-verse004"]
    assert info["fracture_grades"]["20"] == 3 and info["annotations"]["fracture_grades"] and not fin.errors


def test_real_tptbox_ct_as_a_verse_subject(real_data, tmp_path, nnunet_dirs):
    """Real HU, real geometry (PIR, 1.5 mm, sform-only NIfTI); L2 and L4 touch the crop's head/foot border."""
    src = real_data / "tptbox_sample_ct"
    root = tmp_path / "verse" / "dataset-verse20training"
    (root / "rawdata/sub-ct").mkdir(parents=True)
    (root / "derivatives/sub-ct").mkdir(parents=True)
    shutil.copy(src / "sub-ct_label-22_ct.nii.gz", root / "rawdata/sub-ct/")
    shutil.copy(src / "sub-ct_seg-vert_label-22_msk.nii.gz", root / "derivatives/sub-ct/sub-ct_label-22_seg-vert_msk.nii.gz")
    shutil.copy(real_data / "derived/sub-ct_label-22_seg-vert_ctd.json", root / "derivatives/sub-ct/")

    report = convert_source("verse", tmp_path / "verse", 501)
    assert report.ok, report.format()
    (rec,) = report.converted
    assert rec.case == "verse_sub-ct_label-22" and rec.subject == "verse:ct"
    assert rec.partial_vertebrae_ignored == [21, 23] and rec.codes == [22]  # only L3 is whole
    assert rec.ignored_border_slabs == []  # the cut L2 and L4 reach both borders: no unlabelled vertebra beyond
    assert list(rec.centroids_mm) == ["22"] and rec.annotations["centroids"] == "annotated"

    raw = nnunet_dirs / "nnUNet_raw/Dataset501_MultiSpine"
    img = sitk.ReadImage(str(raw / "imagesTr/verse_sub-ct_label-22_0000.nii.gz"))
    lab = sitk.ReadImage(str(raw / "labelsTr/verse_sub-ct_label-22.nii.gz"))
    src_ct = sitk.ReadImage(str(src / "sub-ct_label-22_ct.nii.gz"))
    assert img.GetPixelID() == sitk.sitkInt16 and sorted(img.GetSize()) == sorted(src_ct.GetSize())
    assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection()) == "RAS"
    expected, got = _same_place(src_ct, img, step=1)
    assert np.array_equal(expected, got)  # every HU value at its physical place
    assert (int(got.min()), int(got.max())) == (-1030, 1961)
    src_mask = sitk.ReadImage(str(src / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    expected, got = _same_place(src_mask, lab, _verse_codes, step=1)
    expected = np.where(np.isin(expected, [21, 23]), -1, expected.astype(int))  # the cut vertebrae, exactly: ignore
    assert np.array_equal(expected, got)
    i, j, k = lab.TransformPhysicalPointToIndex(rec.centroids_mm["22"])
    assert _verse_codes(sitk.GetArrayFromImage(lab))[k, j, i] == 22
