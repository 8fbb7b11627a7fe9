"""The reference of an evaluation: which cases, their label maps, lesion maps, centroids and facts.

* An nnU-Net raw dataset (``dataset.json`` beside ``labelsTr``/``labelsTs``): label maps in training labels,
  turned into VerSe codes through ``dataset.json['verse_codes']`` (or, for a dataset without it, the names of
  its ``labels``); its ``labels['ignore']`` (nnU-Net's ignore label, ``labels.IGNORE_LABEL``) marks the voxels of
  vertebrae cut by the field of view; binary lesion maps in ``lesionsTr``/``lesionsTs``; per case, ``case_info``
  gives the domain, the subject (the bootstrap's patient), whether lesions are annotated
  (``annotations.lesion_mask``) and the vertebral-body centroids (``centroids_mm``, ``{VerSe code: LPS mm}``;
  ``annotations.centroids`` says whether they were annotated or estimated at conversion).
* Or a folder of ``<case>.nii.gz`` VerSe-coded label maps, where :data:`IGNORE_VALUE` (255) marks the ignore
  region, with optional ``<case>_lesion.nii.gz`` (binary) and ``<case>_ctd.json`` (VerSe centroid file). A case
  without a lesion map there is not lesion-annotated.

Which cases: the validation cases of a fold of ``splits_final.json``; otherwise every reference case of a plain
folder, and of a raw dataset every case of each of its splits (labelsTr, labelsTs) that has at least one
prediction. Per-case facts come from the one reader of ``case_info``, ``vertebraformer_nn.case_facts``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import image_io, labels
from ..case_facts import facts_for_case, read_case_info

PRED_SUFFIX = ".nii.gz"
LESION_TAG = "_lesion"
#: every lesion candidate of a prediction (``<case>_lesion_candidates.nii.gz``), ranked for the lesion AP
CANDIDATES_TAG = "_lesion_candidates"
CTD_TAG = "_ctd.json"
#: The ignore region in VerSe-coded reference label maps (a label folder): voxels of vertebrae cut by the field
#: of view, not scored. Outside the VerSe vocabulary (1-28); the "void" value of many segmentation benchmarks.
IGNORE_VALUE = 255


class EvaluationError(ValueError):
    """Nothing can be evaluated (a missing folder, no cases, a bad splits file): the message says why."""


@dataclass
class ReferenceCase:
    case: str
    labels: Path
    domain: Optional[str] = None
    subject: Optional[str] = None
    split: Optional[str] = None
    lesions: Optional[Path] = None
    lesion_annotated: bool = False
    centroids_mm: Optional[Dict[int, np.ndarray]] = None
    centroid_source: Optional[str] = None
    ctd: Optional[Path] = None


@dataclass
class Reference:
    root: Path
    kind: str  # "raw_dataset" | "label_folder"
    cases: Dict[str, ReferenceCase]
    code_lut: Optional[np.ndarray] = None  # training label -> VerSe code (raw datasets)
    ignore_value: Optional[int] = IGNORE_VALUE  # the value of the ignore region in its label maps (None: none)
    notes: List[str] = field(default_factory=list)


# --- reference --------------------------------------------------------------------------------------------------

def load_reference(path) -> Reference:
    """An nnU-Net raw dataset (a folder with dataset.json) or a folder of VerSe-coded label maps."""
    root = Path(path)
    if not root.is_dir():
        raise EvaluationError(f"{root}: reference folder does not exist")
    if (root / "dataset.json").is_file():
        return _raw_dataset(root)
    return _label_folder(root)


def ignore_label(dataset_json: Mapping) -> Optional[int]:
    """nnU-Net's ignore label of a dataset (``labels['ignore']``), or None."""
    value = (dataset_json.get("labels") or {}).get("ignore")
    return None if value is None else int(value)


