"""DICOM cohort: what each SEG segment or RTSTRUCT ROI means, and how overlapping segments become two label maps.

**Meaning** (:class:`SegmentRules`, from ``mapping.json``), first that applies:

1. ``segments`` (top level, overridden per case): segment number (``"3"``) or label text (case-insensitive) ->
   a vertebra name (``"L1"``), ``"lesion"`` or ``"ignore"``;
2. the coded meaning (SEG only): a segmented property type that is a vertebra (SNOMED CT, e.g. 66794005 "L1
   vertebra"; or the generic "Vertebra" with that vertebra as anatomic region) or a lesion (lesion, neoplasm,
   metastasis: ``coded_concepts.LESION_TYPES``);
3. the label text: ``vertebra_segment`` (default ``"{name} vertebra"``), or any of the usual variants
   ("L1 vertebra", "Vertebra L1", "vertebrae_L1", "L1", "lumbar vertebra 1"; never "L1 vertebral body"), or a
   ``lesion_segments`` pattern.

A label and a code that name two different vertebrae skip the case (never guessed). A segment that maps to
nothing is listed in the case notes, never dropped silently.

**Overlaps.** A lesion inside a vertebra is normal (Spine-Mets-CT-SEG labels metastases so): the vertebra map keeps
the vertebra, the lesion map the lesion. Segments of the same vertebra are merged. Two vertebrae overlapping is a
conflict, resolved by a stated rule and listed: each voxel claimed by both goes to the vertebra whose segment's
centroid is nearer (the overlap is split where the two meet); an overlap larger than :data:`MAX_OVERLAP_FRACTION`
of the smaller segment skips the case (a vertebra drawn twice under two names is a labelling error).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vertebraformer_nn import labels
from vertebraformer_nn.dicom_annotations.coded_concepts import GENERIC_VERTEBRA, is_lesion_code, vertebra_of
from vertebraformer_nn.dicom_annotations.seg_read import SegSegment

from .common import CaseSkipped, ConversionError

MAX_OVERLAP_FRACTION = 0.10
DEFAULT_VERTEBRA_SEGMENT = "{name} vertebra"
DEFAULT_LESION_SEGMENTS = ["*lesion*", "*metasta*", "*lytic*", "*blastic*"]
_VERTEBRA_WORDS = {"vertebra", "vertebrae"}
_REGIONS = {"cervical": "C", "thoracic": "T", "lumbar": "L"}
_LEVEL = re.compile(r"^(c|t|th|l)(\d{1,2})$")


@dataclass(frozen=True)
class Meaning:
    kind: str  # "vertebra" | "lesion" | "ignore" | "unmapped"
    code: Optional[int] = None  # VerSe code of a vertebra
    how: str = ""  # why: for the notes


def vertebra_of_text(text: str) -> Optional[int]:
    """The VerSe code a label names ("L1 vertebra", "Vertebra L1", "vertebrae_L1", "L1", "Th12", "lumbar
    vertebra 1"), else None; any other word ("body", "lesion") makes it something else than the whole vertebra."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t not in _VERTEBRA_WORDS]
    name = None
    if len(tokens) == 1 and _LEVEL.match(tokens[0]):
        letter, number = _LEVEL.match(tokens[0]).groups()
        name = f"{'T' if letter == 'th' else letter.upper()}{int(number)}"
    elif len(tokens) == 2 and tokens[0] in _REGIONS and tokens[1].isdigit():
        name = f"{_REGIONS[tokens[0]]}{int(tokens[1])}"
    if name in labels.VERSE_CODE and labels.VERSE_CODE[name] in labels.VERTEBRA_CODES:
        return labels.VERSE_CODE[name]
    return None


