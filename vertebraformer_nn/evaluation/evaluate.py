"""Evaluate a prediction folder against a reference: read both, score each case, aggregate per group.

Reference (``load_reference``):

* an nnU-Net raw dataset (``dataset.json`` beside ``labelsTr``/``labelsTs``): label maps in training labels,
  turned into VerSe codes through ``dataset.json['verse_codes']`` (or, for a dataset without it, the names of
  its ``labels``); binary lesion maps in ``lesionsTr``/``lesionsTs``; per case, ``case_info`` gives the domain,
  the subject (the bootstrap's patient), whether lesions are annotated (``annotations.lesion_mask``) and the
  vertebral-body centroids (``centroids_mm``, ``{VerSe code: LPS mm}``; ``annotations.centroids`` says
  whether they were annotated or estimated at conversion);
* or a folder of ``<case>.nii.gz`` VerSe-coded label maps with optional ``<case>_lesion.nii.gz`` (binary)
  and ``<case>_ctd.json`` (VerSe centroid file). A case without a lesion map there is not lesion-annotated.

A case whose reference has no centroids gets them from its reference mask (``centroids.body_centroids``); the
per-case record and the report say so. Cases without lesion annotation are left out of the lesion metrics.

Prediction folder (the predictor's output): ``<case>.nii.gz`` (VerSe codes), ``<case>_lesion.nii.gz`` (lesion
instance ids), ``<case>_ctd.json`` (else centroids are computed from the predicted mask, noted) and
``<case>.json`` (``lesions[]``: ``id``, ``score``). Every file must lie on the reference grid.

Which cases: the validation cases of ``--cases-from-splits FOLD``; otherwise every reference case of a plain
folder, and of a raw dataset every case of each of its splits (labelsTr, labelsTs) that has at least one
prediction. An expected case without a prediction, or whose prediction cannot be used (unreadable, another
grid, unknown codes), is scored as an empty prediction (Dice 0, no vertebra identified, no lesion found) and
listed as a failure; ``skip_missing`` leaves cases without any prediction out of the means instead.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .. import centroids, image_io, labels
from . import bootstrap, lesion_metrics, metrics

PRED_SUFFIX = ".nii.gz"
LESION_TAG = "_lesion"
CTD_TAG = "_ctd.json"


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


def _code_lut(dataset_json: Mapping, path: Path) -> np.ndarray:
    """Training label -> VerSe code, from ``verse_codes``, else from the label names of ``labels``."""
    if "verse_codes" in dataset_json:
        mapping = {int(k): int(v) for k, v in dataset_json["verse_codes"].items()}
    else:
        try:
            mapping = {int(v): (0 if n == "background" else labels.code(n)) for n, v in dataset_json["labels"].items()
                       if n != "ignore"}
        except (KeyError, TypeError, ValueError) as e:
            raise EvaluationError(f"{path}: no 'verse_codes' and labels that are not VerSe vertebra names ({e})") from None
    ignore = (dataset_json.get("labels") or {}).get("ignore")
    if ignore is not None:  # vertebrae cut by the field of view: background here, as the converters once wrote them
        mapping[int(ignore)] = 0
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
    case_info = dataset_json.get("case_info") or {}
    cases: Dict[str, ReferenceCase] = {}
    for split, labels_dir, lesions_dir in (("train", "labelsTr", "lesionsTr"), ("test", "labelsTs", "lesionsTs")):
        for label_file in sorted((root / labels_dir).glob("*" + ending)):
            case = label_file.name[: -len(ending)]
            info = case_info.get(case) or {}
            annotations = info.get("annotations") or {}
            lesion_file = root / lesions_dir / (case + ending)
            annotated = bool(annotations.get("lesion_mask", lesion_file.is_file()))
            ctd = _case_centroids(info, case, path)
            kind = annotations.get("centroids") or "annotated"
            cases[case] = ReferenceCase(
                case=case, labels=label_file, domain=info.get("domain"), subject=info.get("subject"), split=split,
                lesions=lesion_file if annotated else None, lesion_annotated=annotated,
                centroids_mm=ctd or None,
                centroid_source=f"{kind} (dataset.json case_info)" if ctd else None)
    if not cases:
        raise EvaluationError(f"{root}: raw dataset without label maps (*{ending}) in labelsTr/ or labelsTs/")
    notes = []
    if dataset_json.get("centroid_only_cases"):
        notes.append(f"{len(dataset_json['centroid_only_cases'])} centroid-only case(s) of dataset.json have no "
                     "label map and are not evaluated")
    missing_info = sorted(c for c in cases if c not in case_info)
    if missing_info:
        notes.append(f"{len(missing_info)} case(s) without a case_info entry in dataset.json: domain unknown, "
                     "patient = case, lesions annotated only where a lesion map exists")
    return Reference(root, "raw_dataset", cases, _code_lut(dataset_json, path), notes)


def _case_centroids(info: Mapping, case: str, path: Path) -> Dict[int, np.ndarray]:
    try:
        ctd = {int(c): np.asarray(p, dtype=float) for c, p in (info.get("centroids_mm") or {}).items()}
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
        if stem.endswith(LESION_TAG):
            continue
        lesion = files.get(stem + LESION_TAG)
        ctd = root / (stem + CTD_TAG)
        cases[stem] = ReferenceCase(case=stem, labels=f, lesions=lesion, lesion_annotated=lesion is not None,
                                    ctd=ctd if ctd.is_file() else None)
    if not cases:
        raise EvaluationError(f"{root}: neither an nnU-Net raw dataset (no dataset.json) nor a folder of label maps "
                              f"(no <case>{PRED_SUFFIX})")
    return Reference(root, "label_folder", cases)


# --- which cases ------------------------------------------------------------------------------------------------

def predicted_cases(pred_dir: Path) -> List[str]:
    """Case names of the ``<case>.nii.gz`` vertebra maps in a prediction folder."""
    names = [f.name[: -len(PRED_SUFFIX)] for f in pred_dir.glob("*" + PRED_SUFFIX) if not f.name.startswith(".")]
    return sorted(n for n in names if not n.endswith(LESION_TAG))


def read_fold(reference: Reference, fold: int) -> tuple:
    """(validation cases, held-out domain or None) of ``fold`` in the reference's splits_final.json (else the
    copy in $nnUNet_preprocessed/<dataset>/)."""
    candidates = [reference.root / "splits_final.json"]
    if os.environ.get("nnUNet_preprocessed"):
        candidates.append(Path(os.environ["nnUNet_preprocessed"]) / reference.root.name / "splits_final.json")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise EvaluationError(f"--cases-from-splits: no splits_final.json in {' or '.join(str(p.parent) for p in candidates)}")
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvaluationError(f"{path}: unreadable splits file ({e})") from None
    if not isinstance(splits, list) or not 0 <= fold < len(splits) or "val" not in splits[fold]:
        n = len(splits) if isinstance(splits, list) else 0
        raise EvaluationError(f"{path}: no fold {fold} (the file has folds 0-{n - 1})")
    return list(splits[fold]["val"]), splits[fold].get("held_out_domain")


def expected_cases(reference: Reference, predicted: Sequence[str], fold_cases: Optional[Sequence[str]] = None) -> List[str]:
    if fold_cases is not None:
        unknown = [c for c in fold_cases if c not in reference.cases]
        if unknown:
            raise EvaluationError(f"{reference.root}: fold cases without a reference label map: {', '.join(unknown[:5])}"
                                  + (" ..." if len(unknown) > 5 else ""))
        return list(fold_cases)
    if reference.kind == "label_folder":
        return sorted(reference.cases)
    splits = {reference.cases[c].split for c in predicted if c in reference.cases}
    return sorted(c for c, rc in reference.cases.items() if rc.split in splits)


# --- one case ---------------------------------------------------------------------------------------------------

def _present_values(array: np.ndarray) -> np.ndarray:
    """Distinct values of an integer array; a bincount (linear time) where values are non-negative, since a
    sort of a whole CT-sized map takes seconds."""
    if array.size and int(array.min()) >= 0:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array)


def _verse_codes(array: np.ndarray, lut: Optional[np.ndarray], path: Path) -> np.ndarray:
    """A label array in VerSe codes (through ``lut`` for training labels); unknown values raise naming the file."""
    values = _present_values(array)
    if lut is not None:
        bad = [int(v) for v in values if v < 0 or v >= len(lut) or lut[int(v)] < 0]
        if bad:
            raise image_io.ImageReadError(f"{path}: label values {bad} are not in dataset.json's verse_codes")
        return lut.astype(np.uint8)[array]
    bad = [int(v) for v in values if v != 0 and int(v) not in labels.VERTEBRA_CODES]
    if bad:
        raise image_io.ImageReadError(f"{path}: label values {bad} are not VerSe vertebra codes (1-25, 28)")
    return array.astype(np.uint8, copy=False)


def _read_on_grid(path: Path, grid: Optional[sitk.Image], what: str) -> sitk.Image:
    image = image_io.read_label(path)
    problem = image_io.grid_mismatch(grid, image) if grid is not None else None
    if problem:
        raise image_io.ImageReadError(f"{path}: {what} is not on the reference grid ({problem})")
    return image


def _scores(path: Path, notes: List[str]) -> Dict[int, float]:
    """{lesion id: score} from the prediction's ``<case>.json``."""
    if not path.is_file():
        notes.append(f"{path.name} missing: predicted lesions ranked without scores (all 0)")
        return {}
    try:
        entries = json.loads(path.read_text()).get("lesions") or []
        return {int(e["id"]): float(e["score"]) for e in entries}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise image_io.ImageReadError(f"{path}: no readable lesions[].id/score ({e})") from None


