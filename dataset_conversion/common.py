"""What every source converter shares: the case records, the per-case conversion and its policies.

A source module only *finds* its cases (``SourceCase``: ids, subject, split, licence, a ``load`` that reads
the files); everything that must be the same for every source happens here, in ``convert_case``:

* **Grid check.** Image and masks must share a grid (``image_io.grid_mismatch``). The one fix applied is for a
  tiny origin mismatch (< 0.5 mm and < 0.25 voxel along every axis, same size, spacing and direction): the
  image geometry is copied onto the mask and the case notes say so. Anything else skips the case, with the
  mismatch as the reason.
* **Orientation.** Image and masks are reoriented once, to RAS (``image_io.reorient``, the convention of
  nnU-Net's ``SimpleITKIOWithReorient``), so the array axis that runs head to foot is the same in every case.
* **Labels.** Values must be codes of the source's vocabulary (VerSe codes); unknown values skip the case,
  naming them. Nothing is renumbered: T13 stays 28 and L6 stays 25, and both map to their own consecutive
  training labels (``labels.verse_to_training``).
* **Partially visible vertebrae are ignored, never background** (one policy for every source,
  partial_vertebrae.py): vertebrae cut by the field of view get nnU-Net's ignore label (``labels.IGNORE_LABEL``),
  labelled ones whole, unlabelled ones (VerSe's) through the border slab by the spine; the case record lists them
  (``partial_vertebrae_ignored``, ``ignored_border_slabs``) and their centroids are dropped.
* **Centroids.** From the source's centroid file when it has one ("annotated", kept for the vertebrae left
  in the mask), else estimated from the mask with ``centroids.body_centroids`` ("estimated"). World
  coordinates are LPS mm, so reorientation does not change them.
* **Writing.** CT as int16 HU, vertebra labels as uint8 training labels, lesions as a uint8 binary map, each
  written atomically (``image_io.write_image``); if any file of a case fails, the files already written for
  that case are removed, so a failed case leaves nothing behind.
"""
from __future__ import annotations

import re
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.case_names import sanitise
from vertebraformer_nn.geometry import superior_axis
from vertebraformer_nn.sources import SOURCES  # noqa: F401  (the converters' modules take it from here)

from .partial_vertebrae import ignore_region

#: Raw-dataset subfolders for images, vertebra labels and lesion maps, per split.
SUBFOLDERS = {"train": ("imagesTr", "labelsTr", "lesionsTr"), "test": ("imagesTs", "labelsTs", "lesionsTs")}
FILE_ENDING = ".nii.gz"

#: Largest origin offset fixed by copying the image geometry onto a mask (both limits must hold).
MAX_ORIGIN_FIX_MM = 0.5
MAX_ORIGIN_FIX_VOXELS = 0.25


class ConversionError(Exception):
    """A whole conversion cannot run (missing source folder, dataset conflict, nothing found). Message is for the user."""


class CaseSkipped(Exception):
    """One case cannot be converted; the message is the reason recorded in the report."""


# --- names ----------------------------------------------------------------------------------------------------

def case_name(source: str, case_id: str) -> str:
    return sanitise(f"{source}_{case_id}")


def case_files(case: str, split: str, lesion: bool = True) -> Tuple[str, str, Optional[str]]:
    """Relative paths of a case's image, label and (optionally) lesion files inside the raw dataset."""
    images, labels_dir, lesions = SUBFOLDERS[split]
    return (f"{images}/{case}_0000{FILE_ENDING}", f"{labels_dir}/{case}{FILE_ENDING}",
            f"{lesions}/{case}{FILE_ENDING}" if lesion else None)


# --- records --------------------------------------------------------------------------------------------------

