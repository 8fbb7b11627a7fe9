"""DICOM series whose slices do not stack regularly (image_io.regular_grid): gantry tilt (issue 13) and missing slices
(issue 12 part 5) repaired onto a regular grid with a note, damaged slices refused; tested on the real Siemens series
``totalsegmentator/example_ct_dicom`` (20 slices, 512x512, 0.977 mm pixels, 2 mm slices)."""
from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vertebraformer_nn import image_io as io
from vertebraformer_nn.image_io import ImageReadError
from vertebraformer_nn.image_io.regular_grid import plan_regular_grid
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

REAL_SERIES = "totalsegmentator/example_ct_dicom"


@pytest.fixture(scope="module")
def original(real_data):
    """(the real series read as it is, its files sorted along the normal)."""
    (series,) = io.list_dicom_series(real_data / REAL_SERIES)
    assert series.uniform and series.repair is None
    return io.read_dicom_series(series), series.files


def _copy(files, folder, edit=lambda k, ds: None, skip=()):
    """The series copied (pixel data untouched), headers edited per slice index k in position order."""
    folder.mkdir(parents=True)
    for k, f in enumerate(files):
        if k in skip:
            continue
        ds = pydicom.dcmread(str(f))
        edit(k, ds)
        ds.save_as(str(folder / f.name))
    return folder


def _tilted(files, folder, angle_deg):
    """Positions sheared along the column direction (what gantry tilt does), pixels unchanged."""
    def edit(k, ds):
        col = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp + k * 2.0 * math.tan(math.radians(angle_deg)) * col]
        ds.GantryDetectorTilt = f"{angle_deg:g}"
    return _copy(files, folder, edit)


def _same_geometry(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_tilt_by_whole_pixels_is_the_original_shifted_exactly(original, tmp_path):
    """A tilt of atan(0.977 / 2) = 26.0 degrees shears each slice by exactly one pixel row per slice: slice k of the
    regular grid is the untilted original's slice k moved down k rows, the rows shifted in get the volume minimum."""
    image, files = original
    spacing = image.GetSpacing()
    angle = math.degrees(math.atan(spacing[1] / spacing[2]))
    (series,) = io.list_dicom_series(_tilted(files, tmp_path / "tilted", angle))
    assert series.reason_rejected is None and not series.uniform
    assert f"gantry tilt of {angle:.2f} degrees" in series.repair
    tilted = io.read_dicom_series(series)
    _same_geometry(tilted, image)  # slice 0 is unshifted, so the grid is the original's
    assert any("gantry tilt" in note and "dcm2niix" in note for note in io.read_notes(tilted))
    got, want = sitk.GetArrayViewFromImage(tilted), sitk.GetArrayViewFromImage(image)
    for k in range(got.shape[0]):
        np.testing.assert_array_equal(got[k, k:], want[k, : want.shape[1] - k], err_msg=f"slice {k}")
        assert (got[k, :k] == want.min()).all()


def test_realistic_tilt_matches_an_independent_resampling(original, tmp_path):
    """12 degrees: every voxel of the regular grid holds the tilted series' value at that physical point, as
    scipy's map_coordinates finds it through the sheared grid's own affine (bilinear within the slice plane)."""
    image, files = original
    tilted = io.read_image(_tilted(files, tmp_path / "tilted", 12.0))
    _same_geometry(tilted, image)
    stack = sitk.GetArrayViewFromImage(image).astype(np.float64)  # the tilted copy's pixels are the original's
    dz, dy = image.GetSpacing()[2], image.GetSpacing()[1]
    slices = np.array([0, 1, 9, 19])
    k, r, c = np.meshgrid(slices, *(np.arange(n) for n in stack.shape[1:]), indexing="ij")
    shear_rows = k * dz * math.tan(math.radians(12.0)) / dy  # where each output point lies in its tilted slice
    expected = ndimage.map_coordinates(stack, [k, r - shear_rows, c], order=1, mode="grid-constant",
                                       cval=stack.min())
    got = sitk.GetArrayViewFromImage(tilted)[slices]
    assert np.abs(got - np.rint(expected)).max() <= 1  # int16 rounding
    assert np.abs(got[1:] - stack[slices[1:]]).mean() > 20  # it did move: a sheared slice is not the original


def test_irregular_shear_and_steep_tilt_are_refused(original, tmp_path):
    image, files = original

    def wobble(k, ds):
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp + [3.0 * (k % 2), 0, 0]]
    (series,) = io.list_dicom_series(_copy(files, tmp_path / "wobble", wobble))
    assert "drift in-plane irregularly" in series.reason_rejected and series.repair is None
    with pytest.raises(ImageReadError, match="drift in-plane irregularly"):
        io.read_image(tmp_path / "wobble")
    (steep,) = io.list_dicom_series(_tilted(files, tmp_path / "steep", 50.0))
    assert "more than a gantry tilt" in steep.reason_rejected