def _with_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def evaluate_case(rc: ReferenceCase, pred_dir: Path, *, code_lut: Optional[np.ndarray] = None,
                  thresholds: Sequence[float] = lesion_metrics.DEFAULT_THRESHOLDS,
                  id_radius_mm: float = metrics.ID_RADIUS_MM, id_rule: str = "closest_prediction") -> dict:
    """Every metric of one case. A prediction that is missing or unusable scores as an empty one; its problem is
    listed and ``status`` is "missing" or "failed". A reference that cannot be read gives status
    "reference_error" and no metrics."""
    record = {"case": rc.case, "domain": rc.domain, "subject": rc.subject or rc.case, "split": rc.split,
              "status": "ok", "problems": [], "notes": []}
    problems = record["problems"]
    try:
        ref_img = image_io.read_label(rc.labels)
        ref = _verse_codes(sitk.GetArrayFromImage(ref_img), code_lut, rc.labels)
    except image_io.ImageReadError as e:
        record.update(status="reference_error", problems=[str(e)])
        return record
    ref_lesions = None
    if rc.lesion_annotated:
        try:
            ref_lesions = lesion_metrics.reference_instances(sitk.GetArrayFromImage(
                _read_on_grid(rc.lesions, ref_img, "reference lesion map")))
        except image_io.ImageReadError as e:
            problems.append(f"{e} (case left out of the lesion metrics)")
    ref_ctd, ref_ctd_source = _reference_centroids(rc, ref, ref_img, problems)

    seg_path = pred_dir / (rc.case + PRED_SUFFIX)
    pred, pred_img = np.zeros_like(ref), None
    if not seg_path.is_file():
        record["status"] = "missing"
        problems.append(f"{seg_path}: no prediction")
    else:
        try:
            pred_img = _read_on_grid(seg_path, ref_img, "predicted label map")
            pred = _verse_codes(sitk.GetArrayFromImage(pred_img), None, seg_path)
        except image_io.ImageReadError as e:
            problems.append(str(e))
            pred_img = None

    spacing = ref_img.GetSpacing()[::-1]  # array axes are (z, y, x)
    record["segmentation"] = metrics.segmentation_metrics(ref, pred, spacing)

    pred_ctd, pred_ctd_source = {}, "none (no usable prediction)"
    if pred_img is not None:
        pred_ctd, pred_ctd_source = _predicted_centroids(pred_dir / (rc.case + CTD_TAG), pred, pred_img, record)
    numbering = metrics.identification(ref_ctd, pred_ctd, id_radius_mm, id_rule)
    numbering.update(reference_centroids=ref_ctd_source, predicted_centroids=pred_ctd_source)
    record["numbering"] = numbering

    record["lesions"] = None
    if ref_lesions is not None:
        pred_lesions, scores = np.zeros_like(ref_lesions), {}
        if record["status"] != "missing":
            found, scores = _predicted_lesions(pred_dir, rc.case, ref_img, record)
            pred_lesions = pred_lesions if found is None else found
        record["lesions"] = lesion_metrics.case_lesion_metrics(ref_lesions, pred_lesions, scores, thresholds)
    if problems and record["status"] == "ok":
        record["status"] = "failed"
    return record


