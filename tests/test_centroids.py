import json

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import centroids as C


def _verse004(real_data):
    folder = real_data / "verse_sub-verse004"
    mask = sitk.ReadImage(str(folder / "sub-verse004_seg-vert_msk.nii.gz"))
    mask = sitk.Cast(sitk.Round(mask), sitk.sitkUInt8)  # VerSe ships this mask as float64
    return folder, mask


def test_real_verse_centroids_fall_inside_their_vertebra(real_data):
    folder, mask = _verse004(real_data)
    assert C.axcodes(mask) == "PIR"
    ctd = C.read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", mask)
    assert sorted(ctd) == list(range(16, 25))
    arr = sitk.GetArrayViewFromImage(mask)
    for code, point in ctd.items():
        i, j, k = np.round(mask.TransformPhysicalPointToContinuousIndex(point)).astype(int)
        assert arr[k, j, i] == code


def test_verse_format_round_trips_exactly(real_data, tmp_path):
    folder, mask = _verse004(real_data)
    original = json.loads((folder / "sub-verse004_seg-subreg_ctd.json").read_text())
    ctd = C.read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", mask)
    C.write_verse_ctd(tmp_path / "ctd.json", ctd, mask)
    assert json.loads((tmp_path / "ctd.json").read_text()) == original


def test_centroids_in_another_orientation_name_the_same_points(real_data, tmp_path):
    folder, mask = _verse004(real_data)
    ctd = C.read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", mask)
    ras = sitk.DICOMOrient(mask, "RAS")
    C.write_verse_ctd(tmp_path / "ras.json", ctd, ras)
    assert json.loads((tmp_path / "ras.json").read_text())[0] == {"direction": ["R", "A", "S"]}
    back = C.read_verse_ctd(tmp_path / "ras.json", ras)
    # the same file read against the original (PIR) image: codes given explicitly as RAS
    again = C.read_verse_ctd(tmp_path / "ras.json", mask)
    for code in ctd:
        assert np.linalg.norm(back[code] - ctd[code]) < 0.02
        assert np.linalg.norm(again[code] - ctd[code]) < 0.02


def test_body_centroid_estimator_on_real_verse004(real_data):
    """VerSe centroids are body centroids; the estimator must land near them, the centre of mass does not."""
    folder, mask = _verse004(real_data)
    ctd = C.read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", mask)
    est = C.body_centroids(mask)
    dist = np.array([np.linalg.norm(est[c] - ctd[c]) for c in ctd])
    assert dist.mean() < 2.0 and dist.max() < 4.0, dist


def test_body_centroid_of_synthetic_vertebra_ignores_thin_process():
    # a 20 mm cube "body" with a long thin "spinous process" behind it, 1 mm voxels
    arr = np.zeros((40, 60, 40), np.uint8)  # (k, j, i)
    arr[10:30, 5:25, 10:30] = 20
    arr[18:22, 25:55, 18:22] = 20
    img = sitk.GetImageFromArray(arr)
    est = C.body_centroids(img)[20]
    np.testing.assert_allclose(est, [19.5, 14.5, 19.5], atol=0.6)


def test_specks_of_a_label_and_its_neighbours_leave_the_body_centroid():
    """Depth is measured to the nearest voxel of any other label or the image's edge, per vertebra: a body that
    touches its neighbour and the edge, with its label also scattered in specks over the scan (a briefly trained
    network's map), keeps the centroid it has alone."""
    arr = np.zeros((40, 30, 30), np.uint8)
    arr[0:20, 5:25, 5:25] = 20   # cut by the image's edge at k = 0
    arr[20:40, 5:25, 5:25] = 21  # its neighbour, touching it
    alone = C.body_centroids(sitk.GetImageFromArray(arr))
    np.testing.assert_allclose(alone[20], [14.5, 14.5, 9.5], atol=0.01)
    np.testing.assert_allclose(alone[21], [14.5, 14.5, 29.5], atol=0.01)
    specks = arr.copy()
    at = np.random.default_rng(1).integers(0, arr.shape, size=(400, 3))
    specks[tuple(at[arr[tuple(at.T)] == 0].T)] = 20
    scattered = C.body_centroids(sitk.GetImageFromArray(specks))
    np.testing.assert_allclose(scattered[20], alone[20], atol=1e-6)
    np.testing.assert_allclose(scattered[21], alone[21], atol=1e-6)


def test_malformed_centroid_file_is_named(tmp_path):
    bad = tmp_path / "bad_ctd.json"
    bad.write_text(json.dumps([{"label": 1, "X": 0, "Y": 0, "Z": 0}]))
    img = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    try:
        C.read_verse_ctd(bad, img)
    except ValueError as e:
        assert "bad_ctd.json" in str(e) and "direction" in str(e)
    else:
        raise AssertionError("no error")
