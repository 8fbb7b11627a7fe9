"""The source (domain) vocabulary: the names of the MultiSpine sources, in one place.

A training case's *domain* is the source it was converted from. The converters write it per case into
``dataset.json`` (``case_info[case]["domain"]``); the planner writes the dataset's domains into the plans, and
the trainer and the network read their count and order from there, so a dataset of 2 or 6 sources plans and
trains like MultiSpine's 4.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

#: The four MultiSpine sources, in de-duplication priority order (also the order of leave-one-domain-out folds).
SOURCES: Tuple[str, ...] = ("verse", "ctspine1k", "spineweb", "dicom")
#: Domain index of a case whose domain is not one of the model's.
UNKNOWN_DOMAIN = -1


def domain_index(domain: Optional[str], domains: Sequence[str] = SOURCES) -> int:
    """Index of ``domain`` in ``domains``, :data:`UNKNOWN_DOMAIN` when it is not one of them."""
    domains = tuple(domains)
    return domains.index(domain) if domain in domains else UNKNOWN_DOMAIN