def _predicted_lesions(pred_dir: Path, case: str, ref_img: sitk.Image, record: dict):
    """(instance map, {id: score}); an unusable map counts as no lesion found, unusable scores as all 0."""
    path = pred_dir / (case + LESION_TAG + PRED_SUFFIX)
    try:
        if not path.is_file():
            raise image_io.ImageReadError(f"{path}: no predicted lesion map")
        instances = sitk.GetArrayFromImage(_read_on_grid(path, ref_img, "predicted lesion map"))
    except image_io.ImageReadError as e:
        record["problems"].append(f"{e} (no lesion counted as found)")
        return None, {}
    try:
        scores = _scores(pred_dir / (case + ".json"), record["notes"])
    except image_io.ImageReadError as e:
        record["problems"].append(f"{e} (predicted lesions ranked without scores)")
        scores = {}
    _note_unscored(instances, scores, record["notes"])
    return instances, scores


def _note_unscored(instances: np.ndarray, scores: Mapping[int, float], notes: List[str]) -> None:
    ids = {int(v) for v in _present_values(instances) if v > 0}
    unscored, absent = sorted(ids - set(scores)), sorted(set(scores) - ids)
    if scores and unscored:
        notes.append(f"predicted lesion ids without a score (ranked last): {unscored}")
    if absent:
        notes.append(f"scored lesion ids absent from the lesion map (ignored): {absent}")


