"""``finalize``: the MultiSpine assembler. Reads the sources' manifests and the files in the raw dataset, then

1. **de-duplicates subjects** across sources: a subject converted from several sources keeps the cases of
   the highest-priority one (verse > ctspine1k > spineweb > dicom; several series of one subject in that
   source all stay); the other copies' files are removed and reported as "duplicate of ...". Every source a
   subject appeared in is remembered, for the leave-one-domain-out folds.
2. writes **dataset.json** with nnU-Net's own ``generate_dataset_json`` (through a temporary folder, then an
   atomic rename): ``channel_names`` {"0": "CT"}, the consecutive ``labels`` and the ``verse_codes`` of
   ``labels.py`` (``labels`` ends with ``"ignore": 27``, nnU-Net's ignore label: vertebrae cut by the field of
   view), ``numTraining`` = imagesTr cases, ``file_ending`` ".nii.gz",
   ``overwrite_image_reader_writer`` "SimpleITKIOWithReorient", ``case_info`` (one entry per imagesTr and
   imagesTs case: domain, subject, licence, split, annotations, centroids_mm, fracture_grades,
   partial_vertebrae_ignored, ignored_border_slabs, source_files, notes) and ``centroid_only_cases`` (names of
   cases recorded with centroids only, kept out of training; their records stay in ``conversion/<source>.json``).
3. writes **splits_final.json** (splits.py) into the raw folder and into
   ``$nnUNet_preprocessed/<dataset>/``, where nnU-Net reads it at training.
4. runs nnU-Net's ``verify_dataset_integrity`` on the raw folder.

Deterministic and idempotent: a second run gives byte-identical dataset.json and splits files.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from vertebraformer_nn import __version__, labels

from .common import FILE_ENDING, SOURCES, CaseRecord, ConversionError
from .raw_dataset import (dataset_files, find_dataset, load_manifests, remove_cases, source_of_case,
                          write_json_atomic)
from .splits import assign_folds, build_splits, folds_from_existing

SPLITS_FILE = "splits_final.json"
READER_WRITER = "SimpleITKIOWithReorient"


@dataclass
class FinalizeReport:
    dataset: str
    num_training: int = 0
    num_test: int = 0
    centroid_only: List[str] = field(default_factory=list)
    duplicates: List[dict] = field(default_factory=list)  # {"case", "subject", "duplicate_of": [cases]}
    fold_sizes: List[dict] = field(default_factory=list)
    split_notes: List[str] = field(default_factory=list)
    splits_written: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    integrity: str = "not run"

    @property
    def ok(self) -> bool:
        """No error, and nnU-Net's integrity check passed (or was skipped on request)."""
        return not self.errors and self.integrity in ("passed", "skipped")

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"ok": self.ok}

    def format(self) -> str:
        lines = [f"finalize {self.dataset}: {self.num_training} training case(s), {self.num_test} test case(s), "
                 f"{len(self.centroid_only)} centroid-only case(s) recorded"]
        for d in self.duplicates:
            lines.append(f"  removed    {d['case']}: duplicate of {', '.join(d['duplicate_of'])} (subject {d['subject']})")
        for i, f in enumerate(self.fold_sizes):
            held = f" held out: {f['held_out_domain']}" if "held_out_domain" in f else ""
            lines.append(f"  fold {i}: {f['train']} train / {f['val']} val{held}")
        lines += [f"  note: {n}" for n in self.split_notes]
        lines += [f"  wrote {p}" for p in self.splits_written]
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines.append(f"nnU-Net dataset integrity check: {self.integrity}")
        return "\n".join(lines)


def _records(manifests: Dict[str, dict]) -> List[CaseRecord]:
    return [CaseRecord.from_json(r) for s in SOURCES if s in manifests for r in manifests[s].get("converted", [])]


def deduplicate(records: List[CaseRecord]):
    """Split records into kept and duplicates: a subject keeps the cases of its highest-priority source.
    Returns (kept, [(duplicate record, [cases it duplicates])])."""
    rank = {s: i for i, s in enumerate(SOURCES)}
    best: Dict[str, int] = {}
    for r in records:
        if not r.centroid_only:
            best[r.subject] = min(best.get(r.subject, len(SOURCES)), rank[r.source])
    kept, dups = [], []
    for r in records:
        if r.centroid_only or rank[r.source] == best[r.subject]:
            kept.append(r)
        else:
            winners = sorted(k.case for k in records if k.subject == r.subject and not k.centroid_only
                             and rank[k.source] == best[r.subject])
            dups.append((r, winners))
    return kept, dups


