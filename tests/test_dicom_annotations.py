"""vertebraformer_nn.dicom_annotations: DICOM SEG and RTSTRUCT written on a CT series and read back onto its grid."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn.dicom_annotations import read_rtstruct, read_seg, write_rtstruct, write_seg
from vertebraformer_nn.image_io import ImageReadError
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

REAL_SERIES = "totalsegmentator/example_ct_dicom"


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2.0 * np.sum(x & y) / max(np.sum(x) + np.sum(y), 1)


def as_mask(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def arrays(masks: dict[str, sitk.Image]) -> dict[str, np.ndarray]:
    return {name: sitk.GetArrayFromImage(m) for name, m in masks.items()}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A written CT series (shuffled file names) plus vertebra-like and lesion masks on its grid."""
    root = tmp_path_factory.mktemp("annot")
    rng = np.random.default_rng(0)
    ct = sitk.GetImageFromArray(rng.integers(-1000, 1500, (16, 40, 36)).astype(np.int16))
    ct.SetSpacing((0.8, 0.9, 2.0))
    ct.SetOrigin((-14.0, -18.0, -100.0))
    files = write_dicom_series(ct, root / "ct", patient_id="P1", shuffle_file_names=True)
    ct = io.read_image(root / "ct")
    z, y, x = np.mgrid[:16, :40, :36]
    body = ((x - 18) / 9.0) ** 2 + ((y - 20) / 8.0) ** 2 + ((z - 8) / 4.5) ** 2 < 1  # slices 4..12 only
    body[8, 19:22, 17:20] = False  # a hole (the canal of a ring-shaped slice)
    upper = ((x - 18) / 7.0) ** 2 + ((y - 12) / 5.0) ** 2 + ((z - 13) / 2.0) ** 2 < 1
    lesion = ((x - 16) ** 2 + (y - 20) ** 2 + (z - 7) ** 2) < 6  # inside the body: segments overlap
    masks = {
        "L1 vertebra": as_mask(body, ct),
        "T12 vertebra": as_mask(upper, ct),
        "Lesion lytic": as_mask(lesion, ct),
        "L2 vertebra": as_mask(np.zeros_like(body), ct),  # empty
    }
    return root, ct, files, masks


def test_seg_round_trip_exact(series):
    root, ct, files, masks = series
    path = write_seg(masks, files, root / "seg" / "segmentation.dcm")
    ds = pydicom.dcmread(str(path))
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["L1 vertebra", "T12 vertebra", "Lesion lytic"]
    assert ds.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    assert ds.FrameOfReferenceUID == ct.GetMetaData(io.FRAME_OF_REFERENCE_KEY)
    assert int(ds.NumberOfFrames) < 3 * 16  # empty frames omitted: the SEG covers part of the CT only
    back = read_seg(path, ct)
    assert set(back) == {"L1 vertebra", "T12 vertebra", "Lesion lytic"}  # the empty mask was skipped
    for name, array in arrays(back).items():
        assert back[name].GetPixelID() == sitk.sitkUInt8
        assert io.grid_mismatch(back[name], ct) is None
        np.testing.assert_array_equal(array, sitk.GetArrayViewFromImage(masks[name]), err_msg=name)


def test_seg_frames_mapped_by_position_not_order(series, tmp_path):
    root, ct, files, masks = series
    path = write_seg({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "seg.dcm")
    # Reverse the frame order (pixels and functional groups together): positions still place every frame.
    ds = pydicom.dcmread(str(path))
    frames = ds.pixel_array[::-1].copy()
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    ds.PixelData = pydicom.pixels.pack_bits(frames)
    ds.save_as(str(tmp_path / "reversed.dcm"))
    back = read_seg(tmp_path / "reversed.dcm", ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back["L1 vertebra"]),
                                  sitk.GetArrayViewFromImage(masks["L1 vertebra"]))


