"""DICOM cohort (docs/source_layouts.md, "DICOM cohort"; TCIA Spine-Mets-CT-SEG is a public instance).

::

    ROOT/mapping.json                                   (or --mapping PATH; paths inside are relative to ROOT)
    ROOT/<patient>/<study>/<series folder>/*.dcm        one or several series per study
    ROOT/<patient>/labels/vertebrae.nii.gz, lesions.nii.gz    label files (NIfTI/NRRD/...), or
    ROOT/<patient>/seg/segmentation.dcm                 one DICOM SEG, or
    ROOT/<patient>/rtstruct/rtstruct.dcm                one RTSTRUCT

The mapping names the cases: ``{"case", "study", "vertebrae"?, "lesions"?, "segmentation"?, "rtstruct"?,
"series_uid"?, "segments"?, "subject"?, "split"?, "licence"?}`` plus top-level ``licence``, ``label_values``
(label-file value -> vertebra name; default VerSe codes), and the segment rules of ``dicom_segments``
(``segments``, ``vertebra_segment``, ``lesion_segments``).

* Series: ``series_uid`` when the mapping gives one; else the series a SEG/RTSTRUCT references, when it is in
  the study folder; else ``image_io.choose_series`` (CT, not a localizer, axial, uniform; thinnest, then most
  slices). Slices are ordered by position; gantry tilt and a few missing slices are repaired onto a regular grid,
  noted in the case (``image_io.regular_grid``).
* SEG / RTSTRUCT (``dicom_annotations``, on the CT's grid; third-party SEGs whatever their frame order, functional
  groups or encoding): each segment's meaning, the overlap rule and the unmapped list are ``dicom_segments``'.
* Subject: the mapping's ``subject``, else the series' PatientID, else the case name. Split: the mapping's
  ``split`` ("train" default, "test" -> imagesTs).
* Every visible vertebra is annotated (partial ones too); the partial-vertebra policy (partial_vertebrae.py) makes those
  cut by the field of view the ignore label. Lesion masks are carried whenever the case has a lesion file or lesion
  segments.
* Top-level folders of ROOT that no mapping entry names are listed as skipped, so nothing goes unnoticed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import labels

from .common import CaseSkipped, ConversionError, LoadedCase, SkipRecord, SourceCase, normalise_subject
from .dicom_segments import SegmentRules, label_maps

LAYOUT = "ROOT/mapping.json naming each case's DICOM study folder and its label files, SEG or RTSTRUCT"
MAPPING_FILE = "mapping.json"
DEFAULT_LICENCE = "private cohort (see mapping.json)"
_PATH_KEYS = ("study", "vertebrae", "lesions", "segmentation", "rtstruct")


class CohortMapping:
    """A parsed mapping.json; every problem is a ConversionError naming the file and entry."""

    def __init__(self, path: Path):
        self.path = path
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"{path}: unreadable mapping file ({e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
            raise ConversionError(f"{path}: a mapping is a JSON object with a 'cases' list")
        self.licence = str(data.get("licence", DEFAULT_LICENCE))
        self.value_to_code = self._label_values(data.get("label_values"))
        self.rules = SegmentRules(data, str(path))
        self.cases = []
        for i, entry in enumerate(data["cases"]):
            if not isinstance(entry, dict) or not entry.get("case") or not entry.get("study"):
                raise ConversionError(f"{path}: cases[{i}] needs at least 'case' and 'study'")
            if entry.get("split", "train") not in ("train", "test"):
                raise ConversionError(f"{path}: cases[{i}] split must be 'train' or 'test'")
            if not any(entry.get(k) for k in ("vertebrae", "segmentation", "rtstruct")):
                raise ConversionError(f"{path}: cases[{i}] ({entry['case']}) names no 'vertebrae', 'segmentation' or "
                                      "'rtstruct'")
            entry = dict(entry, segments=SegmentRules.explicit(entry.get("segments"), f"{path}: cases[{i}]"))
            self.cases.append(entry)

    def _label_values(self, values) -> Dict[int, int]:
        if values is None:
            return {c: c for c in labels.VERTEBRA_CODES}
        out = {}
        for value, name in dict(values).items():
            try:
                code = labels.code(str(name))
                v = int(value)
            except (KeyError, ValueError):
                raise ConversionError(f"{self.path}: label_values {value!r}: {name!r} is not a vertebra name "
                                      f"(C1-C7, T1-T13, L1-L6)") from None
            if code not in labels.VERTEBRA_CODES:
                raise ConversionError(f"{self.path}: label_values {value!r}: {name!r} is not a vertebra")
            out[v] = code
        return out


def _referenced_series(path: Path) -> Optional[str]:
    """SeriesInstanceUID a SEG or RTSTRUCT refers to (None when it does not say)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        if "ReferencedSeriesSequence" in ds:
            return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
        for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
            for study in ref.get("RTReferencedStudySequence", []):
                for series in study.get("RTReferencedSeriesSequence", []):
                    return str(series.SeriesInstanceUID)
    except Exception:  # a broken reference is not fatal: the documented series rule still applies
        return None
    return None