def code_lut(dataset_json: Mapping, path: Path) -> np.ndarray:
    """Training label -> VerSe code, from ``verse_codes``, else from the label names of ``labels`` (the ignore
    label is no code: -1)."""
    ignore = ignore_label(dataset_json)
    if "verse_codes" in dataset_json:
        mapping = {int(k): int(v) for k, v in dataset_json["verse_codes"].items()}
    else:
        try:
            mapping = {int(v): (0 if n == "background" else labels.code(n))
                       for n, v in dataset_json["labels"].items() if n != "ignore"}
        except (KeyError, TypeError, ValueError) as e:
            raise EvaluationError(f"{path}: no 'verse_codes' and labels that are not VerSe vertebra names "
                                  f"({e})") from None
    mapping.pop(ignore, None)
    lut = np.full(max(mapping) + 1, -1, dtype=np.int16)
    for training, code in mapping.items():
        lut[training] = code
    return lut


def _raw_dataset(root: Path) -> Reference:
    path = root / "dataset.json"
    try:
        dataset_json = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvaluationError(f"{path}: unreadable dataset.json ({e})") from None
    ending = dataset_json.get("file_ending", ".nii.gz")
    cases: Dict[str, ReferenceCase] = {}
    for split, labels_dir, lesions_dir in (("train", "labelsTr", "lesionsTr"), ("test", "labelsTs", "lesionsTs")):
        for label_file in sorted((root / labels_dir).glob("*" + ending)):
            case = label_file.name[: -len(ending)]
            lesion_file = root / lesions_dir / (case + ending)
            facts = facts_for_case(case, dataset_json, lesion_file.is_file())
            ctd = _case_centroids(facts.centroids_mm, case, path)
            kind = facts.annotations.get("centroids") or "annotated"
            cases[case] = ReferenceCase(
                case=case, labels=label_file, domain=facts.domain, subject=facts.subject, split=split,
                lesions=lesion_file if facts.lesion_annotated else None, lesion_annotated=facts.lesion_annotated,
                centroids_mm=ctd or None,
                centroid_source=f"{kind} (dataset.json case_info)" if ctd else None)
    if not cases:
        raise EvaluationError(f"{root}: raw dataset without label maps (*{ending}) in labelsTr/ or labelsTs/")
    notes = []
    if dataset_json.get("centroid_only_cases"):
        notes.append(f"{len(dataset_json['centroid_only_cases'])} centroid-only case(s) of dataset.json have no "
                     "label map and are not evaluated")
    missing_info = sorted(set(cases) - set(read_case_info(dataset_json)))
    if missing_info:
        notes.append(f"{len(missing_info)} case(s) without a case_info entry in dataset.json: domain unknown, "
                     "patient = case, lesions annotated only where a lesion map exists")
    return Reference(root, "raw_dataset", cases, code_lut(dataset_json, path), ignore_label(dataset_json), notes)


def _case_centroids(centroids_mm: Mapping, case: str, path: Path) -> Dict[int, np.ndarray]:
    try:
        ctd = {int(c): np.asarray(p, dtype=float) for c, p in centroids_mm.items()}
    except (TypeError, ValueError, AttributeError):
        ctd = None
    if ctd is None or any(p.shape != (3,) or not np.all(np.isfinite(p)) for p in ctd.values()):
        raise EvaluationError(f"{path}: case_info[{case!r}]['centroids_mm'] is not {{VerSe code: [x, y, z] in mm}}")
    return ctd


def _image_stem(path: Path) -> Optional[str]:
    name = path.name
    suffix = next((s for s in image_io.IMAGE_SUFFIXES if name.lower().endswith(s)), None)
    return name[: -len(suffix)] if suffix and not name.startswith(".") else None


def _label_folder(root: Path) -> Reference:
    files = {}
    for f in sorted(root.iterdir()):
        stem = _image_stem(f) if f.is_file() else None
        if stem is not None:
            files[stem] = f
    cases = {}
    for stem, f in files.items():
        if stem.endswith((LESION_TAG, CANDIDATES_TAG)):
            continue
        lesion = files.get(stem + LESION_TAG)
        ctd = root / (stem + CTD_TAG)
        cases[stem] = ReferenceCase(case=stem, labels=f, lesions=lesion, lesion_annotated=lesion is not None,
                                    ctd=ctd if ctd.is_file() else None)
    if not cases:
        raise EvaluationError(f"{root}: neither an nnU-Net raw dataset (no dataset.json) nor a folder of label maps "
                              f"(no <case>{PRED_SUFFIX})")
    return Reference(root, "label_folder", cases)