def _reference_centroids(rc: ReferenceCase, ref: np.ndarray, ref_img: sitk.Image, problems: List[str]):
    if rc.centroids_mm:
        return rc.centroids_mm, rc.centroid_source
    if rc.ctd is not None:
        try:
            return centroids.read_verse_ctd(rc.ctd, ref_img), f"reference centroid file {rc.ctd.name}"
        except ValueError as e:
            problems.append(f"{e}; reference centroids computed from the reference mask instead")
    return (centroids.body_centroids(_with_array(ref, ref_img)),
            "computed from the reference mask (centroids.body_centroids)")


def _predicted_centroids(ctd_path: Path, pred: np.ndarray, pred_img: sitk.Image, record: dict):
    if ctd_path.is_file():
        try:
            return centroids.read_verse_ctd(ctd_path, pred_img), f"prediction centroid file {ctd_path.name}"
        except ValueError as e:
            record["problems"].append(f"{e}; centroids computed from the predicted mask instead")
    else:
        record["notes"].append(f"{ctd_path.name} missing: predicted centroids computed from the predicted mask")
    return centroids.body_centroids(_with_array(pred, pred_img)), "computed from the predicted mask (centroids.body_centroids)"


# --- aggregation ------------------------------------------------------------------------------------------------

def _values(records, task, key):
    out = []
    for r in records:
        v = r[task][key]
        out.append(None if v is None else float(v))
    return out


def summarise(records: Sequence[dict], thresholds: Sequence[float], **boot) -> dict:
    """Group summary: means of per-case values (and pooled rates) with patient-level BCa intervals.
    ``boot``: n_resamples, confidence, seed."""
    units = [r["subject"] for r in records]
    seg = {k: bootstrap.mean_interval(_values(records, "segmentation", k), units, **boot)
           for k in ("dice", "hd95_mm", "binary_dice")}
    num = {"id_rate": bootstrap.mean_interval(_values(records, "numbering", "id_rate"), units, **boot),
           "id_rate_pooled": bootstrap.ratio_interval(_values(records, "numbering", "hits"),
                                                      _values(records, "numbering", "n_reference"), units, **boot),
           "localisation_mm": bootstrap.mean_interval(_values(records, "numbering", "mean_distance_mm"), units, **boot),
           "all_correct": bootstrap.mean_interval(_values(records, "numbering", "all_correct"), units, **boot)}
    return {"n_cases": len(records), "n_patients": len(set(units)), "segmentation": seg, "numbering": num,
            "lesions": _summarise_lesions([r for r in records if r.get("lesions")], thresholds, **boot)}


def _summarise_lesions(records: Sequence[dict], thresholds: Sequence[float], **boot) -> Optional[dict]:
    if not records:
        return None
    cases = [r["lesions"] for r in records]
    unit_of_case, n_units = bootstrap.unit_index([r["subject"] for r in records])
    out = {"n_cases": len(records), "n_patients": n_units,
           "n_reference": sum(c["n_reference"] for c in cases), "n_predicted": sum(c["n_predicted"] for c in cases)}
    for t in thresholds:
        key = lesion_metrics.threshold_key(t)
        tp, owner, n_ref = lesion_metrics.pooled_inputs(cases, t)
        entry = {}
        for metric in ("precision", "recall", "ap"):
            def statistic(w, metric=metric):
                return lesion_metrics.pooled_detection(tp, owner, n_ref, w[:, unit_of_case])[metric]
            entry[metric] = bootstrap.bootstrap_interval(statistic, n_units, size_hint=len(tp), **boot)
            entry[metric]["n_cases"] = len(records)
        units = [r["subject"] for r in records]
        entry["per_case"] = {m: bootstrap.mean_interval([c["thresholds"][key][m] for c in cases], units, **boot)
                             for m in ("precision", "recall", "ap")}
        out[key] = entry
    return out


