"""Image perturbations of the benchmark (evaluation/perturbations.py): same grid, known effects, input untouched."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn.evaluation import perturbations as P
from vertebraformer_nn.geometry import superior_axis

# Directions (row-major, columns = index axes i, j, k in LPS) -> numpy axis (k, j, i order) closest to head-foot.
FLIPPED_AXIAL = ((1, 0, 0, 0, -1, 0, 0, 0, -1), 0)  # k points inferior
PIR = ((0, 0, -1, 1, 0, 0, 0, -1, 0), 1)  # VerSe-style sagittal: j points inferior
I_IS_SUPERIOR = ((0, 1, 0, 0, 0, 1, 1, 0, 0), 2)  # i points superior
c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
OBLIQUE = ((1, 0, 0, 0, c, -s, 0, s, c), 0)  # tilted 30 degrees about x: k is still closest to z
DIRECTIONS = [FLIPPED_AXIAL, PIR, I_IS_SUPERIOR, OBLIQUE]


def _image(array: np.ndarray, direction=PIR[0], spacing=(0.8, 1.0, 1.2), dtype=np.int16) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection(direction)
    return image


def _grid(image: sitk.Image):
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.float64)


@pytest.mark.parametrize("direction", [d for d, _ in DIRECTIONS])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
@pytest.mark.parametrize("kind", sorted(P.PERTURBATIONS))
def test_every_perturbation_keeps_the_grid_and_the_input(kind, dtype, direction):
    rng = np.random.default_rng(0)
    image = _image(rng.integers(0, 200, (12, 14, 16)), direction, spacing=(0.7, 1.1, 1.5), dtype=dtype)
    before, grid, pixel_id = sitk.GetArrayFromImage(image).copy(), _grid(image), image.GetPixelID()
    for strength in P.PERTURBATIONS[kind]:
        out = P.perturb(image, kind, strength)
        assert _grid(out) == grid and out.GetPixelID() == sitk.sitkFloat32
    assert np.array_equal(sitk.GetArrayFromImage(image), before)
    assert _grid(image) == grid and image.GetPixelID() == pixel_id


def test_tables_cover_every_kind_with_three_increasing_strengths():
    assert set(P.UNITS) == set(P.PERTURBATIONS) == {"noise", "blur", "hu_offset", "slice_spacing"}
    for strengths in P.PERTURBATIONS.values():
        assert len(strengths) == 3 and 0 < strengths[0] < strengths[1] < strengths[2]


def test_noise_has_the_asked_sd_and_is_reproducible():
    image = _image(np.full((40, 40, 40), 30))
    for sd in P.PERTURBATIONS["noise"]:
        a = _array(P.perturb(image, "noise", sd, seed=3)) - 30
        assert a.std() == pytest.approx(sd, rel=0.02) and abs(a.mean()) < 0.02 * sd
    a = sitk.GetArrayFromImage(P.perturb(image, "noise", 50.0, seed=3))
    assert np.array_equal(a, sitk.GetArrayFromImage(P.perturb(image, "noise", 50.0, seed=3)))
    assert not np.array_equal(a, sitk.GetArrayFromImage(P.perturb(image, "noise", 50.0, seed=4)))


def test_hu_offset_is_exact():
    image = _image(np.random.default_rng(1).integers(-1024, 3000, (8, 9, 10)))
    for offset in P.PERTURBATIONS["hu_offset"]:
        assert np.array_equal(_array(P.perturb(image, "hu_offset", offset)), _array(image) + offset)


def test_blur_smooths_more_with_strength_and_keeps_the_mean():
    image = _image(np.random.default_rng(1).normal(100, 50, (24, 24, 24)))
    base, variances = _array(image), []
    for sigma in P.PERTURBATIONS["blur"]:
        blurred = _array(P.perturb(image, "blur", sigma))
        assert abs(blurred.mean() - base.mean()) < 1.0
        variances.append(blurred.var())
    assert base.var() > variances[0] > variances[1] > variances[2] and variances[1] < 0.2 * base.var()


def test_blur_sd_is_in_millimetres_along_every_axis():
    # A point source blurred by sigma mm spreads with SD sigma mm on every axis, whatever the voxel size.
    array = np.zeros((41, 41, 41))
    array[20, 20, 20] = 1000
    image = _image(array, PIR[0], spacing=(0.5, 1.0, 2.0))
    spacing_kji = image.GetSpacing()[::-1]
    for sigma in (1.5, 3.0):  # at least ~one voxel on every axis: a sub-voxel blur cannot be sampled
        out = _array(P.perturb(image, "blur", sigma))
        assert out.sum() == pytest.approx(1000, rel=0.01)
        for axis in range(3):
            profile = out.sum(axis=tuple(a for a in range(3) if a != axis))
            mm = (np.arange(41) - 20) * spacing_kji[axis]
            assert np.sqrt((profile * mm**2).sum() / profile.sum()) == pytest.approx(sigma, rel=0.1)


def _pattern(axis: int, along: bool, shape=(11, 12, 13)) -> np.ndarray:
    """0/100 alternating along numpy ``axis`` (``along``) or along another axis only (not ``along``)."""
    varying = axis if along else (axis + 1) % 3
    stripes = 100 * (np.arange(shape[varying]) % 2)
    return np.broadcast_to(np.expand_dims(stripes, [a for a in range(3) if a != varying]), shape).copy()


def _spacing_with_head_foot(axis: int, head_foot_mm: float) -> tuple:
    spacing_kji = [0.7, 0.9, 1.1]
    spacing_kji[axis] = head_foot_mm
    return tuple(spacing_kji[::-1])


@pytest.mark.parametrize("direction, axis", DIRECTIONS)
def test_thicker_slices_average_only_along_head_foot(direction, axis):
    spacing = _spacing_with_head_foot(axis, 1.5)
    assert superior_axis(_image(np.zeros((3, 3, 3)), direction, spacing).GetDirection())[0] == axis
    # In-plane pattern: untouched.
    across = _pattern(axis, along=False)
    kept = P.perturb(_image(across, direction, spacing), "slice_spacing", 3.0)
    assert np.array_equal(_array(kept), across)
    # Along head-foot: 3 mm slabs over 1.5 mm slices weigh (1/4, 1/2, 1/4), so 0/100 stripes become 50.
    along = _pattern(axis, along=True)
    smoothed = np.moveaxis(_array(P.perturb(_image(along, direction, spacing), "slice_spacing", 3.0)), axis, 0)
    assert np.allclose(smoothed[1:-1], 50.0)
    assert np.allclose(smoothed[0], 0.75 * np.moveaxis(along, axis, 0)[0] + 25)  # edge: the first slice repeats


@pytest.mark.parametrize("direction, axis", DIRECTIONS[:3])
def test_slab_width_is_the_asked_thickness(direction, axis):
    spacing = _spacing_with_head_foot(axis, 1.0)
    along = _pattern(axis, along=True)
    # 3 mm over 1 mm slices: a 3-slice mean, so stripes become 100/3 and 200/3.
    out = np.moveaxis(_array(P.perturb(_image(along, direction, spacing), "slice_spacing", 3.0)), axis, 0)
    stripes = np.moveaxis(along, axis, 0)
    assert np.allclose(out[1:-1], np.where(stripes[1:-1] > 0, 100 / 3, 200 / 3), atol=1e-4)
    # A linear ramp along head-foot is kept away from the edges (the slab is centred).
    ramp = np.moveaxis(np.broadcast_to(np.arange(11.0)[:, None, None] * 10, (11, 12, 13)), 0, axis)
    out = np.moveaxis(_array(P.perturb(_image(ramp, direction, spacing), "slice_spacing", 7.0)), axis, 0)
    assert np.allclose(out[3:-3], np.moveaxis(ramp, axis, 0)[3:-3], atol=1e-4)


def test_slices_already_that_thick_are_returned_unchanged():
    along = _pattern(1, along=True)
    for thickness in (3.0, 5.0):
        image = _image(along, PIR[0], _spacing_with_head_foot(1, 5.0))
        out = P.perturb(image, "slice_spacing", thickness)
        assert np.array_equal(_array(out), along) and out.GetPixelID() == sitk.sitkFloat32
    assert not np.array_equal(_array(P.perturb(image, "slice_spacing", 7.0)), along)


def test_variant_names_round_trip():
    for case in ("verse_sub-verse502_split-verse601", "case__odd", "dicom_patient001"):
        for kind in P.PERTURBATIONS:
            for level in (1, 2, 3):
                name = P.variant_name(case, kind, level)
                assert P.parse_variant(name) == (case, kind, level)
                assert all(ch.isalnum() or ch in "-_" for ch in name.replace(case, ""))
    assert P.variant_name("c", "hu_offset", 2) == "c__hu_offset2"
    assert P.parse_variant("dicom_patient001") == ("dicom_patient001", None, 0)
    assert P.parse_variant("case__sharpen1") == ("case__sharpen1", None, 0)  # not a known kind: a clean name


def test_bad_input_is_refused():
    image = _image(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="unknown perturbation 'jpeg'"):
        P.perturb(image, "jpeg", 1.0)
    for bad in (0.0, -50.0, float("nan"), float("inf"), "3"):
        with pytest.raises(ValueError, match="noise strength must be a finite positive"):
            P.perturb(image, "noise", bad)
    with pytest.raises(ValueError, match="3D scalar image"):
        P.perturb(sitk.Image(4, 4, sitk.sitkInt16), "blur", 1.0)
    for level in (0, 4):
        with pytest.raises(ValueError, match="level must be 1..3"):
            P.variant_name("a", "noise", level)
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.variant_name("a", "jpeg", 1)
    for case in ("", "a/b", " a"):
        with pytest.raises(ValueError, match="not a plain, non-empty file name"):
            P.variant_name(case, "noise", 1)
    with pytest.raises(ValueError, match="level must be 1..3, got 4"):
        P.parse_variant("a__blur4")