def _relabel(arr: np.ndarray, value_to_code: Dict[int, int]) -> np.ndarray:
    values = [int(v) for v in np.unique(arr) if v != 0]
    unknown = [v for v in values if v not in value_to_code]
    if unknown:
        raise CaseSkipped(f"vertebra label file holds values {unknown} that label_values does not name; nothing is "
                          "renumbered silently")
    out = np.zeros(arr.shape, dtype=np.uint8)
    for v in values:
        out[arr == v] = value_to_code[v]
    return out


def _annotation_maps(annotation: Path, entry: dict, chosen, image: sitk.Image, mapping: CohortMapping,
                     notes: List[str]):
    """(VerSe-coded vertebra image or None, lesion image or None) from the case's SEG or RTSTRUCT."""
    from vertebraformer_nn.dicom_annotations import read_rtstruct
    from vertebraformer_nn.dicom_annotations.seg_read import SegReader, SegSegment

    if entry.get("segmentation"):
        reader = SegReader(annotation, image, chosen.files)
        segments, mask_of = reader.segments, reader.mask
    else:
        rois = read_rtstruct(annotation, image)
        names = sorted(rois)
        segments = [SegSegment(number=i + 1, label=name) for i, name in enumerate(names)]

        def mask_of(numbers):
            out = np.zeros(image.GetSize()[::-1], dtype=bool)
            for n in numbers:
                out |= sitk.GetArrayViewFromImage(rois[names[n - 1]]) > 0
            return out
    vert, lesion = label_maps(segments, mask_of, image.GetSpacing()[::-1], mapping.rules, entry["segments"], notes)
    if vert is None and not entry.get("vertebrae"):
        raise CaseSkipped(f"no segment of {annotation.name} is a vertebra (segments: "
                          f"{'; '.join(s.describe() for s in segments) or 'none'}); map them in mapping.json segments")

    def as_image(arr):
        if arr is None:
            return None
        out = sitk.GetImageFromArray(arr.astype(np.uint8))
        out.CopyInformation(image)
        return out
    return as_image(vert), as_image(lesion)


def _where(series, root: Path) -> str:
    """A series named by its folder, relative to ROOT."""
    try:
        folder = str(series.folder.relative_to(root))
    except ValueError:
        folder = str(series.folder)
    return folder


def _why_not(series, chosen) -> str:
    if series.slice_spacing and chosen.slice_spacing and series.slice_spacing > chosen.slice_spacing + 1e-6:
        return f"{series.slice_spacing:g} mm slices, thicker than {chosen.slice_spacing:g} mm"
    if series.n_slices < chosen.n_slices:
        return f"{series.n_slices} slices, fewer than {chosen.n_slices}"
    return "not preferred"