class SegmentRules:
    """The meaning rules of one mapping.json (module docstring); ``where`` names it in errors."""

    def __init__(self, data: Mapping, where: str):
        self.where = where
        pattern = str(data.get("vertebra_segment", DEFAULT_VERTEBRA_SEGMENT))
        if "{name}" not in pattern:
            raise ConversionError(f"{where}: vertebra_segment {pattern!r} must contain {{name}}")
        head, tail = pattern.split("{name}", 1)
        self.vertebra_segment = re.compile(re.escape(head) + r"(?P<name>.+?)" + re.escape(tail), re.IGNORECASE)
        self.lesion_patterns = [str(p).lower() for p in data.get("lesion_segments", DEFAULT_LESION_SEGMENTS)]
        self.segments = self.explicit(data.get("segments"), where)

    @staticmethod
    def explicit(values, where: str) -> Dict[str, Meaning]:
        """mapping.json ``segments``: key (number or label text, lower case) -> Meaning."""
        out = {}
        for key, value in dict(values or {}).items():
            text = str(value).strip()
            if text.lower() in ("lesion", "ignore"):
                out[str(key).strip().lower()] = Meaning(text.lower(), None, f"mapping.json segments {key!r}")
            elif text in labels.VERSE_CODE and labels.VERSE_CODE[text] in labels.VERTEBRA_CODES:
                out[str(key).strip().lower()] = Meaning("vertebra", labels.VERSE_CODE[text],
                                                        f"mapping.json segments {key!r}")
            else:
                raise ConversionError(f"{where}: segments {key!r}: {text!r} is neither a vertebra name (C1-C7, "
                                      "T1-T13, L1-L6) nor 'lesion' or 'ignore'")
        return out

    def classify(self, segment: SegSegment, overrides: Mapping[str, Meaning] = {}) -> Meaning:
        """The meaning of one segment (module docstring); raises CaseSkipped when label and code disagree."""
        for table in (overrides, self.segments):
            for key in (str(segment.number), segment.label.strip().lower()):
                if key in table:
                    return table[key]
        coded = vertebra_of(segment.property_type)
        if coded is None and segment.property_type is not None and segment.property_type == GENERIC_VERTEBRA:
            regions = {vertebra_of(c) for c in segment.anatomic_regions} - {None}
            coded = regions.pop() if len(regions) == 1 else None
        m = self.vertebra_segment.fullmatch(segment.label.strip())
        from_text = vertebra_of_text(m.group("name")) if m else None
        from_text = from_text if from_text is not None else vertebra_of_text(segment.label)
        if coded is not None and from_text is not None and coded != from_text:
            raise CaseSkipped(f"{segment.describe()} is labelled {labels.name(from_text)} but coded "
                              f"{labels.name(coded)}; say which is right in mapping.json segments")
        if coded is not None:
            return Meaning("vertebra", coded, f"coded {segment.property_type.value}")
        if from_text is not None:
            return Meaning("vertebra", from_text, "label")
        if is_lesion_code(segment.property_type):
            return Meaning("lesion", None, f"coded {segment.property_type.value}")
        if any(fnmatch.fnmatchcase(segment.label.lower(), p) for p in self.lesion_patterns):
            return Meaning("lesion", None, "label")
        return Meaning("unmapped")


def label_maps(segments: Sequence[SegSegment], mask_of: Callable[[List[int]], np.ndarray], spacing_zyx,
               rules: SegmentRules, overrides: Mapping[str, Meaning], notes: List[str]
               ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(VerSe-coded vertebra map or None, binary lesion map or None), both (z, y, x), from the segments' masks
    (``mask_of(numbers)``: the union of those segments, boolean); notes get what was merged, split and left out."""
    meanings = [(s, rules.classify(s, overrides)) for s in segments]
    unmapped = [s.describe() for s, m in meanings if m.kind == "unmapped"]
    ignored = [s.describe() for s, m in meanings if m.kind == "ignore"]
    if unmapped:
        notes.append("segments not mapped to a vertebra or a lesion (left out; map them in mapping.json segments): "
                     + "; ".join(unmapped))
    if ignored:
        notes.append("segments ignored as mapping.json says: " + "; ".join(ignored))
    by_code: Dict[int, List[int]] = {}
    for s, m in meanings:
        if m.kind == "vertebra":
            by_code.setdefault(m.code, []).append(s.number)
    for code, numbers in by_code.items():
        if len(numbers) > 1:
            notes.append(f"segments {', '.join(map(str, numbers))} are all {labels.name(code)}: merged")
    lesion_numbers = [s.number for s, m in meanings if m.kind == "lesion"]
    lesion = mask_of(lesion_numbers).astype(np.uint8) if lesion_numbers else None
    vert = _vertebra_map(by_code, mask_of, np.asarray(spacing_zyx, float), notes) if by_code else None
    return vert, lesion


def _vertebra_map(by_code: Mapping[int, List[int]], mask_of, spacing: np.ndarray, notes: List[str]) -> np.ndarray:
    """Vertebrae one at a time into one map; voxels two claim go to the nearer centroid (module docstring)."""
    vert, centroids, sizes, overlaps = None, {}, {}, {}
    for code in labels.sort_anatomically(by_code):
        mask = mask_of(by_code[code])
        if vert is None:
            vert = np.zeros(mask.shape, dtype=np.uint8)
        points = np.argwhere(mask)
        sizes[code] = len(points)
        if not len(points):
            notes.append(f"{labels.name(code)}: empty segment")
            continue
        centroids[code] = points.mean(axis=0) * spacing
        contested = mask & (vert != 0)
        vert[mask & (vert == 0)] = code
        if contested.any():
            where = np.argwhere(contested)
            owners = vert[contested]
            mine = np.linalg.norm(where * spacing - centroids[code], axis=1)
            theirs = np.linalg.norm(where * spacing - np.array([centroids[o] for o in owners]), axis=1)
            take = mine < theirs
            vert[tuple(where[take].T)] = code
            for other in np.unique(owners):
                overlaps[(int(other), code)] = int(np.count_nonzero(owners == other))
    for (a, b), n in overlaps.items():
        fraction = n / max(1, min(sizes[a], sizes[b]))
        pair = f"{labels.name(a)} and {labels.name(b)}"
        if fraction > MAX_OVERLAP_FRACTION:
            raise CaseSkipped(f"vertebra segments {pair} overlap in {n} voxels ({100 * fraction:.1f} % of the "
                              f"smaller, more than {100 * MAX_OVERLAP_FRACTION:g} %): one vertebra drawn twice or "
                              "mislabelled? Say which in mapping.json segments")
        notes.append(f"vertebra segments {pair} overlap in {n} voxels ({100 * fraction:.2f} % of the smaller): "
                     "each voxel given to the vertebra with the nearer centroid")
    return vert

