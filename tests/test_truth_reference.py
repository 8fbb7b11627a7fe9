"""``demo.reference.truth_reference`` for the benchmark: cases of several sources, named and gridded like the
nnU-Net raw dataset's cases (one phantom each of a NIfTI source and the DICOM source, converted for real)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.centroids import read_verse_ctd
from vertebraformer_nn.demo.reference import truth_reference
from vertebraformer_nn.evaluation.references import IGNORE_VALUE
from vertebraformer_nn.image_io import grid_mismatch, orientation, read_label, reorient

SOURCES = ["verse", "dicom"]  # the DICOM series is the case most likely to land on another grid


@pytest.fixture
def sim_and_raw(tmp_path, nnunet_dirs):
    from vertebraformer_nn.dataset_conversion import convert_source
    from vertebraformer_nn.phantoms import generate

    sim = tmp_path / "sim"
    generate(sim, cases_per_source=1, sources=SOURCES, progress=False)
    for i, source in enumerate(SOURCES):
        convert_source(source, sim / source, 598, append=i > 0)
    (raw,) = (nnunet_dirs / "nnUNet_raw").glob("Dataset598_*")
    return sim, raw


def test_reference_named_and_gridded_like_the_raw_dataset(sim_and_raw, tmp_path):
    sim, raw = sim_and_raw
    out = tmp_path / "ref"
    assert truth_reference(sim, SOURCES, out, name="case", orientation="RAS") == 2
    cases = json.loads((sim / "ground_truth" / "index.json").read_text())["cases"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{c['case']}{suffix}" for c in cases for suffix in (".nii.gz", "_lesion.nii.gz", "_ctd.json"))
    for case in cases:
        image = sitk.ReadImage(str(raw / "imagesTr" / f"{case['case']}_0000.nii.gz"))
        ref = sitk.ReadImage(str(out / f"{case['case']}.nii.gz"))
        lesion = sitk.ReadImage(str(out / f"{case['case']}_lesion.nii.gz"))
        assert orientation(ref) == "RAS"
        assert grid_mismatch(ref, image) is None and grid_mismatch(lesion, image) is None, case["case"]
        # the cut vertebrae are the evaluation's ignore region; both sources annotate every whole vertebra, so
        # elsewhere the converted labels are the reference (the converters mark cut vertebrae with the training
        # ignore label, or background in versions before it; VerSe's policy may ignore a slab beyond them)
        ref_codes = sitk.GetArrayFromImage(ref)
        truth = sitk.GetArrayFromImage(reorient(read_label(sim / case["truth"]["vertebrae"]), "RAS"))
        cut = ref_codes == IGNORE_VALUE
        assert np.array_equal(cut, np.isin(truth, case["partial"]))
        converted = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / f"{case['case']}.nii.gz")))
        assert np.isin(converted[cut], [0, labels.IGNORE_LABEL]).all()
        compared = ~cut & (converted != labels.IGNORE_LABEL)
        np.testing.assert_array_equal(labels.verse_to_training(np.where(cut, 0, ref_codes))[compared],
                                      converted[compared])
        kept = sorted(set(case["levels"]) - set(case["partial"]))
        centroids = read_verse_ctd(out / f"{case['case']}_ctd.json", ref)
        assert sorted(centroids) == kept
        for code in kept:  # world positions survive the reorientation (file: voxel indices of the RAS map)
            np.testing.assert_allclose(centroids[code], case["centroids_mm"][str(code)], atol=0.05)
        truth_lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(sim / case["truth"]["lesions"])))
        assert np.array_equal(np.unique(sitk.GetArrayFromImage(lesion)), np.unique(truth_lesion))
        assert (sitk.GetArrayFromImage(lesion) > 0).sum() == (truth_lesion > 0).sum()
    assert any(c["partial"] for c in cases)  # the ignore region was checked on at least one case


def test_reference_options_are_checked(sim_and_raw, tmp_path):
    sim, _ = sim_and_raw
    with pytest.raises(ValueError, match="name must be one of"):
        truth_reference(sim, SOURCES, tmp_path / "ref", name="file")
    with pytest.raises(FileNotFoundError, match="no case of source 'spineweb'"):
        truth_reference(sim, ["verse", "spineweb"], tmp_path / "ref")
    assert truth_reference(sim, "dicom", tmp_path / "ref") == 1  # one source by name, image naming, own grid
    (case,) = [c for c in json.loads((sim / "ground_truth" / "index.json").read_text())["cases"]
               if c["source"] == "dicom"]
    series = case["image"].rsplit("/", 1)[-1]  # e.g. series2_bone_2.0mm: a folder name with a dot
    assert "." in series
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == [f"{series}.nii.gz", f"{series}_ctd.json",
                                                                     f"{series}_lesion.nii.gz"]