def _loader(root: Path, entry: dict, mapping: CohortMapping):
    def load() -> LoadedCase:
        import pydicom

        from vertebraformer_nn import image_io

        notes: List[str] = []
        study = root / entry["study"]
        if not study.is_dir():
            raise CaseSkipped(f"CT missing: study folder {entry['study']} does not exist")
        series = image_io.list_dicom_series(study)
        annotation = root / (entry.get("segmentation") or entry.get("rtstruct") or "")
        uid = entry.get("series_uid")
        if not uid and (entry.get("segmentation") or entry.get("rtstruct")) and annotation.is_file():
            ref = _referenced_series(annotation)
            if ref and any(s.series_uid == ref for s in series):
                uid = ref
                notes.append("series chosen because the annotation references it")
        if uid:
            chosen = next((s for s in series if s.series_uid == uid), None)
            if chosen is None:
                raise CaseSkipped(f"CT missing: no series {uid} in {entry['study']}")
        else:
            chosen = image_io.choose_series(series, source=str(entry["study"]))
        others = [s for s in series if s is not chosen]
        if others:
            notes.append(f"series {_where(chosen, root)} used; ignored: " +
                         "; ".join(f"{_where(s, root)} ({s.reason_rejected or _why_not(s, chosen)})" for s in others))
        image = image_io.read_dicom_series(chosen)
        notes.extend(image_io.read_notes(image))
        try:
            patient_id = str(pydicom.dcmread(str(chosen.files[0]), stop_before_pixels=True).get("PatientID", "") or "")
        except Exception:
            patient_id = ""

        vert = lesion = None
        if entry.get("vertebrae"):
            raw = image_io.read_label(root / entry["vertebrae"])
            vert = sitk.GetImageFromArray(_relabel(sitk.GetArrayViewFromImage(raw), mapping.value_to_code))
            vert.CopyInformation(raw)
        if entry.get("lesions"):
            lesion = image_io.read_label(root / entry["lesions"])
        if entry.get("segmentation") or entry.get("rtstruct"):
            if not annotation.is_file():
                raise CaseSkipped(f"annotation file {annotation.relative_to(root)} does not exist")
            seg_vert, seg_lesion = _annotation_maps(annotation, entry, chosen, image, mapping, notes)
            vert = vert if vert is not None else seg_vert
            lesion = lesion if lesion is not None else seg_lesion
        subject = entry.get("subject") or patient_id or None
        if not entry.get("subject") and not patient_id:
            notes.append("series has no PatientID: the case name is the subject")
        return LoadedCase(image=image, vertebrae=vert, lesions=lesion, source_files=[_where(chosen, root)],
                          subject=normalise_subject(subject) if subject else None, notes=notes)
    return load


def discover(root: Path, mapping: Optional[str] = None) -> Tuple[List[SourceCase], List[SkipRecord]]:
    root = Path(root)
    path = Path(mapping).expanduser() if mapping else root / MAPPING_FILE
    if not path.is_file():
        raise ConversionError(f"no mapping file {path}; the DICOM cohort needs one (see docs/source_layouts.md), "
                              "or pass --mapping PATH")
    m = CohortMapping(path)
    mapping_rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    named_tops = set()
    for entry in m.cases:
        files = [str(entry[k]) for k in _PATH_KEYS if entry.get(k)] + [mapping_rel]
        named_tops |= {Path(str(entry[k])).parts[0] for k in _PATH_KEYS if entry.get(k)}
        missing = [str(entry[k]) for k in ("vertebrae", "lesions", "segmentation", "rtstruct")
                   if entry.get(k) and not (root / str(entry[k])).is_file()]
        name = f"dicom_{entry['case']}"
        if not (root / str(entry["study"])).is_dir():
            skips.append(SkipRecord(name, f"CT missing: study folder {entry['study']} does not exist", files))
            continue
        if missing:
            skips.append(SkipRecord(name, f"annotation file(s) missing: {', '.join(missing)}", files))
            continue
        cases.append(SourceCase(
            case_id=str(entry["case"]), subject=normalise_subject(str(entry.get("subject") or entry["case"])),
            split=entry.get("split", "train"), licence=str(entry.get("licence", m.licence)), source_files=files,
            load=_loader(root, entry, m)))
    for top in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if top.name not in named_tops:
            skips.append(SkipRecord(f"dicom_{top.name}", f"folder {top.name}/ is not named by {path.name}", []))
    return cases, skips
