"""vertebraformer_nn.image_io: image files, DICOM series (listing, choice, slice order, geometry), writers, errors."""
from __future__ import annotations

import gzip
import math
import struct

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn.image_io import ImageReadError
from vertebraformer_nn.image_io.regular_grid import spacing_problem
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

REAL_SERIES = "totalsegmentator/example_ct_dicom"
VERSE_MASK = "verse_sub-verse004/sub-verse004_seg-vert_msk.nii.gz"

# A rotation far from axial (about 40 degrees around a skew axis), right-handed.
TILTED = sitk.VersorTransform((1.0, 2.0, 0.5), 0.7).GetMatrix()


def make_ct(size=(24, 20, 12), spacing=(0.75, 0.8, 2.5), origin=(10.25, -20.5, 30.125), direction=None, seed=0,
            low=-1000, high=2000, dtype=np.int16) -> sitk.Image:
    """A small CT-like volume whose every voxel differs from its neighbours (so slice order shows in the values)."""
    rng = np.random.default_rng(seed)
    array = rng.integers(low, high, size[::-1]).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def ipp(path) -> np.ndarray:
    return np.array([float(v) for v in pydicom.dcmread(str(path), stop_before_pixels=True).ImagePositionPatient])


def assert_same_image(a: sitk.Image, b: sitk.Image, atol=1e-6):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


# ------------------------------------------------------------------------------------------------------------------
# The real Siemens series
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_series(real_data):
    folder = real_data / REAL_SERIES
    series = io.list_dicom_series(folder)
    return folder, series


def test_real_series_listed_and_sorted_by_position(real_series):
    folder, series = real_series
    assert len(series) == 1
    s = series[0]
    assert (s.modality, s.n_slices, s.is_axial, s.uniform, s.is_localizer) == ("CT", 20, True, True, False)
    assert s.reason_rejected is None
    assert s.slice_spacing == pytest.approx(2.0)
    # Files sorted by position along the normal (+z here), which is the reverse of their file-name order.
    z = [ipp(f)[2] for f in s.files]
    assert np.all(np.diff(z) == pytest.approx(2.0))
    assert [f.name for f in s.files] != sorted(f.name for f in s.files)
    assert io.choose_series(series) is s


def test_real_series_geometry_matches_headers(real_series):
    folder, series = real_series
    image = io.read_image(folder)
    assert image.GetSize() == (512, 512, 20)
    assert image.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert image.GetDirection() == pytest.approx(np.eye(3).ravel())
    assert io.orientation(image) == "LPS"
    for k, f in enumerate(series[0].files):
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((0, 0, k)), ipp(f), atol=1e-4)
    assert image.GetOrigin()[2] == pytest.approx(-804.5)  # the lowest slice, whatever the file names say
    assert image.GetMetaData(io.FRAME_OF_REFERENCE_KEY) == "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"


def test_real_series_slice_content_order_and_hu(real_series):
    folder, series = real_series
    volume = sitk.GetArrayFromImage(io.read_dicom_series(series[0]))
    # Each volume slice holds exactly the pixels of the file the headers put there (read one file at a time).
    for k in (0, 7, 19):
        single = sitk.GetArrayFromImage(sitk.ReadImage(str(series[0].files[k])))[0]
        np.testing.assert_array_equal(volume[k], single)
    assert volume.dtype == np.int16
    assert volume.min() == -1024  # RescaleIntercept -1024 applied to stored 0 (air outside the field of view)
    assert 1000 < volume.max() < 4000
    soft_tissue = np.mean((volume > -100) & (volume < 100))
    assert 0.05 < soft_tissue < 0.6


# ------------------------------------------------------------------------------------------------------------------
# Written series: slice order, geometry, pixel storage
# ------------------------------------------------------------------------------------------------------------------


def test_shuffled_series_reads_in_position_order_with_exact_geometry(tmp_path):
    image = make_ct()
    files = write_dicom_series(image, tmp_path / "ct", shuffle_file_names=True, seed=3)
    assert len(files) == 12
    names = [f.name for f in files]  # returned in position order
    assert names != sorted(names)
    assert [ipp(f)[2] for f in files] == pytest.approx([30.125 + 2.5 * k for k in range(12)])

    back = io.read_image(tmp_path / "ct")
    assert_same_image(image, back)
    assert back.GetPixelID() == sitk.sitkInt16
    assert io.grid_mismatch(image, back) is None


