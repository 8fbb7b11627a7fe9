"""Per-case facts of a dataset, read in one place: which source (domain) a case comes from and which annotations
it has.

The converters write them into ``dataset.json`` under ``case_info[case]`` (``domain``; ``annotations``, e.g.
``vertebra_mask``, ``lesion_mask``, ``centroids``); nnU-Net copies that file to the preprocessed and model folders.
The preprocessor records the same facts in each case's properties (``.pkl``, :func:`to_properties`), so that a
dataset without ``case_info`` (a stock nnU-Net dataset with a ``lesionsTr`` folder) still says which cases carry a
lesion annotation; the trainer reads ``case_info`` first and the properties for cases missing there.

Why not the label arrays: nnU-Net's loader pads label channels with -1 and its augmentation turns -1 into 0, so no
value in a lesion channel could mean "this case has no lesion annotation".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

from .sources import SOURCES, domain_index

#: flag of a lesion mask in ``case_info[case]["annotations"]``
LESION_MASK = "lesion_mask"
#: keys of the facts in a preprocessed case's properties
HAS_LESION_KEY = "has_lesion_annotation"
DOMAIN_KEY = "domain"
DOMAIN_INDEX_KEY = "domain_index"
ANNOTATIONS_KEY = "annotations"


@dataclass(frozen=True)
class CaseFacts:
    """What is known about one case: its source (None when unknown), which annotations it has, and (for the
    evaluation) its subject and the vertebral-body centroids the converters recorded ({VerSe code: LPS mm})."""

    domain: Optional[str] = None
    annotations: Mapping[str, bool] = field(default_factory=dict)
    subject: Optional[str] = None
    centroids_mm: Mapping[str, Sequence[float]] = field(default_factory=dict)

    @property
    def lesion_annotated(self) -> bool:
        return bool(self.annotations.get(LESION_MASK, False))

    def domain_index(self, domains: Sequence[str] = SOURCES) -> int:
        """Index of the case's domain in ``domains`` (a model's domains), ``sources.UNKNOWN_DOMAIN`` if absent."""
        return domain_index(self.domain, domains)


def from_case_info(info: Mapping) -> CaseFacts:
    """The facts of one ``case_info`` entry."""
    return CaseFacts(domain=info.get("domain"), annotations=dict(info.get("annotations") or {}),
                     subject=info.get("subject"), centroids_mm=info.get("centroids_mm") or {})


def read_case_info(dataset_json: Mapping) -> Dict[str, CaseFacts]:
    """{case: facts} of every case that ``dataset.json``'s ``case_info`` lists."""
    return {case: from_case_info(info) for case, info in (dataset_json.get("case_info") or {}).items()}


def facts_for_case(case: str, dataset_json: Mapping, lesion_file_exists: bool) -> CaseFacts:
    """The case's ``case_info`` facts; for a case that ``case_info`` does not list (a dataset without it): a lesion
    annotation exactly when its lesion file exists, domain unknown."""
    info = (dataset_json.get("case_info") or {}).get(case)
    if info is not None:
        return from_case_info(info)
    return CaseFacts(annotations={LESION_MASK: bool(lesion_file_exists)})


def to_properties(facts: CaseFacts, domains: Sequence[str] = SOURCES) -> dict:
    """The facts as the preprocessor records them in a case's properties (``domains``: the plans' domains)."""
    return {HAS_LESION_KEY: facts.lesion_annotated, DOMAIN_KEY: facts.domain,
            DOMAIN_INDEX_KEY: facts.domain_index(domains), ANNOTATIONS_KEY: dict(facts.annotations)}


def from_properties(properties: Mapping) -> Optional[CaseFacts]:
    """The facts :func:`to_properties` recorded in a case's properties; None when none were recorded."""
    if HAS_LESION_KEY not in properties and DOMAIN_KEY not in properties:
        return None
    annotations = dict(properties.get(ANNOTATIONS_KEY) or {})
    annotations[LESION_MASK] = bool(properties.get(HAS_LESION_KEY, annotations.get(LESION_MASK, False)))
    return CaseFacts(domain=properties.get(DOMAIN_KEY), annotations=annotations)
