"""DICOM cohort segments by meaning, and overlaps by rule (issue 13 parts 2-4): label text variants, SNOMED CT codes,
mapping.json by number or label; a lesion inside a vertebra kept in both maps; two vertebrae overlapping split by the
nearer centroid, or the case skipped when the overlap is large; unmapped segments listed; a third-party-style SEG and
a gantry-tilted series converted end to end, every rule in the case notes."""
from __future__ import annotations

import json
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from vertebraformer_nn.dataset_conversion import convert_source
from vertebraformer_nn.dataset_conversion.common import CaseSkipped, ConversionError
from vertebraformer_nn.dataset_conversion.dicom_segments import (MAX_OVERLAP_FRACTION, SegmentRules, label_maps,
                                                                  vertebra_of_text)
from vertebraformer_nn.dicom_annotations.seg_read import SegSegment
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

L1, L2, T12 = 20, 21, 19


@pytest.mark.parametrize("text, code", [
    ("L1 vertebra", L1), ("Vertebra L1", L1), ("vertebrae_L1", L1), ("L1", L1), ("l1_Vertebra", L1),
    ("Th12", T12), ("T12 Vertebra", T12), ("lumbar vertebra 1", L1), ("T13", 28), ("L6 vertebra", 25),
    ("L1 vertebral body", None), ("L1 lesion", None), ("Liver", None), ("L7", None), ("C8 vertebra", None),
    ("Spinal cord", None),
])
def test_vertebra_names_in_label_text(text, code):
    assert vertebra_of_text(text) == code


def _segment(number, label, property_type=None, regions=()):
    return SegSegment(number=number, label=label, property_type=property_type, anatomic_regions=tuple(regions))


def test_meaning_by_mapping_code_and_label():
    rules = SegmentRules({"segments": {"7": "L2", "Spinal cord": "ignore", "blob": "lesion"}}, "mapping.json")
    cases = {
        _segment(1, "Segment_1", codes.SCT.L1Vertebra): ("vertebra", L1),  # the code alone
        _segment(2, "Segment_2", Code("T-11910", "SRT", "L1 vertebra")): ("vertebra", L1),  # legacy SNOMED-RT
        _segment(3, "Segment_3", codes.SCT.Vertebra, [codes.SCT.T12Vertebra]): ("vertebra", T12),  # type + region
        _segment(4, "L1 vertebra", codes.SCT.L1Vertebra): ("vertebra", L1),  # label and code agree
        _segment(5, "Segment_5", codes.SCT.NeoplasmMetastatic): ("lesion", None),
        _segment(6, "Lytic lesion T12"): ("lesion", None),  # a lesion pattern
        _segment(7, "whatever"): ("vertebra", L2),  # mapping.json by number
        _segment(8, "SPINAL CORD", codes.SCT.SpinalCord): ("ignore", None),  # by label, case-insensitive
        _segment(9, "Blob"): ("lesion", None),
        _segment(10, "Kidney", codes.SCT.Kidney): ("unmapped", None),
    }
    for segment, (kind, code) in cases.items():
        meaning = rules.classify(segment)
        assert (meaning.kind, meaning.code) == (kind, code), segment
    per_case = SegmentRules.explicit({"10": "lesion"}, "case")
    assert rules.classify(_segment(10, "Kidney"), per_case).kind == "lesion"  # the case's own entry wins
    with pytest.raises(CaseSkipped, match="labelled L1 but coded L2"):
        rules.classify(_segment(11, "L1 vertebra", codes.SCT.L2Vertebra))
    with pytest.raises(ConversionError, match="'L9' is neither a vertebra name"):
        SegmentRules({"segments": {"3": "L9"}}, "mapping.json")


def _blocks(shape=(30, 20, 20)):
    """Two vertebrae stacked along z (L1 above L2 in array order) and a lesion inside L1."""
    l1, l2, lesion = (np.zeros(shape, bool) for _ in range(3))
    l1[2:14, 5:15, 5:15] = True
    l2[14:26, 5:15, 5:15] = True
    lesion[6:9, 8:11, 8:11] = True
    return l1, l2, lesion


def _run(masks: dict, rules=None, segments=None):
    segments = segments or [_segment(n, label) for n, label in enumerate(masks, start=1)]
    by_number = {s.number: masks[s.label] for s in segments}
    notes = []

    def mask_of(numbers):
        out = np.zeros(next(iter(masks.values())).shape, bool)
        for n in numbers:
            out |= by_number[n]
        return out
    vert, lesion = label_maps(segments, mask_of, (2.0, 1.0, 1.0), rules or SegmentRules({}, "m"), {}, notes)
    return vert, lesion, notes


def test_lesion_inside_a_vertebra_is_kept_in_both_maps():
    l1, l2, lesion = _blocks()
    vert, les, notes = _run({"L1 vertebra": l1, "L2 vertebra": l2, "Lesion lytic": lesion, "Kidney": lesion})
    assert (vert[l1] == L1).all() and (vert[l2] == L2).all() and not vert[~(l1 | l2)].any()
    np.testing.assert_array_equal(les.astype(bool), lesion)
    assert any("not mapped" in n and "'Kidney'" in n for n in notes)


