"""``splits_final.json`` for MultiSpine: pure functions, no file access.

The file is a list, as nnU-Net reads it (``splits[fold]['train'|'val']``, case names of imagesTr):

* entries 0-4: 5-fold cross-validation **by subject**, stratified by domain (source). Stable under
  ``--append``: a subject already in an existing splits file keeps its fold; new subjects, taken in the order
  of a SHA-256 hash of the subject id (not Python's salted ``hash``), each go to the fold with the fewest
  subjects of their domain; ties go to the fold with the fewest subjects overall, then the lowest index
  (the overall count keeps small datasets from leaving folds 3 and 4 empty).
* then one leave-one-domain-out entry per domain present, in the order verse, ctspine1k, spineweb, dicom:
  ``{"train": [...], "val": [...], "held_out_domain": d}``; val = that domain's training cases; train excludes
  every case whose subject ever appeared in domain ``d`` through any source (a de-duplicated copy, a test
  case, a centroid-only case), so the held-out domain cannot leak into training. An entry whose train list
  would be empty (a single domain) is left out.

Test-split cases never appear in any entry.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from .common import SOURCES

N_FOLDS = 5


def subject_hash(subject: str) -> str:
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def folds_from_existing(splits: Optional[Sequence], case_subject: Mapping[str, str], n_folds: int = N_FOLDS) -> Dict[str, int]:
    """{subject: fold} read from the val lists of entries 0..n_folds-1 of an existing splits file.

    Case names are mapped to subjects with ``case_subject``; a subject found in several folds (a hand-edited
    file) keeps the fold holding most of its cases, ties to the lower fold."""
    votes: Dict[str, Counter] = {}
    if not isinstance(splits, (list, tuple)):
        return {}
    for fold, entry in enumerate(splits[:n_folds]):
        if not isinstance(entry, Mapping) or "held_out_domain" in entry:
            continue
        for case in entry.get("val", []) or []:
            subject = case_subject.get(case)
            if subject is not None:
                votes.setdefault(subject, Counter())[fold] += 1
    return {s: min(c, key=lambda f: (-c[f], f)) for s, c in votes.items()}


def assign_folds(subject_domain: Mapping[str, str], existing: Mapping[str, int], n_folds: int = N_FOLDS) -> Dict[str, int]:
    """{subject: fold} for every subject of ``subject_domain``; existing assignments are kept."""
    folds = {s: f for s, f in existing.items() if s in subject_domain and 0 <= int(f) < n_folds}
    per_domain: Dict[Tuple[str, int], int] = Counter()
    per_fold: Dict[int, int] = Counter()
    for s, f in folds.items():
        per_domain[(subject_domain[s], f)] += 1
        per_fold[f] += 1
    for s in sorted((s for s in subject_domain if s not in folds), key=lambda s: (subject_hash(s), s)):
        d = subject_domain[s]
        f = min(range(n_folds), key=lambda k: (per_domain[(d, k)], per_fold[k], k))
        folds[s] = f
        per_domain[(d, f)] += 1
        per_fold[f] += 1
    return folds


def build_splits(train_cases: Mapping[str, Tuple[str, str]], folds: Mapping[str, int],
                 subjects_seen_in: Mapping[str, Iterable[str]], n_folds: int = N_FOLDS) -> Tuple[List[dict], List[str]]:
    """The splits list and notes.

    ``train_cases``: {case: (subject, domain)} of imagesTr; ``folds``: {subject: fold};
    ``subjects_seen_in``: {domain: subjects that appeared in that domain through any source}."""
    cases = sorted(train_cases)
    splits: List[dict] = []
    for k in range(n_folds):
        val = [c for c in cases if folds[train_cases[c][0]] == k]
        splits.append({"train": [c for c in cases if folds[train_cases[c][0]] != k], "val": val})
    notes = [f"fold {k}: no validation case (fewer subjects than folds)" for k in range(n_folds) if not splits[k]["val"]]
    present = {d for _, d in train_cases.values()}
    for domain in [d for d in SOURCES if d in present] + sorted(present - set(SOURCES)):
        seen: Set[str] = set(subjects_seen_in.get(domain, ())) | {s for s, d in train_cases.values() if d == domain}
        val = [c for c in cases if train_cases[c][1] == domain]
        train = [c for c in cases if train_cases[c][1] != domain and train_cases[c][0] not in seen]
        if not train:
            notes.append(f"no leave-one-domain-out fold for {domain}: no training case outside it")
            continue
        splits.append({"train": train, "val": val, "held_out_domain": domain})
    return splits, notes
