"""Coded meanings of vertebrae and lesions in DICOM annotations (SNOMED CT, as pydicom's code dictionary has them).

One table between the project's VerSe codes and DICOM's coded concepts, for reading third-party SEGs by meaning
and for writing SEGs that viewers understand. SNOMED CT has a concept for each of C1-L5; the transitional T13 and
L6 have none, so they are written as the generic "Vertebra" with their name in the label. Legacy SNOMED-RT codes
("SRT", as dcmqi wrote them) compare equal to their SNOMED CT twins (pydicom's ``Code`` does the mapping).
"""
from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .. import labels

__all__ = ["VERTEBRA", "GENERIC_VERTEBRA", "LESION_TYPES", "ANATOMICAL_STRUCTURE", "ABNORMAL_STRUCTURE",
           "vertebra_of", "is_lesion_code", "vertebra_concept"]

#: VerSe code -> SNOMED CT concept of that vertebra (C1-L5).
VERTEBRA: dict[int, Code] = {
    labels.code(name): getattr(codes.SCT, f"{name}Vertebra")
    for name in [*labels.CERVICAL, *labels.THORACIC, *labels.LUMBAR]
}
GENERIC_VERTEBRA = codes.SCT.Vertebra  # 51282000, also "Bone structure of spine"
#: Segment types that make a segment a lesion (neoplasm, metastasis, tumour, lesion).
LESION_TYPES: tuple[Code, ...] = (codes.SCT.Lesion, codes.SCT.Neoplasm, codes.SCT.NeoplasmMetastatic,
                                  codes.SCT.Metastasis, codes.SCT.BonyMetastasis, codes.SCT.NeoplasmPrimary,
                                  codes.SCT.MalignantNeoplasmPrimary)
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure


def vertebra_of(code: Code | None) -> int | None:
    """The VerSe code of a vertebra concept (SCT or its SRT twin), else None."""
    if code is None:
        return None
    return next((verse for verse, concept in VERTEBRA.items() if concept == code), None)


def is_lesion_code(code: Code | None) -> bool:
    return code is not None and any(code == lesion for lesion in LESION_TYPES)


def vertebra_concept(verse_code: int) -> Code:
    """The concept to write for a vertebra: its own, or the generic vertebra for T13 and L6."""
    return VERTEBRA.get(verse_code, GENERIC_VERTEBRA)