def test_overlapping_vertebrae_are_split_by_the_nearer_centroid():
    l1, l2, _ = _blocks()
    l1[14] = l1[13]  # L1 reaches one slice into L2: 100 voxels, 8.3 % of L2
    vert, _, notes = _run({"L1 vertebra": l1, "Vertebra L2": l2})
    assert (vert[14][l2[14]] == L2).all()  # the shared slice is nearer L2's centroid (slice 19.5) than L1's (8.0)
    (note,) = [n for n in notes if "overlap" in n]
    assert "L1 and L2 overlap in 100 voxels (8.33 % of the smaller)" in note and "nearer centroid" in note
    # The same vertebra drawn twice is merged, not a conflict.
    vert, _, notes = _run({"L1 vertebra": l1, "Vertebra L1": l1 | l2})
    assert set(np.unique(vert)) == {0, L1} and any("are all L1: merged" in n for n in notes)


def test_a_large_vertebra_overlap_skips_the_case():
    l1, l2, _ = _blocks()
    assert MAX_OVERLAP_FRACTION == 0.10
    with pytest.raises(CaseSkipped, match=r"L1 and L2 overlap in 600 voxels \(50.0 % .*mapping.json segments"):
        _run({"L1 vertebra": l1, "L2 vertebra": l2 | np.roll(l1, 6, axis=0)})


# ------------------------------------------------------------------------------------------------ end to end
def _third_party_seg(files, masks: dict, path: Path):
    """A SEG as another tool writes it: labels 'Segment_<n>', meaning only in the SNOMED CT codes."""
    datasets = sorted((pydicom.dcmread(str(f)) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    algorithm = hd.AlgorithmIdentificationSequence(name="other", version="1",
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, (concept, category) in enumerate(masks, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=f"Segment_{number}", segmented_property_category=category,
            segmented_property_type=concept, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    pixels = np.stack(list(masks.values()), axis=-1)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="other", manufacturer_model_name="x",
        software_versions="1", device_serial_number="1")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))


def test_third_party_seg_converts_with_every_rule_noted(tmp_path, nnunet_dirs):
    root = tmp_path / "cohort"
    shape = (30, 20, 20)
    ct = np.full(shape, -900, np.int16)
    l1, l2, lesion = _blocks(shape)
    l1[14] = l1[13]  # 100 voxels of overlap with L2
    ct[l1 | l2] = 500
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing((1.0, 1.0, 2.0))
    files = write_dicom_series(image, root / "pat1/study/ct", patient_id="PAT1")
    masks = {(codes.SCT.L1Vertebra, codes.SCT.AnatomicalStructure): l1,
             (codes.SCT.L2Vertebra, codes.SCT.AnatomicalStructure): l2,
             (codes.SCT.NeoplasmMetastatic, codes.SCT.MorphologicallyAbnormalStructure): lesion,
             (codes.SCT.SpinalCord, codes.SCT.AnatomicalStructure): lesion}
    _third_party_seg(files, masks, root / "pat1/seg/seg.dcm")
    (root / "mapping.json").write_text(json.dumps({"cases": [
        {"case": "pat1", "study": "pat1/study", "segmentation": "pat1/seg/seg.dcm"}]}))
    report = convert_source("dicom", root, 501)
    (rec,) = report.converted
    notes = " | ".join(rec.notes)
    assert "L1 and L2 overlap in 100 voxels" in notes and "nearer centroid" in notes
    assert "not mapped" in notes and "Spinal cord" in notes
    assert rec.codes == [L1, L2] and rec.annotations["lesion_mask"]
    raw = nnunet_dirs / "nnUNet_raw" / "Dataset501_MultiSpine"
    converted_lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "lesionsTr/dicom_pat1.nii.gz")))
    assert converted_lesion.sum() == lesion.sum()


def test_tilted_series_is_repaired_with_a_note_in_the_conversion(tmp_path, nnunet_dirs):
    root = tmp_path / "cohort"
    shape = (30, 20, 20)
    label = np.zeros(shape, np.uint8)
    l1, l2, _ = _blocks(shape)
    label[l1], label[l2] = L1, L2
    ct = np.where(label > 0, 500, -900).astype(np.int16)
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing((1.0, 1.0, 2.0))
    files = write_dicom_series(image, root / "pat1/study/ct", patient_id="PAT1")
    shear = 2.0 * math.tan(math.radians(10))
    for f in files:
        ds = pydicom.dcmread(str(f))
        z = float(ds.ImagePositionPatient[2])
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], f"{z / 2.0 * shear:.6f}", ds.ImagePositionPatient[2]]
        ds.save_as(str(f))
    (root / "pat1/labels").mkdir(parents=True)
    regular = sitk.GetImageFromArray(label)
    regular.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(regular, str(root / "pat1/labels/vert.nii.gz"))
    (root / "mapping.json").write_text(json.dumps({"cases": [
        {"case": "pat1", "study": "pat1/study", "vertebrae": "pat1/labels/vert.nii.gz"}]}))
    (rec,) = convert_source("dicom", root, 501).converted
    assert any("gantry tilt of 10.00 degrees" in n for n in rec.notes)