def test_written_series_headers(tmp_path):
    image = make_ct()
    files = write_dicom_series(image, tmp_path / "ct", patient_id="P7", series_number=4, series_description="Bone",
                               convolution_kernel="B70f", slice_thickness=3.0, seed=1)
    first = pydicom.dcmread(str(files[0]))
    assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.Modality == "CT"
    assert (first.PatientID, first.SeriesNumber, first.SeriesDescription) == ("P7", 4, "Bone")
    assert first.ConvolutionKernel == "B70f" and float(first.SliceThickness) == 3.0
    assert float(first.RescaleIntercept) == -1024 and first.PixelRepresentation == 0  # scanner-style uint16
    assert [float(v) for v in first.PixelSpacing] == [0.8, 0.75]  # row spacing (y) first
    assert [pydicom.dcmread(str(f)).InstanceNumber for f in files] == list(range(1, 13))
    # Deterministic UIDs: the same call gives the same UIDs, another patient others.
    again = write_dicom_series(image, tmp_path / "again", patient_id="P7", series_number=4,
                               series_description="Bone", seed=1)
    other = write_dicom_series(image, tmp_path / "other", patient_id="P8", series_number=4,
                               series_description="Bone", seed=1)
    uids = lambda f: (lambda d: (d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID))(pydicom.dcmread(str(f)))
    assert uids(again[0]) == uids(files[0])
    assert set(uids(other[0])).isdisjoint(uids(files[0]))


def test_values_below_minus_1024_and_float_values(tmp_path):
    # Below -1024 the writer switches to signed storage; float HU are rounded to whole HU.
    image = make_ct(low=-3024, high=3000)
    write_dicom_series(image, tmp_path / "signed")
    assert pydicom.dcmread(str(next((tmp_path / "signed").iterdir()))).PixelRepresentation == 1
    assert_same_image(image, io.read_image(tmp_path / "signed"))

    floats = sitk.Cast(make_ct(), sitk.sitkFloat32) + 0.3
    write_dicom_series(floats, tmp_path / "float")
    back = io.read_image(tmp_path / "float")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), np.rint(sitk.GetArrayFromImage(floats)))


def test_tilted_series_round_trip(tmp_path):
    image = make_ct(direction=TILTED)
    write_dicom_series(image, tmp_path / "tilted", shuffle_file_names=True)
    (series,) = io.list_dicom_series(tmp_path / "tilted")
    assert not series.is_axial and "not axial" in series.reason_rejected
    back = io.read_image(tmp_path / "tilted", series_uid=series.series_uid)
    assert_same_image(image, back, atol=1e-6)