def test_seg_onto_reoriented_reference(series, tmp_path):
    root, ct, files, masks = series
    path = write_seg(masks, files, tmp_path / "seg.dcm")
    ras = io.reorient(ct, "RAS")
    back = read_seg(path, ras)
    assert io.grid_mismatch(back["L1 vertebra"], ras) is None
    np.testing.assert_array_equal(sitk.GetArrayFromImage(io.reorient(back["L1 vertebra"], "LPS")),
                                  sitk.GetArrayViewFromImage(masks["L1 vertebra"]))
    # Masks given in RAS are written just as well.
    ras_masks = {"L1 vertebra": io.reorient(masks["L1 vertebra"], "RAS")}
    again = read_seg(write_seg(ras_masks, files, tmp_path / "ras.dcm"), ct)
    np.testing.assert_array_equal(arrays(again)["L1 vertebra"], sitk.GetArrayViewFromImage(masks["L1 vertebra"]))


def test_rtstruct_round_trip(series):
    root, ct, files, masks = series
    path = write_rtstruct(masks, files, root / "rtstruct" / "rtstruct.dcm")
    ds = pydicom.dcmread(str(path))
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == pydicom.uid.RTStructureSetStorage
    assert [r.ROIName for r in ds.StructureSetROISequence] == list(masks)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    assert contour.ContourGeometricType == "CLOSED_PLANAR"
    referenced = {str(pydicom.dcmread(str(f)).SOPInstanceUID) for f in files}
    assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID in referenced
    back = read_rtstruct(path, ct)
    assert set(back) == set(masks)
    for name in ("L1 vertebra", "T12 vertebra", "Lesion lytic"):
        assert io.grid_mismatch(back[name], ct) is None
        assert dice(back[name], masks[name]) > 0.9, name
    assert back["L1 vertebra"][18, 20, 8] == 0  # the hole is a hole (even-odd rule), the ring around it is not
    assert back["L1 vertebra"][12, 20, 8] == 1
    assert not sitk.GetArrayViewFromImage(back["L2 vertebra"]).any()


def test_rtstruct_onto_reoriented_reference(series, tmp_path):
    root, ct, files, masks = series
    path = write_rtstruct({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "rt.dcm")
    back = read_rtstruct(path, io.reorient(ct, "PIR"))
    assert dice(io.reorient(back["L1 vertebra"], "LPS"), masks["L1 vertebra"]) > 0.9


def test_annotation_beside_the_series_is_not_chosen(series, tmp_path):
    root, ct, files, masks = series
    folder = tmp_path / "study"
    copies = write_dicom_series(ct, folder, patient_id="P1")
    write_seg({"L1 vertebra": masks["L1 vertebra"]}, copies, folder / "seg.dcm")
    write_rtstruct({"L1 vertebra": masks["L1 vertebra"]}, copies, folder / "rt.dcm")
    listed = {s.modality: s for s in io.list_dicom_series(folder)}
    # GDCM lists the SEG (it has pixels) but not the RTSTRUCT; neither may be chosen over the CT.
    assert "CT" in listed and "SEG" in listed
    assert "modality SEG, not CT" in listed["SEG"].reason_rejected
    assert io.choose_series(list(listed.values())) is listed["CT"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(io.read_image(folder)), sitk.GetArrayViewFromImage(ct))


def test_real_series_seg_and_rtstruct(real_data, tmp_path):
    # The real series is anonymised down to empty Study/Series/SOP Instance UIDs: the writers take the SOP
    # instances from the file meta and still reference every slice.
    (s,) = io.list_dicom_series(real_data / REAL_SERIES)
    ct = io.read_dicom_series(s)
    hu = sitk.GetArrayViewFromImage(ct)
    bone = hu > 300
    bone[:4] = False  # partial coverage along z
    masks = {"Bone": as_mask(bone, ct), "Lesion blastic": as_mask(hu > 1200, ct)}
    seg = read_seg(write_seg(masks, s.files, tmp_path / "seg.dcm"), ct)
    for name in masks:
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(seg[name]), sitk.GetArrayViewFromImage(masks[name]))
    ds = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    referenced = {i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
                          for f in s.files}
    rt = read_rtstruct(write_rtstruct({"Bone": masks["Bone"]}, s.files, tmp_path / "rt.dcm"), ct)
    assert dice(rt["Bone"], masks["Bone"]) > 0.9


