"""Per-case facts the trainer needs at every step, looked up through a batch's ``keys`` (case identifiers).

The data loader pads label channels with -1 and the augmentation pipeline then turns -1 into 0, so the
label arrays cannot say "this case has no lesion annotation": that fact comes from ``dataset.json``
(``case_info[case]["annotations"]["lesion_mask"]``, ``case_info[case]["domain"]``; nnU-Net copies the file
to the preprocessed and model folders) and, for a case missing there, from the case's preprocessed
properties (``.pkl``) when the preprocessor recorded it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch

from vertebraformer_nn.sources import SOURCES, UNKNOWN_DOMAIN, domain_index

#: property keys a preprocessor may use for the same facts (first found wins)
LESION_FLAG_KEYS = ("has_lesion_annotation", "lesion_annotated", "lesion_mask_annotated", "lesion_annotation")
DOMAIN_INDEX_KEYS = ("domain_index", "domain_idx")


@dataclass(frozen=True)
class CaseFacts:
    lesion_annotated: bool
    domain_index: int  # index into SOURCES, UNKNOWN_DOMAIN if not one of them


def facts_from_case_info(info: Mapping) -> CaseFacts:
    annotations = info.get("annotations", {}) or {}
    return CaseFacts(lesion_annotated=bool(annotations.get("lesion_mask", False)),
                     domain_index=domain_index(info.get("domain")))


def facts_from_properties(props: Mapping) -> Optional[CaseFacts]:
    """The facts a preprocessor recorded in a case's properties, or None when it recorded none."""
    flag = next((props[k] for k in LESION_FLAG_KEYS if k in props), None)
    dom = next((props[k] for k in DOMAIN_INDEX_KEYS if k in props), None)
    if dom is None and isinstance(props.get("domain"), str):
        dom = domain_index(props["domain"])
    if flag is None and dom is None:
        return None
    return CaseFacts(lesion_annotated=bool(flag) if flag is not None else False,
                     domain_index=int(dom) if dom is not None else UNKNOWN_DOMAIN)


class CaseTable:
    """{case identifier: CaseFacts}. Unknown cases get "no lesion annotation, unknown domain" (their lesion and
    domain losses are multiplied by zero) and are reported once by :meth:`missing`."""

    def __init__(self, facts: Mapping[str, CaseFacts], num_domains: int = len(SOURCES)):
        self.facts: Dict[str, CaseFacts] = dict(facts)
        self.num_domains = int(num_domains)
        self.missing_seen: set = set()

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping, num_domains: int = len(SOURCES),
                          properties: Optional[Mapping[str, Mapping]] = None) -> "CaseTable":
        facts = {case: facts_from_case_info(info) for case, info in (dataset_json.get("case_info") or {}).items()}
        for case, props in (properties or {}).items():
            if case not in facts:
                f = facts_from_properties(props)
                if f is not None:
                    facts[case] = f
        return cls(facts, num_domains)

    def lookup(self, keys: Iterable) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lesion weight (B,) float, domain index (B,) int, domain weight (B,) float) for a batch's keys."""
        lesion_w, dom, dom_w = [], [], []
        for key in keys:
            key = str(key)
            f = self.facts.get(key)
            if f is None:
                self.missing_seen.add(key)
                f = CaseFacts(False, UNKNOWN_DOMAIN)
            lesion_w.append(1.0 if f.lesion_annotated else 0.0)
            ok = 0 <= f.domain_index < self.num_domains
            dom.append(f.domain_index if ok else 0)
            dom_w.append(1.0 if ok else 0.0)
        return (np.asarray(lesion_w, dtype=np.float32), np.asarray(dom, dtype=np.int64),
                np.asarray(dom_w, dtype=np.float32))

    def tensors(self, keys: Iterable, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lw, d, dw = self.lookup(keys)
        return (torch.from_numpy(lw).to(device), torch.from_numpy(d).to(device), torch.from_numpy(dw).to(device))
