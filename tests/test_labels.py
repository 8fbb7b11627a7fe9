import numpy as np
import pytest

from vertebraformer_nn import labels as L


def test_verse_codes_and_names():
    assert [L.code(n) for n in ("C1", "C7", "T1", "T12", "L1", "L5", "L6", "S", "Co", "T13")] == [1, 7, 8, 19, 20, 24, 25, 26, 27, 28]
    assert L.name(28) == "T13" and L.name(25) == "L6" and L.name(19) == "T12"
    with pytest.raises(KeyError, match="29"):
        L.name(29)
    with pytest.raises(KeyError, match="T14"):
        L.code("T14")


def test_regions():
    assert L.region(1) == "cervical" and L.region(28) == "thoracic" and L.region(25) == "lumbar"
    assert L.region(26) == "sacral" and L.region(27) == "coccygeal"


def test_anatomical_order_places_transitional_vertebrae():
    order = L.ANATOMICAL_ORDER
    assert order.index("T13") == order.index("T12") + 1 == order.index("L1") - 1
    assert order[-1] == "L6" and order[-2] == "L5" and order[0] == "C1"
    assert len(order) == 26 and "S" not in order
    assert L.sort_anatomically([20, 28, 19, 25, 1]) == [1, 19, 28, 20, 25]


def test_training_vocabulary_is_consecutive_and_complete():
    js = L.dataset_json_labels()
    assert js["background"] == 0
    assert sorted(js.values()) == list(range(28))
    assert js["T13"] == js["T12"] + 1 and js["L1"] == js["T13"] + 1 and js["L6"] == 26
    # nnU-Net's ignore label: the highest value, the last entry, no structure
    assert list(js.items())[-1] == ("ignore", L.IGNORE_LABEL) and L.IGNORE_LABEL == 27
    codes = L.dataset_json_verse_codes()
    assert str(L.IGNORE_LABEL) not in codes  # 27 is VerSe's coccyx: the ignore label must not read as one
    # every training label maps to the VerSe code of the same name
    assert all(codes[str(v)] == (0 if k == "background" else L.code(k)) for k, v in js.items() if k != "ignore")
    with pytest.raises(ValueError, match="ignore label 27 has no VerSe code"):
        L.training_to_verse(np.array([0, 1, L.IGNORE_LABEL]))


def test_nnunet_label_manager_reads_the_vocabulary():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    lm = LabelManager(L.dataset_json_labels(), regions_class_order=None)
    assert lm.has_ignore_label and lm.ignore_label == L.IGNORE_LABEL
    assert lm.num_segmentation_heads == L.NUM_TRAINING_LABELS == 27  # no network channel for the ignore label
    assert L.IGNORE_LABEL not in lm.foreground_labels  # never sampled as a class


def test_label_map_round_trip_keeps_transitional_codes():
    verse = np.array([[0, 1, 19, 28], [20, 24, 25, 7]])
    training = L.verse_to_training(verse)
    assert training.dtype == np.uint8
    assert training[0, 3] == L.dataset_json_labels()["T13"]
    np.testing.assert_array_equal(L.training_to_verse(training), verse)


def test_unknown_codes_are_named():
    with pytest.raises(ValueError, match=r"\[26, 40\]"):
        L.verse_to_training(np.array([0, 26, 40]))
    with pytest.raises(ValueError, match="27"):
        L.training_to_verse(np.array([27]))


def test_totalsegmentator_translation_reverses_numbering():
    ts = np.array([50, 44, 43, 32, 31, 27, 26, 25, 5, 0])
    verse = L.translate(ts, L.TOTALSEG_TO_VERSE)
    np.testing.assert_array_equal(verse, [1, 7, 8, 19, 20, 24, 26, 26, 0, 0])
    assert L.translate(ts, L.TOTALSEG_TO_VERSE, keep_unmapped=True)[-2] == 5


def test_totalsegmentator_real_prediction_matches_derived_verse_file(real_data):
    """The real TotalSegmentator prediction translates to the VerSe-coded file derived from it (S1 dropped)."""
    import SimpleITK as sitk

    ts = sitk.GetArrayFromImage(sitk.ReadImage(str(real_data / "totalsegmentator/spine_report/totalseg.nii.gz")))
    derived = sitk.GetArrayFromImage(sitk.ReadImage(
        str(real_data / "derived/example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz")))
    ours = L.translate(ts, {k: v for k, v in L.TOTALSEG_TO_VERSE.items() if v in L.VERTEBRA_CODES})
    np.testing.assert_array_equal(ours, derived)
    assert set(np.unique(ours)) == {0, 18, 19, 20, 21, 22, 23, 24}