def test_left_handed_volume_is_written_as_the_same_physical_image(tmp_path):
    # DICOM cannot store a left-handed grid: the series reads back with the slice axis flipped, voxel for voxel
    # at the same physical points.
    image = make_ct(direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    write_dicom_series(image, tmp_path / "lh")
    back = io.read_image(tmp_path / "lh")
    assert_same_image(sitk.Flip(image, [False, False, True]), back)
    index = (3, 4, 5)
    point = image.TransformIndexToPhysicalPoint(index)
    assert back[back.TransformPhysicalPointToIndex(point)] == image[index]


def test_multiframe_dicom_file(tmp_path):
    import highdicom as hd

    image = make_ct()
    files = write_dicom_series(image, tmp_path / "series", shuffle_file_names=True)
    # Frames in file-name (shuffled) order: the reader must place them by their plane positions.
    datasets = [pydicom.dcmread(str(f)) for f in sorted(files)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(), instance_number=1
    )
    path = tmp_path / "mf" / "enhanced.dcm"
    path.parent.mkdir()
    enhanced.save_as(str(path))
    assert_same_image(image, io.read_image(path))
    (series,) = io.list_dicom_series(path.parent)
    assert (series.n_slices, series.slice_spacing, series.reason_rejected) == (12, pytest.approx(2.5), None)
    assert_same_image(image, io.read_image(path.parent))


def test_single_slice_dicom_file_is_2d(real_data):
    path = real_data / "pydicom" / "CT_small.dcm"
    with pytest.raises(ImageReadError, match="single DICOM slice") as err:
        io.read_image(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------------------------------------
# Series choice
# ------------------------------------------------------------------------------------------------------------------

CORONAL = (1, 0, 0, 0, 0, -1, 0, 1, 0)  # rows along x, columns head->foot, slices along +y
SAGITTAL = (0, 0, 1, 1, 0, 0, 0, 1, 0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study as scanners export it: a thin bone series, a thick soft-tissue series, a localizer, a sagittal MPR."""
    root = tmp_path_factory.mktemp("study")
    for_uid = pydicom.uid.generate_uid(entropy_srcs=["study-for"])
    common = dict(patient_id="P1", frame_of_reference_uid=for_uid, study_instance_uid="1.2.3.4")
    thin = make_ct(size=(16, 16, 30), spacing=(0.8, 0.8, 1.0), seed=1)
    thick = make_ct(size=(16, 16, 10), spacing=(0.8, 0.8, 3.0), seed=2)
    write_dicom_series(thin, root / "s2_bone", series_number=2, series_description="Bone 1.0 B70",
                       shuffle_file_names=True, **common)
    write_dicom_series(thick, root / "s3_soft", series_number=3, series_description="Soft 3.0 B30", **common)
    write_dicom_series(make_ct(size=(32, 32, 3), spacing=(1, 1, 1), direction=CORONAL), root / "s1_scout",
                       series_number=1, series_description="Topogram",
                       image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **common)
    write_dicom_series(make_ct(size=(16, 16, 20), spacing=(0.8, 0.8, 0.8), direction=SAGITTAL), root / "s4_sag",
                       series_number=4, series_description="Sag MPR", **common)
    # Thinnest of all, axial, but only 5 slices: localizer-like by the slice-count rule.
    write_dicom_series(make_ct(size=(16, 16, 5), spacing=(0.8, 0.8, 0.5)), root / "s5_short",
                       series_number=5, series_description="Short 0.5", **common)
    return root, thin


def test_choose_series_picks_thin_axial(study):
    root, thin = study
    series = io.list_dicom_series(root)
    by_description = {s.description: s for s in series}
    assert set(by_description) == {"Bone 1.0 B70", "Soft 3.0 B30", "Topogram", "Sag MPR", "Short 0.5"}
    assert by_description["Topogram"].is_localizer and "localizer" in by_description["Topogram"].reason_rejected
    assert by_description["Short 0.5"].is_localizer and "only 5 slices" in by_description["Short 0.5"].reason_rejected
    assert not by_description["Sag MPR"].is_axial
    assert by_description["Soft 3.0 B30"].reason_rejected is None  # eligible, but thicker
    chosen = io.choose_series(series, source=str(root))
    assert chosen.description == "Bone 1.0 B70" and chosen.slice_spacing == pytest.approx(1.0)
    assert_same_image(thin, io.read_image(root))


def test_choose_series_tie_breaks_on_most_slices(tmp_path):
    write_dicom_series(make_ct(size=(8, 8, 10)), tmp_path / "short", series_number=1)
    write_dicom_series(make_ct(size=(8, 8, 14)), tmp_path / "long", series_number=2)
    assert io.choose_series(io.list_dicom_series(tmp_path)).n_slices == 14


def test_choose_series_error_lists_every_rejection(study, tmp_path):
    root, _ = study
    rejected = [s for s in io.list_dicom_series(root) if s.description in ("Topogram", "Sag MPR", "Short 0.5")]
    with pytest.raises(ImageReadError) as err:
        io.choose_series(rejected, source="patient001/study1")
    message = str(err.value)
    assert message.startswith("patient001/study1: no usable CT series among 3")
    assert "Short 0.5" in message and "only 5 slices" in message
    assert "Topogram" in message and "localizer" in message
    assert "Sag MPR" in message and "not axial" in message
    with pytest.raises(ImageReadError, match="no DICOM series found"):
        io.choose_series([], source="x")


def test_series_with_long_gap_duplicates_or_no_pixel_spacing_is_rejected(tmp_path):
    files = write_dicom_series(make_ct(size=(8, 8, 12)), tmp_path / "gap")  # 2.5 mm slices
    files[5].unlink()
    files[6].unlink()  # a 7.5 mm gap: too long to interpolate (a single missing slice is repaired: test_regular_grid)
    (gap,) = io.list_dicom_series(tmp_path / "gap")
    assert not gap.uniform and "non-uniform slice spacing" in gap.reason_rejected and "too long" in gap.reason_rejected

    files = write_dicom_series(make_ct(size=(8, 8, 12)), tmp_path / "dup")
    for k, f in enumerate(files):  # a second phase at the same positions, same series UID
        ds = pydicom.dcmread(str(f))
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["dup", str(k)])
        ds.save_as(str(f.with_name("phase2_" + f.name)))
    (dup,) = io.list_dicom_series(tmp_path / "dup")
    assert "duplicate slice positions" in dup.reason_rejected

    files = write_dicom_series(make_ct(size=(8, 8, 12)), tmp_path / "nospacing")
    for f in files:
        ds = pydicom.dcmread(str(f))
        del ds.PixelSpacing
        ds.save_as(str(f))
    with pytest.raises(ImageReadError, match="PixelSpacing") as err:
        io.read_image(tmp_path / "nospacing")
    assert str(tmp_path / "nospacing") in str(err.value)


def test_read_image_with_unknown_series_uid(study):
    root, _ = study
    with pytest.raises(ImageReadError, match="no DICOM series with SeriesInstanceUID '1.2.3'"):
        io.read_image(root, series_uid="1.2.3")


# ------------------------------------------------------------------------------------------------------------------
# Image files
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", io.IMAGE_SUFFIXES)
def test_image_file_round_trip(tmp_path, suffix):
    image = make_ct(direction=TILTED)
    path = io.write_image(image, tmp_path / "sub" / f"case{suffix}")
    assert path == tmp_path / "sub" / f"case{suffix}" and io.is_image_file(path)
    # NIfTI stores geometry as float32; the other formats keep doubles.
    assert_same_image(image, io.read_image(path), atol=1e-5 if suffix.startswith(".nii") else 1e-12)
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_write_image_replaces_atomically(tmp_path):
    path = tmp_path / "case.nii.gz"
    io.write_image(make_ct(seed=1), path)
    io.write_image(make_ct(seed=2), path)
    assert_same_image(make_ct(seed=2), io.read_image(path), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]
    with pytest.raises(ValueError, match="unsupported image suffix"):
        io.write_image(make_ct(), tmp_path / "case.png")


def test_is_image_file(tmp_path):
    (tmp_path / "a.NII.GZ").write_bytes(b"x")
    (tmp_path / "b.dcm").write_bytes(b"x")
    assert io.is_image_file(tmp_path / "a.NII.GZ")
    assert not io.is_image_file(tmp_path / "b.dcm")
    assert not io.is_image_file(tmp_path / "missing.nii.gz")
    assert not io.is_image_file(tmp_path)


def test_verse_mask_read_as_pir_with_integral_codes(real_data):
    path = real_data / VERSE_MASK
    label = io.read_label(path)
    assert label.GetSize() == (161, 338, 61)
    assert io.orientation(label) == "PIR"
    assert label.GetPixelID() == sitk.sitkUInt8  # stored as float64, integral values
    values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
    assert values == {0, *range(16, 25)}
    # Geometry equals nibabel's affine (RAS) turned into LPS.
    affine = nib.load(str(path)).affine
    lps = np.diag([-1, -1, 1]) @ affine[:3]
    np.testing.assert_allclose(label.GetOrigin(), lps[:, 3], atol=1e-4)
    spacing = np.array(label.GetSpacing())
    np.testing.assert_allclose(np.array(label.GetDirection()).reshape(3, 3) * spacing, lps[:, :3], atol=1e-4)


def test_qform_only_nifti(real_data, tmp_path):
    # The VerSe sample carries its geometry in the sform; VerSe files elsewhere carry it in the qform only.
    source = nib.load(str(real_data / VERSE_MASK))
    image = nib.Nifti1Image(np.asarray(source.dataobj), None, source.header.copy())
    image.set_qform(source.affine, code=1)
    image.set_sform(None, code=0)
    path = tmp_path / "qform_only.nii.gz"
    nib.save(image, str(path))
    assert (int(nib.load(str(path)).header["qform_code"]), int(nib.load(str(path)).header["sform_code"])) == (1, 0)
    a, b = io.read_label(real_data / VERSE_MASK), io.read_label(path)
    assert io.grid_mismatch(a, b, origin_tol_mm=1e-3, rel_tol=1e-4) is None
    assert io.orientation(b) == "PIR"
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def test_read_label_rejects_non_integral_values(tmp_path):
    image = sitk.Cast(make_ct(low=0, high=5), sitk.sitkFloat32) * 0.5
    path = io.write_image(image, tmp_path / "soft.nii.gz")
    with pytest.raises(ImageReadError, match="non-integral") as err:
        io.read_label(path)
    assert str(path) in str(err.value)
    integral = io.write_image(sitk.Cast(make_ct(low=0, high=300), sitk.sitkFloat64), tmp_path / "int.nrrd")
    assert io.read_label(integral).GetPixelID() == sitk.sitkInt16


# ------------------------------------------------------------------------------------------------------------------
# Orientation and grids
# ------------------------------------------------------------------------------------------------------------------


def test_reorient_to_ras_keeps_every_voxel_in_place(real_data):
    label = io.read_label(real_data / VERSE_MASK)
    ras = io.reorient(label, "RAS")
    assert io.orientation(ras) == "RAS" and io.orientation(label) == "PIR"
    a, b = sitk.GetArrayViewFromImage(label), sitk.GetArrayViewFromImage(ras)
    # Every labelled voxel sits at the same physical point (index -> mm through the full affine), per label code.
    def labelled_points(image, array, code):
        idx = np.argwhere(array == code)[:, ::-1].astype(float)  # (x, y, z)
        affine = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
        world = idx @ affine.T + np.array(image.GetOrigin())
        return world[np.lexsort(np.round(world, 3).T)]

    for code in (16, 20, 24):
        np.testing.assert_allclose(labelled_points(label, a, code), labelled_points(ras, b, code), atol=1e-4)
    for code in range(16, 25):
        ca = np.argwhere(a == code)[:, ::-1].mean(axis=0)
        cb = np.argwhere(b == code)[:, ::-1].mean(axis=0)
        np.testing.assert_allclose(label.TransformContinuousIndexToPhysicalPoint(ca),
                                   ras.TransformContinuousIndexToPhysicalPoint(cb), atol=1e-6)
    # nnU-Net's SimpleITKIOWithReorient convention: an identity-direction image in RAS has direction diag(-1,-1,1).
    assert io.reorient(make_ct(), "RAS").GetDirection() == (-1, 0, 0, 0, -1, 0, 0, 0, 1)


def test_grid_mismatch():
    a = make_ct()
    assert io.grid_mismatch(a, sitk.Image(a)) is None
    b = sitk.Image(a)
    b.SetOrigin((10.25 + 1.5, -20.5 + 2.0, 30.125))
    assert io.grid_mismatch(a, b) == "origin differs by 2.5 mm"
    b.SetOrigin((10.25 + 1e-4, -20.5, 30.125))
    assert io.grid_mismatch(a, b) is None
    assert io.grid_mismatch(a, make_ct(size=(24, 20, 13))) == "size (24, 20, 12) vs (24, 20, 13)"
    assert io.grid_mismatch(a, make_ct(spacing=(0.75, 0.8, 2.0))).startswith("spacing (0.75, 0.8, 2.5) vs")
    assert io.grid_mismatch(a, make_ct(spacing=(0.75, 0.8, 2.5 * (1 + 1e-6)))) is None
    assert "direction differs (LPS vs" in io.grid_mismatch(a, make_ct(direction=TILTED))
    assert io.grid_mismatch(a, sitk.Image(4, 4, sitk.sitkUInt8)) == "dimension 3 vs 2"


# ------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------------------------


def _raises_naming(path, match, reader=io.read_image):
    with pytest.raises(ImageReadError, match=match) as err:
        reader(path)
    assert str(path) in str(err.value), err.value
    return str(err.value)


def test_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(b"definitely not a NIfTI header" * 20))
    _raises_naming(corrupt, "unreadable")
    truncated = tmp_path / "truncated.mha"
    io.write_image(make_ct(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:400])
    _raises_naming(truncated, "truncated zlib-compressed voxel data")  # more test_image_headers.py
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _raises_naming(text, "not DICOM")
    _raises_naming(tmp_path / "missing.nii.gz", "does not exist")


def test_empty_and_non_dicom_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises_naming(empty, "no DICOM series found")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("no images here")
    _raises_naming(tmp_path / "junk", "no DICOM series found")


def test_2d_4d_vector_and_zero_spacing_images(tmp_path):
    flat = io.write_image(sitk.Image(32, 32, sitk.sitkInt16), tmp_path / "flat.mha")
    _raises_naming(flat, "2D")
    one_slice = io.write_image(sitk.Image(32, 32, 1, sitk.sitkInt16), tmp_path / "one_slice.nrrd")
    _raises_naming(one_slice, "single slice")
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.int16), np.eye(4)), str(four_d))
    _raises_naming(four_d, "4D")
    vector = io.write_image(sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 3), tmp_path / "vector.mha")
    _raises_naming(vector, "components")
    zero = tmp_path / "zero_spacing.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), str(zero))
    raw = bytearray(zero.read_bytes())
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1] = 0: spacing unknown (nibabel and ITK both patch it to 1 on load)
    zero.write_bytes(bytes(raw))
    _raises_naming(zero, "missing or zero voxel spacing")
    # A 4D file with one time point is a 3D volume.
    single_t = tmp_path / "single_t.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 1), np.int16), np.eye(4)), str(single_t))
    assert io.read_image(single_t).GetSize() == (8, 8, 8)


def test_unreadable_dicom_series_names_the_folder(tmp_path):
    files = write_dicom_series(make_ct(size=(8, 8, 10)), tmp_path / "ct")
    files[3].write_bytes(files[3].read_bytes()[:600])  # header intact, pixel data cut
    with pytest.raises(ImageReadError) as err:
        io.read_image(tmp_path / "ct")
    assert str(tmp_path / "ct") in str(err.value)


def test_spacing_problem_tolerates_decimal_string_rounding():
    positions = np.array([[0, 0, z] for z in (0.0, 1.2500001, 2.5, 3.7499999)])
    assert spacing_problem(np.diff(positions[:, 2]), positions, np.array([0, 0, 1.0])) is None
    assert math.isclose(np.median(np.diff(positions[:, 2])), 1.25, rel_tol=1e-6)


@pytest.mark.parametrize("writer", ["itk", "nibabel"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_keeps_nan_and_infinite_voxels(tmp_path, writer, suffix):
    """ITK's NIfTI reader turns NaN and inf into 0 (SimpleITK 2.5.7); read_image gives back what the file holds."""
    image = make_ct(size=(9, 7, 5), dtype=np.float32, direction=TILTED)  # (x, y, z) = (9, 7, 5)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    array[1, 2, 3:6] = np.nan
    array[4, 6, 8] = np.inf
    array[0, 0, 0] = -np.inf
    path = tmp_path / f"x{suffix}"
    if writer == "itk":
        written = sitk.GetImageFromArray(array)
        written.CopyInformation(image)
        sitk.WriteImage(written, str(path))
    else:
        nib.save(nib.Nifti1Image(array.T, np.diag([0.75, 0.8, 2.5, 1.0])), str(path))
    ours = io.read_image(path)
    got = sitk.GetArrayFromImage(ours)
    assert np.array_equal(np.isnan(got), np.isnan(array))  # the same voxels, not transposed
    assert got[4, 6, 8] == np.inf and got[0, 0, 0] == -np.inf
    finite = np.isfinite(array)
    assert np.array_equal(got[finite], array[finite])
    plain = sitk.ReadImage(str(path))  # the geometry is ITK's, untouched
    assert ours.GetSpacing() == plain.GetSpacing() and ours.GetOrigin() == plain.GetOrigin()
    assert ours.GetDirection() == plain.GetDirection()
    assert np.isfinite(sitk.GetArrayViewFromImage(plain)).all()  # what the fix is for; fails once ITK keeps NaN


def test_nifti_without_non_finite_values_is_itks_image(tmp_path):
    image = make_ct(dtype=np.float32)
    sitk.WriteImage(image, str(tmp_path / "x.nii.gz"))
    assert np.array_equal(sitk.GetArrayViewFromImage(io.read_image(tmp_path / "x.nii.gz")),
                          sitk.GetArrayViewFromImage(image))
