"""DICOM SEG written by other tools (issue 13 part 1): the dcmqi / 3D Slicer files in ``dcmqi_seg/`` read voxel for
voxel onto the real 3-slice GE CT, whatever the frame order, the functional-group layout, the encoding (BINARY,
FRACTIONAL at the 0.5 threshold, LABELMAP) and whether frames carry a position or only their source image."""
from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn.dicom_annotations import read_seg, write_seg
from vertebraformer_nn.dicom_annotations.seg_read import SegReader
from vertebraformer_nn.image_io import ImageReadError

SEG_DIR = "dcmqi_seg"


@pytest.fixture(scope="module")
def ct(real_data):
    """(the 3-slice CT as read from its series, its files in position order, the folder of the SEG files)."""
    folder = real_data / SEG_DIR
    (series,) = io.list_dicom_series(folder / "ct-3slice")
    assert "only 3 slices" in series.reason_rejected  # too short for prediction; fine as an annotation reference
    return io.read_dicom_series(series), series.files, folder


def _label_map(path, value: int, ct_image: sitk.Image) -> np.ndarray:
    nrrd = sitk.ReadImage(str(path))
    assert io.grid_mismatch(nrrd, ct_image, origin_tol_mm=1e-3) is None  # the NRRD lies on the CT grid
    return sitk.GetArrayFromImage(nrrd) == value


def _rewrite(ds: pydicom.Dataset, path, frames: np.ndarray | None = None):
    if frames is not None:
        ds.PixelData = pydicom.pixels.pack_bits(frames) if ds.BitsAllocated == 1 else frames.tobytes()
        ds.NumberOfFrames = len(frames)
    ds.save_as(str(path))
    return path


def test_liver_seg_equals_its_nrrd(ct):
    image, files, folder = ct
    (liver,) = read_seg(folder / "liver.dcm", image).values()
    assert io.grid_mismatch(liver, image) is None
    truth = _label_map(folder / "liver_seg.nrrd", 1, image)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(liver) > 0, truth)
    reader = SegReader(folder / "liver.dcm", image)
    (segment,) = reader.segments
    assert (segment.label, segment.property_type.value, segment.property_type.scheme_designator) == \
        ("Liver", "T-62000", "SRT")


@pytest.mark.parametrize("variant", ["reversed frames", "per-frame groups", "shared segment identification",
                                     "fractional", "labelmap", "positions only via source images"])
def test_liver_seg_variants_read_the_same(ct, tmp_path, variant):
    image, files, folder = ct
    truth = _label_map(folder / "liver_seg.nrrd", 1, image)
    ds = pydicom.dcmread(str(folder / "liver.dcm"))
    frames = ds.pixel_array.copy()
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    shared = ds.SharedFunctionalGroupsSequence[0]
    reference_files = None
    if variant == "reversed frames":
        ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(groups[::-1])
        frames = frames[::-1].copy()
    elif variant == "per-frame groups":  # orientation and spacing moved from the shared group into every frame
        for item in groups:
            item.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
            item.PixelMeasuresSequence = copy.deepcopy(shared.PixelMeasuresSequence)
        del shared.PlaneOrientationSequence, shared.PixelMeasuresSequence
    elif variant == "shared segment identification":  # one segment: identified once, in the shared group
        shared.SegmentIdentificationSequence = groups[0].SegmentIdentificationSequence
        for item in groups:
            del item.SegmentIdentificationSequence
    elif variant == "fractional":  # 8-bit probabilities: 128/255 is inside (>= 0.5), 127/255 is not
        ds.SegmentationType, ds.SegmentationFractionalType, ds.MaximumFractionalValue = "FRACTIONAL", "PROBABILITY", 255
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        fractional = np.where(frames > 0, 128, 127).astype(np.uint8)
        fractional[:, :5, :] = 0
        frames = fractional
        truth = truth.copy()
        truth[:, :5, :] = False
    elif variant == "labelmap":  # pixel values are segment numbers (DICOM 2023: SegmentationType LABELMAP)
        ds.SegmentationType = "LABELMAP"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        frames = frames.astype(np.uint8)
    elif variant == "positions only via source images":
        for item in groups:
            del item.PlanePositionSequence
        reference_files = files
    path = _rewrite(ds, tmp_path / "variant.dcm", frames)
    (mask,) = read_seg(path, image, reference_files).values()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(mask) > 0, truth)
    if variant == "positions only via source images":
        with pytest.raises(ImageReadError, match="no plane position and no source image .*no CT files given"):
            read_seg(path, image)


def test_partial_overlaps_match_highdicoms_own_decoding(ct):
    """Five overlapping segments (dcmqi's test of overlaps): each placed where highdicom puts it by source image."""
    image, files, folder = ct
    path = folder / "partial_overlaps.dcm"
    reader = SegReader(path, image)
    assert [s.label for s in reader.segments] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert reader.segments[3].property_type.meaning == "Edema"
    uids = [pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID for f in files]
    expected = hd.seg.segread(str(path)).get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2, 3, 4, 5], combine_segments=False,
        ignore_spatial_locations=True)  # dcmqi does not state that spatial locations are preserved
    ours = {s.number: reader.mask([s.number]) for s in reader.segments}
    for number, mask in ours.items():
        np.testing.assert_array_equal(mask, expected[..., number - 1] > 0, err_msg=f"segment {number}")
        assert mask.any()
    assert (ours[1] & ours[2]).sum() == 3017 and (ours[1] & ours[3]).any()  # they do overlap
    merged = read_seg(path, image)
    assert set(merged) == {"GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"}


def test_liver_and_spine_label_map_through_a_seg(ct, tmp_path):
    """The two-label map (liver 1, spine 2) written as a two-segment SEG on the real CT and read back exactly."""
    image, files, folder = ct
    masks = {}
    for name, value in (("Liver", 1), ("L1 vertebra", 2)):
        mask = sitk.GetImageFromArray(_label_map(folder / "liver_spine_seg.nrrd", value, image).astype(np.uint8))
        mask.CopyInformation(image)
        masks[name] = mask
    spine_only = _label_map(folder / "spine_seg.nrrd", 2, image)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(masks["L1 vertebra"]) > 0, spine_only)
    back = read_seg(write_seg(masks, files, tmp_path / "seg.dcm"), image)
    for name, mask in masks.items():
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back[name]), sitk.GetArrayViewFromImage(mask))
