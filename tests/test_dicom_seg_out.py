"""``predict --dicom-seg`` (issue 12 part 6): ``<case>_seg.dcm`` written from a case's outputs on the real 141-slice
Philips chest series (``itkelastix_chest_dicom``): a coded segment per vertebra and one for lesions, referencing every
source instance, read back voxel for voxel, within a bounded memory, and valid for dciodvfy (dicom3tools) where it is
installed. The whole command on the real Siemens series is in test_predict.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import tracemalloc

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn import labels
from vertebraformer_nn.dicom_annotations import read_seg
from vertebraformer_nn.dicom_annotations.prediction_seg import seg_pending, write_case_seg

CHEST = "itkelastix_chest_dicom"
T1, T12 = 8, 19


def dciodvfy_errors(path) -> list[str]:
    """dicom3tools' validator: its "Error" lines (warnings are not failures)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=300)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def read_back(seg_path, image) -> tuple[np.ndarray, np.ndarray]:
    """(VerSe-coded vertebra map, lesion mask) from a written SEG, on ``image``'s grid."""
    segments = read_seg(seg_path, image)
    vertebrae = np.zeros(image.GetSize()[::-1], np.uint8)
    for label, mask in segments.items():
        if label != "Lesion":
            vertebrae[sitk.GetArrayViewFromImage(mask) > 0] = labels.code(label.split()[0])
    lesion = segments.get("Lesion")
    return vertebrae, (sitk.GetArrayFromImage(lesion) > 0) if lesion is not None else np.zeros_like(vertebrae, bool)


@pytest.fixture(scope="module")
def chest_case(real_data, tmp_path_factory):
    """A case's outputs on the chest series' grid: bone above 250 HU cut into T1..T12 slabs, lesions above 900 HU."""
    folder = real_data / CHEST
    image = io.read_image(folder)
    hu = sitk.GetArrayFromImage(image)
    vertebrae = np.zeros(hu.shape, np.uint8)
    z = np.arange(hu.shape[0])[:, None, None]
    for i, code in enumerate(range(T1, T12 + 1)):
        vertebrae[(hu > 250) & (z >= 12 * i) & (z < 12 * (i + 1))] = code
    lesions = (hu > 900).astype(np.uint16) * 300  # instance ids, as <case>_lesion.nii.gz holds them (may pass 255)
    out = tmp_path_factory.mktemp("chest")
    for name, array in (("chest.nii.gz", vertebrae), ("chest_lesion.nii.gz", lesions)):
        written = sitk.GetImageFromArray(array)
        written.CopyInformation(image)
        io.write_image(written, out / name)
    report = {"case": "chest", "files": {"labels": "chest.nii.gz", "lesions": "chest_lesion.nii.gz"}, "notes": []}
    (out / "chest.json").write_text(json.dumps(report))
    tracemalloc.start()
    written = write_case_seg(out, report, folder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return folder, image, out, vertebrae, lesions, written, peak


def test_seg_reads_back_voxel_for_voxel(chest_case):
    folder, image, out, vertebrae, lesions, report, _ = chest_case
    assert report["files"]["dicom_seg"] == "chest_seg.dcm" and not seg_pending(report)
    assert json.loads((out / "chest.json").read_text()) == report  # the report on disk names the SEG
    got_vertebrae, got_lesions = read_back(out / "chest_seg.dcm", image)
    np.testing.assert_array_equal(got_vertebrae, vertebrae)
    np.testing.assert_array_equal(got_lesions, lesions > 0)


def test_seg_is_coded_and_references_the_source(chest_case):
    folder, image, out, vertebrae, lesions, report, _ = chest_case
    ds = pydicom.dcmread(str(out / "chest_seg.dcm"))
    assert ds.SegmentationType == "BINARY" and ds.SegmentsOverlap == "YES"  # lesions lie inside vertebrae
    described = [(s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in ds.SegmentSequence]
    assert described[0] == ("T1 vertebra", "64864005") and described[11] == ("T12 vertebra", "23215003")
    assert described[-1] == ("Lesion", "52988006") and len(described) == 13
    assert ds.SegmentSequence[-1].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == \
        "Morphologically Abnormal Structure"
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in sorted(folder.iterdir())]
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == {s.SOPInstanceUID
                                                                                       for s in sources}
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    frame_sources = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                     for f in ds.PerFrameFunctionalGroupsSequence}
    assert frame_sources <= {s.SOPInstanceUID for s in sources}


def test_seg_memory_is_bounded(chest_case):
    """Two label maps of a byte per voxel, highdicom's conversion of one into frames (about 3 bytes per voxel at its
    peak) and the packed frames: 4.9 bytes per voxel measured, not frames x rows x cols x 13 segments as booleans
    (13 bytes per voxel, what highdicom's stacked input would need; 25 for a whole spine)."""
    *_, peak = chest_case
    voxels = 141 * 512 * 512
    assert peak / voxels < 6.0, f"{peak / voxels:.2f} bytes per voxel"  # measured 4.9


def test_seg_passes_dciodvfy(chest_case):
    out = chest_case[2]
    assert dciodvfy_errors(out / "chest_seg.dcm") == []


def test_no_seg_for_an_empty_prediction_or_a_resampled_series(chest_case, tmp_path):
    folder, image, *_ = chest_case
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    io.write_image(empty, tmp_path / "none.nii.gz")
    report = write_case_seg(tmp_path, {"case": "none", "files": {"labels": "none.nii.gz"}, "notes": []}, folder)
    assert report["notes"] == ["no DICOM SEG: no vertebra and no lesion found"] and not seg_pending(report)
    assert not (tmp_path / "none_seg.dcm").exists()