# ------------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------------


def test_reading_a_ct_file_as_annotation(series):
    root, ct, files, masks = series
    with pytest.raises(ImageReadError, match="not a DICOM SEG") as err:
        read_seg(files[0], ct)
    assert str(files[0]) in str(err.value)
    with pytest.raises(ImageReadError, match="not a DICOM RTSTRUCT"):
        read_rtstruct(files[0], ct)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_seg(root / "missing.dcm", ct)


def test_other_frame_of_reference_is_refused(series, tmp_path):
    root, ct, files, masks = series
    seg = write_seg({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "seg.dcm")
    rt = write_rtstruct({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "rt.dcm")
    write_dicom_series(ct, tmp_path / "other", patient_id="P2")  # same grid, another scan
    other = io.read_image(tmp_path / "other")
    for reader, path in ((read_seg, seg), (read_rtstruct, rt)):
        with pytest.raises(ImageReadError, match="frame of reference") as err:
            reader(path, other)
        assert str(path) in str(err.value)


def test_off_grid_and_outside_references_are_refused(series, tmp_path):
    root, ct, files, masks = series
    seg = write_seg({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "seg.dcm")
    rt = write_rtstruct({"L1 vertebra": masks["L1 vertebra"]}, files, tmp_path / "rt.dcm")
    # A reference without DICOM identity (as from a NIfTI file), shifted by half a voxel in-plane / along z.
    for shift, reader, path in (((0.4, 0, 0), read_seg, seg), ((0, 0, 1.0), read_rtstruct, rt)):
        shifted = sitk.Image(ct.GetSize(), sitk.sitkInt16)
        shifted.SetSpacing(ct.GetSpacing())
        shifted.SetDirection(ct.GetDirection())
        shifted.SetOrigin(tuple(np.add(ct.GetOrigin(), shift)))
        with pytest.raises(ImageReadError, match="reference grid") as err:
            reader(path, shifted)
        assert str(path) in str(err.value)
    cropped = ct[:, :, :7]  # the masks reach slice 12
    cropped = sitk.Image(cropped.GetSize(), sitk.sitkInt16) + 0
    cropped.CopyInformation(ct[:, :, :7])
    for reader, path in ((read_seg, seg), (read_rtstruct, rt)):
        with pytest.raises(ImageReadError, match="outside the reference image"):
            reader(path, cropped)


def test_writer_input_errors(series, tmp_path):
    root, ct, files, masks = series
    wrong = sitk.Image(masks["L1 vertebra"])
    wrong.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="mask 'L1 vertebra' is not on the reference CT grid"):
        write_seg({"L1 vertebra": wrong}, files, tmp_path / "seg.dcm")
    with pytest.raises(ValueError, match="every mask is empty"):
        write_seg({"L2 vertebra": masks["L2 vertebra"]}, files, tmp_path / "seg.dcm")
    with pytest.raises(ValueError, match="origin differs"):
        write_rtstruct({"L1 vertebra": wrong}, files, tmp_path / "rt.dcm")
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "rt.dcm").exists()


def test_seg_frames_that_start_inside_a_byte(tmp_path):
    # 13 x 11 pixels: 1-bit frames packed back to back start mid-byte (pydicom 3.0 decodes some of those wrongly).
    ct = sitk.GetImageFromArray(np.zeros((9, 13, 11), np.int16))
    files = write_dicom_series(ct, tmp_path / "ct", patient_id="P2")
    ct = io.read_image(tmp_path / "ct")
    rng = np.random.default_rng(1)
    masks = {"L1 vertebra": as_mask(rng.random((9, 13, 11)) > 0.5, ct)}
    back = read_seg(write_seg(masks, files, tmp_path / "seg.dcm"), ct)
    np.testing.assert_array_equal(arrays(back)["L1 vertebra"], sitk.GetArrayViewFromImage(masks["L1 vertebra"]))