def _existing_splits(path: Path) -> Optional[list]:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _write_dataset_json(folder: Path, num_training: int, num_test: int, case_info: dict, centroid_only: List[str]) -> None:
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    with tempfile.TemporaryDirectory(dir=folder, prefix=".dataset_json.") as tmp:
        generate_dataset_json(
            tmp, channel_names={"0": "CT"}, labels=labels.dataset_json_labels(), num_training_cases=num_training,
            file_ending=FILE_ENDING, dataset_name=folder.name,
            description="MultiSpine: vertebra labels (consecutive training labels; VerSe codes in verse_codes), "
                        "lesion maps in lesionsTr/lesionsTs, per-case facts in case_info",
            overwrite_image_reader_writer=READER_WRITER,
            license="per case: see case_info[case]['licence']",
            converted_by=f"vertebraformer convert (VertebraFormer-nn {__version__})",
            numTest=num_test, verse_codes=labels.dataset_json_verse_codes(),
            case_info=case_info, centroid_only_cases=centroid_only)
        Path(tmp, "dataset.json").replace(folder / "dataset.json")


def run_integrity_check(folder: Path, num_processes: int = 2) -> str:
    """nnU-Net's own verify_dataset_integrity; 'passed' or the error it raised (with what it printed)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            verify_dataset_integrity(str(folder), num_processes=num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError, ValueError) as e:
        printed = [ln for ln in out.getvalue().splitlines() if ln.strip() and not ln.startswith("#")]
        return f"FAILED: {type(e).__name__}: {e}" + ("".join(f"\n    {ln}" for ln in printed[-10:]) if printed else "")
    return "passed"


def finalize(dataset_id: int, check: bool = True, num_processes: int = 2) -> FinalizeReport:
    """Assemble dataset ``dataset_id`` (see the module docstring). Raises ConversionError when there is no dataset."""
    from vertebraformer_nn import paths

    folder = find_dataset(dataset_id)
    report = FinalizeReport(dataset=str(folder))
    manifests = load_manifests(folder)
    if not manifests:
        raise ConversionError(f"{folder} holds no converted source (no conversion/<source>.json); convert a source first")
    records = _records(manifests)
    kept, dups = deduplicate(records)
    remove_cases(folder, [r.case for r, _ in dups])
    report.duplicates = [{"case": r.case, "subject": r.subject, "duplicate_of": w} for r, w in sorted(dups, key=lambda d: d[0].case)]

    # Every kept case's files must be there, and nothing else may be (nnU-Net counts every image file).
    present = dataset_files(folder)
    with_files = [r for r in kept if not r.centroid_only]
    for r in with_files:
        missing = [f for f in r.files if not (folder / f).is_file()]
        if missing:
            report.errors.append(f"{r.case}: file(s) missing: {', '.join(missing)} (re-convert {r.source})")
    known = {r.case for r in with_files} | {r.case for r, _ in dups}
    for case in sorted(set(present) - known):
        report.errors.append(f"{case}: files in the dataset that no converted source lists "
                             f"({', '.join(p.name for p in present[case])}); remove them or re-convert "
                             f"{source_of_case(case) or 'their source'}")

    train = sorted((r for r in with_files if r.split == "train"), key=lambda r: r.case)
    test = sorted((r for r in with_files if r.split == "test"), key=lambda r: r.case)
    report.num_training = len(train)
    report.num_test = len(test)
    report.centroid_only = sorted(r.case for r in kept if r.centroid_only)
    case_info = {r.case: r.case_info() for r in sorted(train + test, key=lambda r: r.case)}

    # Splits: subjects keep their fold from an existing splits file (raw folder first, else preprocessed copy).
    raw_splits = folder / SPLITS_FILE
    pre_splits = paths.preprocessed_root() / folder.name / SPLITS_FILE
    existing = _existing_splits(raw_splits) or _existing_splits(pre_splits)
    case_subject = {r.case: r.subject for r in records}
    subject_domain = {r.subject: r.source for r in train}
    folds = assign_folds(subject_domain, folds_from_existing(existing, case_subject))
    seen: Dict[str, set] = {}
    for r in records:  # every converted record, duplicates and test cases included: no leak through any copy
        seen.setdefault(r.source, set()).add(r.subject)
    splits, report.split_notes = build_splits({r.case: (r.subject, r.source) for r in train}, folds, seen)
    report.fold_sizes = [{"train": len(e["train"]), "val": len(e["val"]),
                          **({"held_out_domain": e["held_out_domain"]} if "held_out_domain" in e else {})} for e in splits]

    _write_dataset_json(folder, len(train), len(test), case_info, report.centroid_only)
    for path in (raw_splits, pre_splits):
        write_json_atomic(path, splits, indent=4)
        report.splits_written.append(str(path))
    if report.errors:
        report.integrity = "not run (errors above)"
    elif not train:
        report.integrity = "not run: no training case"
        report.errors.append("no training case in the dataset")
    elif check:
        report.integrity = run_integrity_check(folder, num_processes)
    else:
        report.integrity = "skipped"
    write_json_atomic(folder / "conversion" / "finalize.json", report.to_json())
    return report