def predicted_cases(pred_dir: Path) -> List[str]:
    """Case names of the ``<case>.nii.gz`` vertebra maps in a prediction folder."""
    names = [f.name[: -len(PRED_SUFFIX)] for f in pred_dir.glob("*" + PRED_SUFFIX) if not f.name.startswith(".")]
    return sorted(n for n in names if not n.endswith((LESION_TAG, CANDIDATES_TAG)))


def read_fold(reference: Reference, fold: int) -> tuple:
    """(validation cases, held-out domain or None) of ``fold`` in the reference's splits_final.json (else the
    copy in $nnUNet_preprocessed/<dataset>/)."""
    candidates = [reference.root / "splits_final.json"]
    if os.environ.get("nnUNet_preprocessed"):
        candidates.append(Path(os.environ["nnUNet_preprocessed"]) / reference.root.name / "splits_final.json")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = " or ".join(str(p.parent) for p in candidates)
        raise EvaluationError(f"--cases-from-splits: no splits_final.json in {where}")
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvaluationError(f"{path}: unreadable splits file ({e})") from None
    if not isinstance(splits, list) or not 0 <= fold < len(splits) or "val" not in splits[fold]:
        n = len(splits) if isinstance(splits, list) else 0
        raise EvaluationError(f"{path}: no fold {fold} (the file has folds 0-{n - 1})")
    return list(splits[fold]["val"]), splits[fold].get("held_out_domain")


def expected_cases(reference: Reference, predicted: Sequence[str],
                   fold_cases: Optional[Sequence[str]] = None) -> List[str]:
    if fold_cases is not None:
        unknown = [c for c in fold_cases if c not in reference.cases]
        if unknown:
            raise EvaluationError(f"{reference.root}: fold cases without a reference label map: "
                                  f"{', '.join(unknown[:5])}"
                                  + (" ..." if len(unknown) > 5 else ""))
        return list(fold_cases)
    if reference.kind == "label_folder":
        return sorted(reference.cases)
    splits = {reference.cases[c].split for c in predicted if c in reference.cases}
    return sorted(c for c, rc in reference.cases.items() if rc.split in splits)


def present_values(array: np.ndarray) -> np.ndarray:
    """Distinct values of an integer array; a bincount (linear time) where values are non-negative, since a
    sort of a whole CT-sized map takes seconds."""
    if array.size and int(array.min()) >= 0:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array)


def reference_codes(array: np.ndarray, lut: Optional[np.ndarray], ignore_value: Optional[int],
                    path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(VerSe codes, ignore mask) of a reference label array: training labels through ``lut`` (a raw
    dataset's), else VerSe codes; ``ignore_value`` marks the ignore region (None: there is none). Values that are
    neither a code nor the ignore value raise ImageReadError naming the file."""
    ignore = array == ignore_value if ignore_value is not None else np.zeros(array.shape, bool)
    return verse_codes(np.where(ignore, 0, array), lut, path), ignore


def verse_codes(array: np.ndarray, lut: Optional[np.ndarray], path: Path) -> np.ndarray:
    """A label array in VerSe codes (through ``lut`` for training labels); unknown values raise naming the file."""
    values = present_values(array)
    if lut is not None:
        bad = [int(v) for v in values if v < 0 or v >= len(lut) or lut[int(v)] < 0]
        if bad:
            raise image_io.ImageReadError(f"{path}: label values {bad} are not in dataset.json's verse_codes")
        return lut.astype(np.uint8)[array]
    bad = [int(v) for v in values if v != 0 and int(v) not in labels.VERTEBRA_CODES]
    if bad:
        raise image_io.ImageReadError(f"{path}: label values {bad} are not VerSe vertebra codes (1-25, 28)")
    return array.astype(np.uint8, copy=False)