def test_one_missing_slice_is_interpolated_with_a_note(original, tmp_path):
    image, files = original
    folder = _copy(files, tmp_path / "missing", skip={7})
    (series,) = io.list_dicom_series(folder)
    assert series.reason_rejected is None and "1 missing slice(s) (1 after slice 6" in series.repair
    repaired = io.read_image(folder)
    _same_geometry(repaired, image)
    got, want = sitk.GetArrayViewFromImage(repaired), sitk.GetArrayViewFromImage(image)
    others = [k for k in range(want.shape[0]) if k != 7]
    np.testing.assert_array_equal(got[others], want[others])
    np.testing.assert_array_equal(got[7], np.rint((want[6].astype(float) + want[8]) / 2))
    assert ["1 missing slice(s) (1 after slice 6; gaps up to 4 mm for 2 mm slices) filled by linear interpolation "
            "between their neighbours"] == io.read_notes(repaired)


def test_missing_slices_beyond_the_limits_are_refused(original, tmp_path):
    image, files = original
    (two,) = io.list_dicom_series(_copy(files, tmp_path / "two", skip={7, 8}))  # a 6 mm gap
    assert "too long to interpolate" in two.reason_rejected
    # A slice file whose pixel data GDCM cannot read is not a missing slice: refused, named.
    synthetic = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 1000, (12, 16, 16), dtype=np.int16))
    synthetic.SetSpacing((0.8, 0.8, 2.0))
    for cut in (700, -100):  # header cut (pydicom cannot tell the series) / pixel data cut (it can)
        folder = tmp_path / f"cut{cut}"
        victim = write_dicom_series(synthetic, folder)[-1]  # an end slice: without it the series would look whole
        victim.write_bytes(victim.read_bytes()[:cut])
        with pytest.raises(ImageReadError, match=f"unreadable .*{victim.name}") as err:
            io.read_image(folder)
        assert str(folder) in str(err.value)


def test_plan_is_pure_geometry():
    row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    z = np.array([0.0, 1.25, 2.5, 5.0, 6.25])  # one 1.25 mm slice missing after the third
    positions = np.column_stack([np.zeros(5), 0.3 * z, z])  # and sheared 0.3 mm per mm: 16.7 degrees
    grid = plan_regular_grid(positions, row, col)
    assert grid.n_slices == 6 and math.isclose(grid.slice_spacing, 1.25)
    np.testing.assert_allclose(grid.shear, [0, 0.3, 0], atol=1e-12)
    assert len(grid.notes) == 2 and "16.70 degrees" in grid.notes[1]
    assert "duplicate" in plan_regular_grid(positions[[0, 0, 1]], row, col)
    assert "not whole multiples" in plan_regular_grid(np.column_stack([np.zeros(3)] * 2 + [[0, 1.0, 2.5]]), row, col)


def test_repairs_reach_the_case_report(tmp_path):
    from vertebraformer_nn.image_io.regular_grid import add_read_note
    from vertebraformer_nn.inference.case_outputs import write_case_outputs

    ct = sitk.GetImageFromArray(np.full((6, 8, 8), -1000, np.int16))
    add_read_note(ct, "gantry tilt of 12.00 degrees (slices sheared in-plane): resampled")
    report = write_case_outputs(tmp_path, "case", ct, np.zeros((6, 8, 8), np.uint8), None, preview=False)
    assert report["notes"][0].startswith("gantry tilt of 12.00 degrees")
