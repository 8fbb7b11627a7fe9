"""Per-case facts the trainer needs at every step, looked up through a batch's ``keys`` (case identifiers).

The facts are read by :mod:`vertebraformer_nn.case_facts` (dataset.json's ``case_info``, and for cases missing
there, what the preprocessor recorded in their properties); domain indices count in the model's domains, the
plans' (``plans_facts.domains``), so a dataset of 2 or 6 sources trains like MultiSpine's 4.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Sequence, Tuple

import numpy as np
import torch

from vertebraformer_nn.case_facts import CaseFacts, from_properties, read_case_info

#: the facts of a case nobody knows anything about: no lesion annotation, unknown domain
UNKNOWN_CASE = CaseFacts()


class CaseTable:
    """{case identifier: CaseFacts} and the model's domains. Unknown cases get "no lesion annotation, unknown domain"
    (their lesion and domain losses are multiplied by zero) and are collected in :attr:`missing_seen`."""

    def __init__(self, facts: Mapping[str, CaseFacts], domains: Sequence[str]):
        self.facts: Dict[str, CaseFacts] = dict(facts)
        self.domains = tuple(domains)
        self.missing_seen: set = set()

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping, domains: Sequence[str]) -> "CaseTable":
        return cls(read_case_info(dataset_json), domains)

    def add_from_properties(self, case: str, properties: Mapping) -> bool:
        """Take a case's facts from its preprocessed properties unless case_info had them; False when neither
        knows the case."""
        if case in self.facts:
            return True
        facts = from_properties(properties)
        if facts is not None:
            self.facts[case] = facts
        return facts is not None

    def lookup(self, keys: Iterable) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lesion weight (B,) float, domain index (B,) int, domain weight (B,) float) for a batch's keys."""
        lesion_w, dom, dom_w = [], [], []
        for key in map(str, keys):
            facts = self.facts.get(key)
            if facts is None:
                self.missing_seen.add(key)
                facts = UNKNOWN_CASE
            index = facts.domain_index(self.domains)
            lesion_w.append(1.0 if facts.lesion_annotated else 0.0)
            dom.append(max(index, 0))  # an unknown domain's target is any valid index, weighted 0
            dom_w.append(1.0 if index >= 0 else 0.0)
        return (np.asarray(lesion_w, dtype=np.float32), np.asarray(dom, dtype=np.int64),
                np.asarray(dom_w, dtype=np.float32))

    def tensors(self, keys: Iterable, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lw, d, dw = self.lookup(keys)
        return (torch.from_numpy(lw).to(device), torch.from_numpy(d).to(device), torch.from_numpy(dw).to(device))
