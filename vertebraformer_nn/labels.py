"""The one label vocabulary of the project (DESIGN.md section 2).

VerSe codes are what every user-facing file carries: 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6,
26 sacrum, 27 coccyx (in the vocabulary, never labelled by VerSe), 28 T13.

nnU-Net needs consecutive labels, so raw datasets use the *training* labels: background 0, then every
vertebra in anatomical order (C1 ... T12, T13, L1 ... L5, L6) as 1..26. The mapping between the two
is written into dataset.json (``verse_codes``) and read back from there by the predictor.

Training label maps (labelsTr, labelsTs) also hold nnU-Net's ignore label, :data:`IGNORE_LABEL` (27, the last
entry of dataset.json's ``labels``): the voxels of vertebrae cut by the field of view (the converters' policy,
dataset_conversion/common.py). It is no structure: ``verse_codes`` has no entry for it (VerSe's 27 is the
coccyx), a network has no channel for it, no prediction holds it.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping

import numpy as np

CERVICAL = [f"C{i}" for i in range(1, 8)]
THORACIC = [f"T{i}" for i in range(1, 13)]
LUMBAR = [f"L{i}" for i in range(1, 6)]

#: VerSe code of each structure name.
VERSE_CODE: Dict[str, int] = {
    **{n: i + 1 for i, n in enumerate(CERVICAL)},
    **{n: i + 8 for i, n in enumerate(THORACIC)},
    **{n: i + 20 for i, n in enumerate(LUMBAR)},
    "L6": 25,
    "S": 26,
    "Co": 27,
    "T13": 28,
}
#: Name of each VerSe code.
VERSE_NAME: Dict[int, str] = {c: n for n, c in VERSE_CODE.items()}

#: Vertebrae in head-to-foot order, transitional T13 and L6 in their places; the numbering decoder's order.
ANATOMICAL_ORDER: List[str] = CERVICAL + THORACIC + ["T13"] + LUMBAR + ["L6"]
#: The same order as VerSe codes.
ANATOMICAL_ORDER_CODES: List[int] = [VERSE_CODE[n] for n in ANATOMICAL_ORDER]
#: Codes that only transitional anatomy carries.
TRANSITIONAL_CODES = (VERSE_CODE["T13"], VERSE_CODE["L6"])
#: Every code a vertebra mask may carry (sacrum and coccyx are not vertebra-mask labels).
VERTEBRA_CODES = frozenset(ANATOMICAL_ORDER_CODES)

#: Training (consecutive) label of each VerSe vertebra code, background 0.
TRAINING_LABEL_OF_CODE: Dict[int, int] = {c: i + 1 for i, c in enumerate(ANATOMICAL_ORDER_CODES)}
#: VerSe code of each training label, background 0.
CODE_OF_TRAINING_LABEL: Dict[int, int] = {0: 0, **{t: c for c, t in TRAINING_LABEL_OF_CODE.items()}}
NUM_TRAINING_LABELS = len(CODE_OF_TRAINING_LABEL)  # background + 26 vertebrae
#: nnU-Net's ignore label in training label maps (the highest value, after every class): voxels of a vertebra cut
#: by the field of view, which a patch cannot tell from a whole one; no loss is computed on them, and evaluation
#: applies the same border rule to predictions. Never a VerSe code and never in a predicted map.
IGNORE_LABEL = NUM_TRAINING_LABELS  # 27


def name(code: int) -> str:
    """'T12' for 19; raises KeyError naming the code when it is not a VerSe code."""
    try:
        return VERSE_NAME[int(code)]
    except KeyError:
        raise KeyError(f"{code} is not a VerSe label code") from None


def code(structure: str) -> int:
    """19 for 'T12'."""
    try:
        return VERSE_CODE[structure]
    except KeyError:
        raise KeyError(f"{structure!r} is not a vertebra name of the VerSe vocabulary") from None


def region(code_: int) -> str:
    """'cervical', 'thoracic', 'lumbar', 'sacral' or 'coccygeal' for a VerSe code."""
    n = name(code_)
    return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}.get(n[0] if n != "Co" else "", "coccygeal")


def dataset_json_labels() -> Dict[str, int]:
    """The ``labels`` entry of dataset.json: structure name -> consecutive training label, then ``"ignore"``:
    :data:`IGNORE_LABEL` (nnU-Net requires the ignore label to be the highest value)."""
    return {"background": 0, **{VERSE_NAME[c]: t for c, t in TRAINING_LABEL_OF_CODE.items()}, "ignore": IGNORE_LABEL}


def dataset_json_verse_codes() -> Dict[str, int]:
    """The ``verse_codes`` entry of dataset.json: training label (as a string key) -> VerSe code. The ignore label
    has none (it is no structure)."""
    return {str(t): c for t, c in CODE_OF_TRAINING_LABEL.items()}


def _lut(mapping: Mapping[int, int], size: int) -> np.ndarray:
    lut = np.full(size, -1, dtype=np.int16)
    for k, v in mapping.items():
        lut[k] = v
    return lut


_VERSE_TO_TRAINING = _lut({0: 0, **TRAINING_LABEL_OF_CODE}, 29)
_TRAINING_TO_VERSE = _lut(CODE_OF_TRAINING_LABEL, NUM_TRAINING_LABELS)


def _apply_lut(arr: np.ndarray, lut: np.ndarray, what: str) -> np.ndarray:
    values = np.unique(arr)
    bad = [int(v) for v in values if v < 0 or v >= len(lut) or lut[int(v)] < 0]
    if bad:
        raise ValueError(f"label values {bad} are not {what}")
    return lut[arr.astype(np.int64)].astype(np.uint8)


def verse_to_training(label_map: np.ndarray) -> np.ndarray:
    """VerSe-coded vertebra mask -> consecutive training labels (uint8). Unknown codes raise, naming them."""
    return _apply_lut(np.asarray(label_map), _VERSE_TO_TRAINING, "VerSe vertebra codes (0, 1-25, 28)")


def training_to_verse(label_map: np.ndarray) -> np.ndarray:
    """Consecutive training labels -> VerSe codes (uint8). The ignore label raises (it has no code)."""
    return _apply_lut(np.asarray(label_map), _TRAINING_TO_VERSE, f"training labels (0-{NUM_TRAINING_LABELS - 1}; "
                      f"the ignore label {IGNORE_LABEL} has no VerSe code)")


# --- other tools' conventions -------------------------------------------------------------------------------

#: TotalSegmentator v2 ``total`` task: 25 sacrum, 26 S1, 27 L5 ... 31 L1, 32 T12 ... 43 T1, 44 C7 ... 50 C1
#: (reversed numbering: VerSe = 51 - TS, checked on a real TotalSegmentator prediction). No T13 or L6 exists
#: there (it counts up from the sacrum).
TOTALSEG_TO_VERSE: Dict[int, int] = {
    25: VERSE_CODE["S"],
    26: VERSE_CODE["S"],
    **{ts: 51 - ts for ts in range(27, 51)},
}

#: CTSpine1K uses VerSe's codes 1-25 (L6 = 25) and has no T13.
CTSPINE1K_CODES = frozenset(range(1, 26))


def translate(label_map: np.ndarray, mapping: Mapping[int, int], keep_unmapped: bool = False) -> np.ndarray:
    """Relabel ``label_map`` through ``mapping`` (e.g. TOTALSEG_TO_VERSE). Values the mapping does not name
    become background, or keep their value with ``keep_unmapped``."""
    arr = np.asarray(label_map).astype(np.int64)
    out = np.zeros(arr.shape, dtype=np.uint8)
    for src, dst in mapping.items():
        out[arr == src] = dst
    if keep_unmapped:
        other = (arr != 0) & ~np.isin(arr, list(mapping))
        out[other] = arr[other]
    return out


def sort_anatomically(codes: Iterable[int]) -> List[int]:
    """VerSe vertebra codes sorted head to foot (T13 between T12 and L1, L6 after L5)."""
    order = {c: i for i, c in enumerate(ANATOMICAL_ORDER_CODES)}
    return sorted((int(c) for c in codes), key=lambda c: order[c])


def sort_head_to_foot(codes: Iterable[int]) -> List[int]:
    """Vertebra codes head to foot, then any other codes (sacrum, coccyx, unknown) in numeric order."""
    codes = [int(c) for c in codes]
    return sort_anatomically(c for c in codes if c in VERTEBRA_CODES) + sorted(c for c in codes if c not in VERTEBRA_CODES)
