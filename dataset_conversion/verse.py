"""VerSe 2019/2020 (docs/source_layouts.md, "VerSe"): finds the cases; common.py converts them.

Subject-based release::

    ROOT/dataset-verse20training/rawdata/sub-verse506/sub-verse506_ct.nii.gz
    ROOT/dataset-verse20training/derivatives/sub-verse506/sub-verse506_seg-vert_msk.nii.gz
    ROOT/dataset-verse20training/derivatives/sub-verse506/sub-verse506_seg-subreg_ctd.json
    ROOT/fracture_grades.csv           optional: subject,label,grade,type

* A folder whose name starts with ``dataset-verse`` is a release; its suffix gives the split: ``training``
  (``01_training``) -> train; ``validation`` / ``test`` (``02_validation``, ``03_test``) -> the official test
  split (imagesTs). ROOT may also be a release folder itself.
* The case id is the file-name prefix before ``_ct`` (``sub-verse506_split-verse606``); the subject is the
  ``sub-`` entity without its prefix (``verse506``), so all series of one subject share it.
* Licence CC BY-SA 4.0, except the ``sub-gl*`` scans: CC BY-NC-ND 4.0.
* Centroids: the ``*_ctd.json`` file (voxel indices of the image reoriented to its ``direction`` codes, read by
  ``centroids.read_verse_ctd``) -> "annotated". A missing or unreadable file -> estimated from the mask (noted).
* Fracture grades (Genant 0-3) per vertebra from ``fracture_grades.csv`` (subject with or without ``sub-``,
  label as VerSe code or name); they are per-vertebra facts, never lesion masks. VerSe annotates no lesions.
* Partially visible vertebrae are not labelled in VerSe: its cases are converted with
  ``labels_partial_vertebrae=False`` (partial_vertebrae.py's border-slab rule makes the place of a cut vertebra
  ignore).
* Older MICCAI-challenge naming (``verse004.nii.gz`` + ``verse004_seg.nii.gz`` in one folder, VerSe'20's
  ``verse000_CT-iso.nii.gz`` + ``..._seg.nii.gz``) is read too. Its centroid files use release-specific
  frames (anchors.md 2.2), so for those cases centroids are estimated from the mask.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from vertebraformer_nn import labels

from .common import ConversionError, LoadedCase, SkipRecord, SourceCase, normalise_subject

LAYOUT = ("dataset-verse*/rawdata/sub-*/sub-*_ct.nii.gz with dataset-verse*/derivatives/sub-*/sub-*_seg-vert_msk.nii.gz "
          "(and *_ctd.json), or the MICCAI naming <id>.nii.gz + <id>_seg.nii.gz")
LICENCE = "CC BY-SA 4.0"
LICENCE_GL = "CC BY-NC-ND 4.0"
GRADES_FILE = "fracture_grades.csv"

_NII = (".nii.gz", ".nii")


def _strip_nii(name: str) -> Optional[str]:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return None


def release_split(folder_name: str) -> Tuple[str, Optional[str]]:
    """('train'|'test', note) from a release folder name such as dataset-verse20validation or dataset-03_test."""
    suffix = folder_name.lower()
    if "training" in suffix:
        return "train", None
    if "validation" in suffix or "test" in suffix:
        return "test", None
    return "train", f"release folder {folder_name!r} names no split; treated as training"


def entities(prefix: str) -> Dict[str, str]:
    """BIDS-like entities of a file-name prefix: 'sub-verse506_split-verse606' -> {'sub': 'verse506', 'split': ...}."""
    out = {}
    for part in prefix.split("_"):
        key, sep, value = part.partition("-")
        if sep:
            out[key] = value
    return out


def read_fracture_grades(path: Path) -> Dict[str, Dict[int, int]]:
    """{subject: {VerSe code: Genant grade}} from the optional fracture table; a malformed row is a ConversionError."""
    grades: Dict[str, Dict[int, int]] = {}
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConversionError(f"{path}: unreadable fracture table ({e})") from None
    for n, row in enumerate(rows, start=2):
        try:
            subject = normalise_subject(row["subject"])
            raw = row["label"].strip()
            code = int(raw) if raw.lstrip("-").isdigit() else labels.code(raw)
            labels.name(code)
            grade = int(float(row["grade"]))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ConversionError(f"{path} line {n}: expected columns subject,label,grade[,type] ({e})") from None
        if not 0 <= grade <= 3:
            raise ConversionError(f"{path} line {n}: Genant grade {grade} outside 0-3")
        grades.setdefault(subject, {})[code] = grade
    return grades


def _release_folders(root: Path) -> List[Path]:
    if root.name.lower().startswith("dataset-verse"):
        return [root]
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower().startswith("dataset-verse")]
    if not found:  # one more level, e.g. ROOT/verse20/dataset-verse20training
        found = [q for p in sorted(root.iterdir()) if p.is_dir()
                 for q in sorted(p.iterdir()) if q.is_dir() and q.name.lower().startswith("dataset-verse")]
    return found


def _loader(ct: Path, mask: Path, ctd: Optional[Path], grades: Dict[int, int]):
    def load() -> LoadedCase:
        from vertebraformer_nn import centroids, image_io

        image = image_io.read_image(ct)
        vert = image_io.read_label(mask)
        notes: List[str] = []
        points = None
        if ctd is not None:
            try:
                points = centroids.read_verse_ctd(ctd, image)
            except (ValueError, KeyError) as e:
                notes.append(f"centroid file not used ({e}); centroids estimated from the mask")
        else:
            notes.append("no centroid file; centroids estimated from the mask")
        return LoadedCase(image=image, vertebrae=vert, centroids_mm=points, fracture_grades=dict(grades), notes=notes)
    return load


def _licence(subject: str) -> str:
    return LICENCE_GL if subject.lower().startswith("gl") else LICENCE


def _subject_release(root: Path, release: Path, grades: Dict[str, Dict[int, int]], grades_rel: Optional[str]):
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    split, split_note = release_split(release.name)
    raw, deriv = release / "rawdata", release / "derivatives"
    cts = {}
    for ct in sorted(raw.rglob("*_ct.nii*")) if raw.is_dir() else []:
        prefix = _strip_nii(ct.name)
        if prefix is not None and not ct.name.startswith("."):
            cts[prefix[: -len("_ct")]] = ct
    masks = {}
    for m in sorted(deriv.rglob("*_seg-vert_msk.nii*")) if deriv.is_dir() else []:
        prefix = _strip_nii(m.name)
        if prefix is not None and not m.name.startswith("."):
            masks[prefix[: -len("_seg-vert_msk")]] = m
    rel = lambda p: str(p.relative_to(root))  # noqa: E731
    for prefix in sorted(set(cts) | set(masks)):
        ent = entities(prefix)
        subject = normalise_subject(ent.get("sub", prefix))
        if prefix not in cts:
            skips.append(SkipRecord(f"verse_{prefix}", f"CT missing: no {prefix}_ct.nii.gz under {rel(raw) if raw.is_dir() else raw}",
                                    [rel(masks[prefix])]))
            continue
        if prefix not in masks:
            skips.append(SkipRecord(f"verse_{prefix}", f"no vertebra mask {prefix}_seg-vert_msk.nii.gz under "
                                    f"{rel(deriv) if deriv.is_dir() else deriv}", [rel(cts[prefix])]))
            continue
        ct, mask = cts[prefix], masks[prefix]
        ctds = sorted(p for p in mask.parent.glob(f"{prefix}_*ctd.json") if not p.name.startswith("."))
        ctd = ctds[0] if ctds else None
        sub_grades = grades.get(subject, {})
        files = [rel(ct), rel(mask)] + ([rel(ctd)] if ctd else []) + ([grades_rel] if sub_grades and grades_rel else [])
        notes = [split_note] if split_note else []
        if len(ctds) > 1:
            notes.append(f"several centroid files; used {ctd.name}")
        cases.append(SourceCase(case_id=prefix, subject=subject, split=split, licence=_licence(subject),
                                source_files=files, load=_loader(ct, mask, ctd, sub_grades), notes=notes,
                                labels_partial_vertebrae=False))
    return cases, skips


def _miccai_folder(root: Path, folder: Path, grades: Dict[str, Dict[int, int]], grades_rel: Optional[str]):
    """Older challenge naming: <stem>.nii.gz with <stem>_seg.nii.gz side by side."""
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    split, split_note = release_split(folder.name)
    if split_note:  # a folder named e.g. 'verse19' says nothing; MICCAI folders are 'training', 'validation', 'test'
        split_note = f"folder {folder.name!r} names no split; treated as training"
    for seg in sorted(folder.glob("*_seg.nii*")):
        stem = _strip_nii(seg.name)[: -len("_seg")]
        ct = next((folder / f"{stem}{ext}" for ext in _NII if (folder / f"{stem}{ext}").is_file()), None)
        rel = lambda p: str(p.relative_to(root))  # noqa: E731
        subject = normalise_subject(re.split(r"[_]", stem)[0])
        if ct is None:
            skips.append(SkipRecord(f"verse_{stem}", f"CT missing: no {stem}.nii.gz beside {rel(seg)}", [rel(seg)]))
            continue
        sub_grades = grades.get(subject, {})
        notes = ["MICCAI-release naming: centroids estimated from the mask (its centroid files use a release-specific frame)"]
        if split_note:
            notes.append(split_note)
        cases.append(SourceCase(case_id=stem, subject=subject, split=split, licence=_licence(subject),
                                source_files=[rel(ct), rel(seg)] + ([grades_rel] if sub_grades and grades_rel else []),
                                load=_loader(ct, seg, None, sub_grades), notes=notes, labels_partial_vertebrae=False))
    return cases, skips


def discover(root: Path) -> Tuple[List[SourceCase], List[SkipRecord]]:
    root = Path(root)
    grades_path = next((p for p in (root / GRADES_FILE, root.parent / GRADES_FILE) if p.is_file()), None)
    grades = read_fracture_grades(grades_path) if grades_path else {}
    grades_rel = (str(grades_path.relative_to(root)) if grades_path and grades_path.parent == root
                  else (str(grades_path) if grades_path else None))
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    releases = _release_folders(root)
    for release in releases:
        c, s = _subject_release(root, release, grades, grades_rel)
        cases += c
        skips += s
    if not releases:
        for folder in [root] + [p for p in sorted(root.iterdir()) if p.is_dir()]:
            c, s = _miccai_folder(root, folder, grades, grades_rel)
            cases += c
            skips += s
    for sc in cases:
        sc.allowed_codes = labels.VERTEBRA_CODES
    return cases, skips