@dataclass
class LoadedCase:
    """What a source's ``load`` returns: images as read (any orientation), masks with VerSe codes."""
    image: sitk.Image
    vertebrae: Optional[sitk.Image] = None
    lesions: Optional[sitk.Image] = None
    #: Annotated centroids from the source's own file, {VerSe code: LPS mm}; None when the source has none.
    centroids_mm: Optional[Mapping[int, Sequence[float]]] = None
    fracture_grades: Dict[int, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: Further facts the source knows (e.g. the DICOM PatientID) that may refine the case record.
    subject: Optional[str] = None
    #: Files found only while reading (e.g. the DICOM series folder chosen), relative to the source root.
    source_files: List[str] = field(default_factory=list)


@dataclass
class SourceCase:
    """One case found in a source, not yet read."""
    case_id: str
    subject: str
    split: str  # "train" | "test"
    licence: str
    source_files: List[str]  # relative to the source root
    load: Optional[Callable[[], LoadedCase]] = None
    #: VerSe codes this source may use in its masks; anything else skips the case.
    allowed_codes: FrozenSet[int] = labels.VERTEBRA_CODES
    notes: List[str] = field(default_factory=list)
    #: Centroid-only annotation (no vertebra mask): recorded, never written to imagesTr.
    centroid_only: bool = False
    centroids_mm: Optional[Mapping[int, Sequence[float]]] = None
    #: Whether the source labels vertebrae cut by the field of view (False for VerSe: see ignore_region).
    labels_partial_vertebrae: bool = True


@dataclass
class CaseRecord:
    """A converted case as the assembler sees it (kept in the source's manifest, then in dataset.json)."""
    case: str
    source: str
    case_id: str
    subject: str
    split: str
    licence: str
    annotations: Dict[str, object]
    centroids_mm: Dict[str, List[float]]
    partial_vertebrae_ignored: List[int]  # labelled vertebrae cut by the field of view (now ignore), head to foot
    source_files: List[str]
    notes: List[str]
    files: List[str]  # relative to the raw dataset folder
    codes: List[int]  # VerSe codes present in the written label map
    fracture_grades: Dict[str, int] = field(default_factory=dict)
    centroid_only: bool = False
    ignored_border_slabs: List[str] = field(default_factory=list)  # ends whose unlabelled slab is ignore

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "CaseRecord":
        if "partial_vertebrae_removed" in d:
            raise ConversionError(f"{d.get('case')}: converted by VertebraFormer-nn 0.1, which set vertebrae cut by "
                                  f"the field of view to background (now: the ignore label); re-convert source "
                                  f"{d.get('source')!r}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def case_info(self) -> dict:
        """The case's entry under ``case_info`` in dataset.json (DESIGN.md section 3)."""
        info = {
            "domain": self.source,
            "subject": self.subject,
            "licence": self.licence,
            "split": self.split,
            "annotations": dict(self.annotations),
            "centroids_mm": dict(self.centroids_mm),
            "partial_vertebrae_ignored": list(self.partial_vertebrae_ignored),
            "ignored_border_slabs": list(self.ignored_border_slabs),
            "source_files": list(self.source_files),
            "notes": list(self.notes),
        }
        if self.fracture_grades:
            info["fracture_grades"] = dict(self.fracture_grades)
        return info


@dataclass
class SkipRecord:
    case: str
    reason: str
    source_files: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


# --- geometry -------------------------------------------------------------------------------------------------

def _safe_origin_fix(image: sitk.Image, mask: sitk.Image) -> Optional[str]:
    """If ``mask`` differs from ``image`` only by a tiny origin offset, describe it; else None."""
    if image.GetSize() != mask.GetSize() or image.GetDimension() != mask.GetDimension():
        return None
    if not np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=1e-4, atol=1e-5):
        return None
    if not np.allclose(image.GetDirection(), mask.GetDirection(), atol=1e-4):
        return None
    offset = np.subtract(mask.GetOrigin(), image.GetOrigin())
    d = np.array(image.GetDirection()).reshape(3, 3)
    in_voxels = np.abs(d.T @ offset) / np.array(image.GetSpacing())  # offset along each image axis, in voxels
    if np.linalg.norm(offset) < MAX_ORIGIN_FIX_MM and np.all(in_voxels < MAX_ORIGIN_FIX_VOXELS):
        return f"{np.linalg.norm(offset):.3f} mm ({in_voxels.max():.3f} voxel)"
    return None


def align_to_image(image: sitk.Image, mask: sitk.Image, what: str, notes: List[str]) -> sitk.Image:
    """The mask on the image's grid: unchanged, fixed for a tiny origin offset (noted), or CaseSkipped."""
    from vertebraformer_nn import image_io

    problem = image_io.grid_mismatch(image, mask)
    if problem is None:
        return mask
    fix = _safe_origin_fix(image, mask)
    if fix is None:
        raise CaseSkipped(f"{what} is not on the CT's grid: {problem}")
    fixed = sitk.Image(mask)
    fixed.CopyInformation(image)
    notes.append(f"{what}: origin differed from the CT's by {fix}; CT geometry copied onto the {what}")
    return fixed


def integer_codes(arr: np.ndarray, what: str) -> np.ndarray:
    """Label array as integers (uint8 when the values allow); float masks (VerSe ships float64) must hold whole numbers."""
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise CaseSkipped(f"{what} holds NaN or infinite values")
        rounded = np.rint(arr)
        if np.any(np.abs(arr - rounded) > 1e-3):
            raise CaseSkipped(f"{what} holds non-integer values; it is not a label map")
        arr = rounded
    if arr.size and 0 <= arr.min() and arr.max() <= 255:
        return arr.astype(np.uint8, copy=False)  # every VerSe code fits; keeps big masks small
    return arr.astype(np.int64, copy=False)


def check_codes(codes: np.ndarray, allowed: FrozenSet[int], what: str) -> List[int]:
    """Sorted VerSe codes present; CaseSkipped naming any value outside ``allowed``."""
    values = [int(v) for v in np.unique(codes) if v != 0]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise CaseSkipped(f"{what} holds label values {unknown} that are not vertebra codes of this source "
                          f"(allowed: {_ranges(sorted(allowed))}); nothing is renumbered silently")
    return values


def _ranges(values: Sequence[int]) -> str:
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def ct_int16(image: sitk.Image, notes: List[str]) -> sitk.Image:
    """The CT as int16 HU; values outside int16 are clipped (noted). Rejects images that are not CT-like."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size == 0:
        raise CaseSkipped("the CT is empty")
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise CaseSkipped("the CT holds NaN or infinite values")
    if hi - lo < 1.0 or (lo >= 0.0 and hi <= 1.0):
        raise CaseSkipped(f"the CT's intensities span [{lo:g}, {hi:g}]: not Hounsfield units")
    if lo < -32768 or hi > 32767:
        notes.append(f"CT values [{lo:g}, {hi:g}] clipped to the int16 range")
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    values = arr if np.issubdtype(arr.dtype, np.integer) else np.rint(arr)
    out = sitk.GetImageFromArray(np.clip(values, -32768, 32767).astype(np.int16))
    out.CopyInformation(image)
    return out


def _from_array(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def _as_list(point) -> List[float]:
    return [round(float(v), 3) for v in point]


# --- one case -------------------------------------------------------------------------------------------------

def convert_case(source: str, sc: SourceCase, dataset_dir: Path) -> CaseRecord:
    """Read, check, reorient and write one case (see the module docstring). Raises CaseSkipped with the reason."""
    from vertebraformer_nn import centroids, image_io

    name = case_name(source, sc.case_id)
    notes = list(sc.notes)
    if sc.centroid_only:
        return CaseRecord(
            case=name, source=source, case_id=sc.case_id, subject=dataset_subject(source, sc.subject), split=sc.split,
            licence=sc.licence, annotations={"vertebra_mask": False, "lesion_mask": False, "centroids": "annotated", "fracture_grades": False},
            centroids_mm={str(c): _as_list(p) for c, p in sorted((sc.centroids_mm or {}).items())},
            partial_vertebrae_ignored=[], source_files=list(sc.source_files), notes=notes, files=[], codes=[],
            centroid_only=True)

    try:
        loaded = sc.load()
    except CaseSkipped:
        raise
    except image_io.ImageReadError as e:
        raise CaseSkipped(str(e)) from None
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise CaseSkipped(f"{type(e).__name__}: {e}") from None
    notes += loaded.notes
    image = loaded.image
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseSkipped(f"the CT must be a 3D single-channel image (got {image.GetDimension()}D with "
                          f"{image.GetNumberOfComponentsPerPixel()} component(s))")
    if loaded.vertebrae is None:
        raise CaseSkipped("no vertebra mask")
    vert = align_to_image(image, loaded.vertebrae, "vertebra mask", notes)
    lesion = align_to_image(image, loaded.lesions, "lesion mask", notes) if loaded.lesions is not None else None

    image = ct_int16(image_io.reorient(image, "RAS"), notes)
    vert = image_io.reorient(vert, "RAS")
    codes_arr = integer_codes(sitk.GetArrayFromImage(vert), "vertebra mask")
    present = check_codes(codes_arr, sc.allowed_codes, "vertebra mask")
    if not present:
        raise CaseSkipped("the vertebra mask holds no vertebra")
    ignore, cut, slabs = ignore_region(codes_arr, superior_axis(image.GetDirection()), image.GetSpacing()[::-1],
                                       sc.labels_partial_vertebrae)
    if cut:
        notes.append("partially visible vertebrae (cut by the field of view) are the ignore label: "
                     + ", ".join(labels.name(c) for c in cut))
    if slabs:
        notes.append("unlabelled border slab(s) by the spine are the ignore label (a vertebra cut there is not "
                     "labelled by this source): " + ", ".join(slabs))
    kept = [c for c in present if c not in cut]
    if not kept:
        notes.append("every labelled vertebra touches the head or foot border: no whole vertebra in the label map")
    codes_arr = np.where(np.isin(codes_arr, cut), 0, codes_arr).astype(np.uint8)
    verse_mask = _from_array(codes_arr, image)
    training_arr = labels.verse_to_training(codes_arr)
    training_arr[ignore] = labels.IGNORE_LABEL
    training = _from_array(training_arr, image)

    lesion_img = None
    if lesion is not None:
        lesion_arr = integer_codes(sitk.GetArrayFromImage(image_io.reorient(lesion, "RAS")), "lesion mask")
        lesion_img = _from_array((lesion_arr > 0).astype(np.uint8), image)

    if loaded.centroids_mm is not None:
        ctd = {int(c): p for c, p in loaded.centroids_mm.items() if int(c) in kept}
        missing = [c for c in kept if c not in ctd]
        dropped = sorted(int(c) for c in loaded.centroids_mm if int(c) not in kept)
        if missing:
            notes.append("no annotated centroid for " + ", ".join(labels.name(c) for c in labels.sort_anatomically(missing)))
        if dropped:
            notes.append("centroids of vertebrae not in the label map dropped: " + ", ".join(labels.name(c) for c in dropped))
        centroid_kind = "annotated"
    else:
        ctd = centroids.body_centroids(verse_mask) if kept else {}
        centroid_kind = "estimated"

    grades = {str(c): int(g) for c, g in sorted(loaded.fracture_grades.items()) if int(c) in kept}
    subject = dataset_subject(source, loaded.subject or sc.subject)
    img_rel, lab_rel, les_rel = case_files(name, sc.split, lesion_img is not None)
    written: List[Path] = []
    try:
        for rel, img in ((img_rel, image), (lab_rel, training), (les_rel, lesion_img)):
            if rel is None:
                continue
            path = dataset_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            image_io.write_image(img, path)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return CaseRecord(
        case=name, source=source, case_id=sc.case_id, subject=subject, split=sc.split, licence=sc.licence,
        annotations={"vertebra_mask": True, "lesion_mask": lesion_img is not None,
                     "centroids": centroid_kind if ctd else False, "fracture_grades": bool(grades)},
        centroids_mm={str(c): _as_list(ctd[c]) for c in labels.sort_anatomically(ctd)},
        partial_vertebrae_ignored=cut, source_files=list(sc.source_files) + list(loaded.source_files), notes=notes,
        files=[r for r in (img_rel, lab_rel, les_rel) if r], codes=kept, fracture_grades=grades,
        ignored_border_slabs=slabs)


def convert_all(source: str, cases: Sequence[SourceCase], dataset_dir: Path,
                progress: Optional[Callable[[str], None]] = None) -> Tuple[List[CaseRecord], List[SkipRecord]]:
    """Convert every case; a failing case becomes a SkipRecord and the others go on."""
    records: List[CaseRecord] = []
    skips: List[SkipRecord] = []
    seen: Dict[str, str] = {}
    for sc in cases:
        name = case_name(source, sc.case_id)
        if name in seen:
            skips.append(SkipRecord(name, f"case name collides with case {seen[name]!r} of the same source",
                                    list(sc.source_files)))
            continue
        seen[name] = sc.case_id
        try:
            records.append(convert_case(source, sc, dataset_dir))
            if progress:
                progress(f"{name}: converted")
        except CaseSkipped as e:
            skips.append(SkipRecord(name, str(e), list(sc.source_files)))
            if progress:
                progress(f"{name}: skipped ({e})")
        except Exception as e:  # an unexpected failure of one case must not stop the others
            last = traceback.extract_tb(e.__traceback__)[-1]
            skips.append(SkipRecord(name, f"failed: {type(e).__name__}: {e} (at {Path(last.filename).name}:{last.lineno})",
                                    list(sc.source_files)))
            if progress:
                progress(f"{name}: failed ({e})")
    return records, skips


def normalise_subject(subject: str) -> str:
    """'sub-verse506' -> 'verse506' (BIDS prefix dropped)."""
    s = str(subject).strip()
    if s.lower().startswith("sub-"):
        s = s[4:]
    return s


_VERSE_SUBJECT = re.compile(r"^(verse\d+)(?:_.*)?$", re.IGNORECASE)


def dataset_subject(source: str, subject: str) -> str:
    """The subject id used for de-duplication and folds.

    VerSe ids are global: VerSe scans are redistributed inside other sources (CTSpine1K re-annotated them as
    ``verse506_CT-iso``), so ``verse506`` names the same person wherever it appears. Any other id is unique only
    inside its source (``patient001`` of two cohorts is two people), so it is qualified: ``dicom:patient001``.
    """
    s = normalise_subject(subject)
    m = _VERSE_SUBJECT.match(s)
    return m.group(1).lower() if m else f"{source}:{s}"
