"""The one reader of per-case facts (vertebraformer_nn/case_facts.py): dataset.json's case_info, the properties the
preprocessor records, and the round trip between them that the trainer relies on for cases case_info lacks."""
from vertebraformer_nn import case_facts as CF
from vertebraformer_nn.sources import UNKNOWN_DOMAIN

DATASET = {"case_info": {
    "dicom_a": {"domain": "dicom", "annotations": {"vertebra_mask": True, "lesion_mask": True}},
    "verse_b": {"domain": "verse", "annotations": {"vertebra_mask": True, "lesion_mask": False, "centroids": True}},
    "odd_c": {"domain": "elsewhere"},
}}


def test_case_info_is_read_once_for_every_case():
    facts = CF.read_case_info(DATASET)
    assert set(facts) == set(DATASET["case_info"])
    assert facts["dicom_a"].lesion_annotated and not facts["verse_b"].lesion_annotated
    assert facts["verse_b"].annotations["centroids"] is True
    assert facts["dicom_a"].domain_index() == 3 and facts["dicom_a"].domain_index(("dicom", "verse")) == 0
    assert facts["odd_c"].domain_index() == UNKNOWN_DOMAIN and not facts["odd_c"].lesion_annotated
    assert CF.read_case_info({}) == {}


def test_a_case_without_case_info_has_a_lesion_annotation_iff_its_file_exists():
    assert CF.facts_for_case("new", DATASET, lesion_file_exists=True).lesion_annotated
    assert not CF.facts_for_case("new", {}, lesion_file_exists=False).lesion_annotated
    assert CF.facts_for_case("new", {}, True).domain is None
    # case_info wins over the file system
    assert not CF.facts_for_case("verse_b", DATASET, lesion_file_exists=True).lesion_annotated


def test_properties_round_trip():
    for case in DATASET["case_info"]:
        facts = CF.read_case_info(DATASET)[case]
        props = CF.to_properties(facts, ("verse", "dicom"))
        assert props[CF.DOMAIN_INDEX_KEY] == facts.domain_index(("verse", "dicom"))
        back = CF.from_properties(props)
        assert back.domain == facts.domain and back.lesion_annotated == facts.lesion_annotated
    assert CF.from_properties({"spacing": [1, 1, 1]}) is None  # nothing recorded
    assert CF.from_properties({CF.HAS_LESION_KEY: True}).lesion_annotated  # the flag alone suffices