def group_records(records: Sequence[dict], held_out_domain: Optional[str]) -> Dict[str, List[dict]]:
    """{"overall": all, "domain:<d>": per domain (when domains are known), "in_domain"/"cross_domain" when a
    domain was held out}."""
    groups: Dict[str, List[dict]] = {"overall": list(records)}
    if any(r["domain"] for r in records):  # a plain label folder knows no domains: the overall row says it all
        for r in records:
            groups.setdefault(f"domain:{r['domain'] or 'unknown'}", []).append(r)
    if held_out_domain:
        groups["in_domain"] = [r for r in records if r["domain"] != held_out_domain]
        groups["cross_domain"] = [r for r in records if r["domain"] == held_out_domain]
    return {k: v for k, v in groups.items() if v}


# --- the whole evaluation ---------------------------------------------------------------------------------------

def evaluate(reference, prediction, *, cases_from_splits: Optional[int] = None, held_out_domain: Optional[str] = None,
             lesion_thresholds: Sequence[float] = lesion_metrics.DEFAULT_THRESHOLDS,
             n_resamples: int = bootstrap.DEFAULT_RESAMPLES, confidence: float = bootstrap.CONFIDENCE, seed: int = 0,
             id_radius_mm: float = metrics.ID_RADIUS_MM, id_rule: str = "closest_prediction",
             skip_missing: bool = False, progress: bool = False) -> dict:
    """Evaluate ``prediction`` (folder) against ``reference`` (raw dataset or label folder): the full report
    (settings, per-case records, group summaries, failures). Raises EvaluationError when nothing can run."""
    pred_dir = Path(prediction)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder does not exist")
    ref = load_reference(reference)
    predicted = predicted_cases(pred_dir)
    fold_cases, fold_domain = read_fold(ref, cases_from_splits) if cases_from_splits is not None else (None, None)
    notes = list(ref.notes)
    if held_out_domain and fold_domain and held_out_domain != fold_domain:
        notes.append(f"--held-out-domain {held_out_domain} overrides fold {cases_from_splits}'s {fold_domain}")
    held_out = held_out_domain or fold_domain
    expected = expected_cases(ref, predicted, fold_cases)
    if not expected or not set(expected) & set(predicted):
        raise EvaluationError(f"no case to evaluate: {pred_dir} holds no <case>{PRED_SUFFIX} of the "
                              f"{len(expected) or len(ref.cases)} expected reference case(s) in {ref.root}")

    records = []
    for k, case in enumerate(expected, 1):
        record = evaluate_case(ref.cases[case], pred_dir, code_lut=ref.code_lut, thresholds=lesion_thresholds,
                               id_radius_mm=id_radius_mm, id_rule=id_rule)
        records.append(record)
        if progress:
            print(f"[{k}/{len(expected)}] {case}: {record['status']}", file=sys.stderr)

    scored = [r for r in records if r["status"] in ("ok", "failed") or (r["status"] == "missing" and not skip_missing)]
    boot = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    groups = group_records(scored, held_out)
    if held_out and f"domain:{held_out}" not in groups:
        notes.append(f"held-out domain {held_out!r}: no evaluated case has that domain")
    summary = {name: summarise(rs, lesion_thresholds, **boot) for name, rs in groups.items()}
    sources = sorted({r["numbering"]["reference_centroids"] for r in scored})
    return {
        "settings": {
            "reference": str(ref.root), "reference_kind": ref.kind, "prediction": str(pred_dir),
            "cases_from_splits": cases_from_splits, "held_out_domain": held_out,
            "lesion_iou_thresholds": [float(t) for t in lesion_thresholds],
            "identification": {"radius_mm": id_radius_mm, "rule": id_rule},
            "bootstrap": {**boot, "method": "BCa", "resampling_unit": "patient (case_info subject, else case)"},
            "missing_predictions": "left out of the means" if skip_missing else "scored as empty predictions",
            "reference_centroids": sources,
        },
        "summary": summary,
        "cases": {r["case"]: r for r in records},
        "failures": [{"case": r["case"], "status": r["status"], "problems": r["problems"]}
                     for r in records if r["status"] != "ok"],
        "predictions_not_evaluated": sorted(set(predicted) - set(expected)),
        "notes": notes,
    }


def exit_status(report: dict) -> int:
    """0 when every expected case was evaluated cleanly, 1 when some failed or were missing."""
    return 1 if report["failures"] else 0
