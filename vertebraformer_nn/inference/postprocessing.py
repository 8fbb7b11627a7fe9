"""Every tuned constant of prediction, in one place: the numbering's instance and decoder parameters and the lesion
threshold and size (DESIGN.md section 10: nothing that defines a model's output is a constant in code).

:class:`Postprocessing` holds them with their documented defaults: the values chosen on MultiSpine-Sim phantoms
before any model folder had its own. A model folder may carry ``postprocessing.json`` beside ``plans.json`` (as
nnU-Net's ``postprocessing.pkl``/``.json``), written by ``vertebraformer determine-postprocessing``
(``postprocessing_search``) from the model's own cross-validation cases. :func:`resolve` decides what a prediction
uses, each value with where it came from:

1. the defaults of :class:`Postprocessing`;
2. replaced by the model folder's ``postprocessing.json`` (:func:`model_file`; a model installed from nnU-Net's
   zip has it in ``crossval_results_folds_<folds>/``, where ``determine-postprocessing`` also writes it so that
   ``nnUNetv2_export_model_to_zip`` carries it), or by the file named with ``--postprocessing FILE`` (which then
   wins; a value the file lacks keeps its default, and says so);
3. replaced by command-line overrides (``--lesion-threshold``, ``--set NAME=VALUE``).

A missing model file is not an error (the defaults apply, with a note); an unreadable or invalid one is, naming the
file and the problem. Every ``<case>.json`` carries the resolved values, their sources and the notes.

Fields whose metadata holds ``candidates`` are searched by ``determine-postprocessing`` (a few values around the
default each, coordinate-wise; see ``postprocessing_search``); the others are fixed by their reason (anatomy or a
computational guard).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

FILE_NAME = "postprocessing.json"
FORMAT = "vertebraformer-postprocessing"
VERSION = 1
DEFAULT_SOURCE = "default"
OVERRIDE_SOURCE = "command line"


class PostprocessingError(ValueError):
    """A post-processing file or value that cannot be used; the message names it and says why."""


def _searched(default, candidates: Tuple, doc: str):
    return field(default=default, metadata={"candidates": tuple(candidates), "doc": doc})


def _fixed(default, doc: str):
    return field(default=default, metadata={"candidates": (), "doc": doc})


@dataclass(frozen=True)
class Postprocessing:
    """The tuned constants of prediction with their defaults; each field's ``doc`` says why its value."""

    # --- numbering: vertebra instances (instances.py) ---------------------------------------------------------
    level_smoothing_mm: float = _searched(7.0, (4.0, 7.0, 10.0), (
        "A foreground voxel whose level probability is below confident_level takes the level whose probability, "
        "Gaussian-smoothed over the foreground with this sigma (mm), is largest; 0 = the plain argmax. A briefly "
        "trained model's voxel-wise levels are salt and pepper inside a body, and every speck of another level cut "
        "the body into pieces: 19-26 instances where the truth had 5-13 (quick benchmark, 8-minute models). 7 mm, "
        "about a quarter of a vertebra's height, was chosen on the demo's unseen-style cases (id rate 46 -> 58 %; "
        "4 mm: 52 %, 10 mm: 57 %) and gave on the benchmark's fold-0 cases id rate 18 -> 47 % (8-minute model) and "
        "41 -> 78 % (19-minute model)."))
    confident_level: float = _searched(0.9, (0.8, 0.9, 0.97), (
        "Voxels the network gives a level with at least this probability keep it: smoothing a confident prediction "
        "only moves the boundaries between touching vertebrae (on the real verse004 mask, one-hot, 7 mm relabelled "
        "213 of 9517 voxels), while weak models never reach it."))
    level_vote_floor: float = _fixed(0.01, (
        "Computational guard of the level smoothing, not tuned: a voxel votes for a level in its neighbourhood only "
        "with a probability of at least this, so each level is smoothed around the few vertebrae that carry it, not "
        "over the whole spine (on a 1 mm grid, 26 full-spine filters took most of the numbering's time). Votes below "
        "1 % move a neighbourhood's weighted mean by less than 1 % of its weight."))
    min_volume_mm3: float = _searched(500.0, (250.0, 500.0, 1000.0), (
        "Pieces below this volume are fragments: joined to a touching piece, or dropped when isolated. About a "
        "tenth of the smallest vertebra (C1/C3, ~5 ml) and 12 voxels at 3.5 mm: large enough to drop speckle and "
        "rim flips of the argmax, small enough to keep a vertebra cut by the field of view."))
    min_relative_volume: float = _searched(0.1, (0.05, 0.1, 0.2), (
        "Pieces below this fraction of the median instance volume are fragments too (a detached spinous process "
        "tip, a false positive beside the spine): as an instance of its own it would shift the numbering of "
        "everything below it. C1 (~5 ml) is well above a tenth of a thoracolumbar median (~25 ml). Pieces on the "
        "array border are spared: a vertebra cut by the field of view is small and still a level of its own."))
    merge_contact_ratio: float = _searched(1.0, (0.7, 1.0, 1.5), (
        "Two pieces whose contact area exceeds this multiple of the smaller one's volume^(2/3) are one vertebra. "
        "A cut through a vertebra spans its whole cross-section; touching vertebrae meet at most across the body's "
        "endplate. Measured on the real verse004 mask at 3.5 mm: touching neighbours 0.12-0.67, a vertebra cut in "
        "half at mid-height 1.9-2.7 (1.13 for its flattened, Genant grade 3 fractured L1)."))
    max_merged_growth: float = _searched(1.5, (1.3, 1.5, 2.0), (
        "... unless their union would exceed this multiple of the median volume of the 4 nearest instances "
        "(neighbouring vertebrae differ by <~20 %): then one of them already holds part of the next vertebra."))
    max_pieces_before_dust: int = _fixed(2000, (
        "Computational guard, not tuned: more argmax pieces than this means salt-and-pepper output, and specks "
        "below min_volume_mm3 are cleared before the piece graph is built (a whole spine of 26 vertebrae with a few "
        "flipped fragments each stays far below it; the graph of 10^5 pieces would take minutes)."))

    # --- numbering: the joint decoder (decoder.py) -------------------------------------------------------------
    transitional_prior: float = _searched(0.1, (0.03, 0.1, 0.3), (
        "Prior probability of a transitional level (T13, L6): each occurs in roughly 5-10 % of people, so the "
        "level evidence must carry it (about 10:1 against the neighbouring level) before it is chosen."))
    skip_prior: float = _searched(0.1, (0.03, 0.1, 0.3), (
        "Prior probability per skipped (missing) level: vertebrae are rarely missed, even where a gap allows it."))
    gap_log_sigma: float = _fixed(0.25, (
        "Anatomy, not tuned: spread of log(gap ratio / expected ratio); neighbouring inter-vertebral distances "
        "differ by 5-20 % (growth from C to L, centre-of-mass noise at coarse spacing)."))
    skip_tolerance: float = _fixed(0.4, (
        "Anatomy, not tuned: skipping k levels needs a gap of at least (k + 1 - tolerance) typical distances: 1.6 "
        "for one missing vertebra, far outside normal variation, while a missing vertebra gives ~2."))
    max_skip: int = _fixed(3, "At most this many consecutive levels skipped at one place.")
    gap_window: int = _fixed(2, (
        "Typical distance at a gap = median of up to this many gaps on each side (not the gap itself), so the "
        "reference follows the growth of vertebrae from neck to lumbar spine."))

    # --- lesions (lesions.py) -----------------------------------------------------------------------------------
    lesion_threshold: float = _searched(0.5, (0.3, 0.4, 0.5, 0.6, 0.7), (
        "Lesion voxels: lesion probability above this value (the sigmoid's decision boundary)."))
    lesion_min_volume_mm3: float = _searched(30.0, (10.0, 30.0, 100.0), (
        "Smaller lesion components are dropped as noise: about a 4 mm sphere (MultiSpine-Sim lesions have radii "
        "of 5 mm and more)."))

    def __post_init__(self):
        problems = [f"{name} = {getattr(self, name)!r}: {why}" for name, why in _problems(self)]
        if problems:
            raise PostprocessingError("invalid post-processing value(s): " + "; ".join(problems))

    # -------------------------------------------------------------------------------------------- helpers
    @property
    def transitional_log_prior(self) -> float:
        return math.log(self.transitional_prior)

    @property
    def skip_log_prior(self) -> float:
        return math.log(self.skip_prior)

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)




def candidates(name: str) -> Tuple:
    """The values ``determine-postprocessing`` tries for ``name`` (empty: not searched)."""
    return _FIELDS[name].metadata["candidates"]


def documentation(name: str) -> str:
    return _FIELDS[name].metadata["doc"]


def _problems(p: Postprocessing) -> List[Tuple[str, str]]:
    out = []
    for name in ("level_smoothing_mm", "min_volume_mm3", "min_relative_volume"):
        if not getattr(p, name) >= 0:
            out.append((name, "must be >= 0"))
    for name in ("merge_contact_ratio", "max_merged_growth", "gap_log_sigma"):
        if not getattr(p, name) > 0:
            out.append((name, "must be > 0"))
    for name in ("transitional_prior", "skip_prior", "lesion_threshold"):
        if not 0 < getattr(p, name) < 1:
            out.append((name, "must lie in (0, 1)"))
    if not 0 < p.confident_level <= 1:
        out.append(("confident_level", "must lie in (0, 1]"))
    if not 0 <= p.level_vote_floor < 1:
        out.append(("level_vote_floor", "must lie in [0, 1)"))
    if not p.lesion_min_volume_mm3 >= 0:
        out.append(("lesion_min_volume_mm3", "must be >= 0"))
    if not 0 <= p.skip_tolerance < 1:
        out.append(("skip_tolerance", "must lie in [0, 1)"))
    for name in ("max_pieces_before_dust", "max_skip", "gap_window"):
        value = getattr(p, name)
        if not float(value).is_integer() or value < (0 if name == "max_skip" else 1):
            out.append((name, "must be a whole number >= " + ("0" if name == "max_skip" else "1")))
    return out


#: The documented defaults.
DEFAULTS = Postprocessing()
NAMES = tuple(f.name for f in fields(Postprocessing))
#: the fields of each step, in the order of the dataclass: vertebra instances, the decoder, lesions
INSTANCE_NAMES = NAMES[:NAMES.index("max_pieces_before_dust") + 1]
DECODER_NAMES = NAMES[len(INSTANCE_NAMES):NAMES.index("gap_window") + 1]
NUMBERING_NAMES = INSTANCE_NAMES + DECODER_NAMES
LESION_NAMES = NAMES[len(NUMBERING_NAMES):]
_FIELDS = {f.name: f for f in fields(Postprocessing)}


def coerce(name: str, value) -> float:
    """A value for field ``name`` from JSON or the command line, in the field's type; PostprocessingError naming
    the field for anything else."""
    if name not in _FIELDS:
        raise PostprocessingError(f"unknown post-processing parameter {name!r}; known: {', '.join(NAMES)}")
    kind = type(getattr(DEFAULTS, name))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PostprocessingError(f"{name} = {value!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise PostprocessingError(f"{name} = {value!r} must be a whole number")
        return int(number)
    return number


def with_values(base: Postprocessing, values: Mapping[str, object]) -> Postprocessing:
    """``base`` with ``values`` (name -> value, coerced and checked)."""
    return replace(base, **{name: coerce(name, v) for name, v in values.items()})


# ------------------------------------------------------------------------------------------------ file
def read_file(path) -> Dict[str, float]:
    """The ``parameters`` of a ``postprocessing.json`` (only those it names); PostprocessingError naming the file
    when it is not one or holds an unknown or invalid value."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PostprocessingError(f"{path}: not a readable post-processing file ({e})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(
            content.get("parameters"), dict):
        raise PostprocessingError(f"{path}: not a post-processing file (needs \"format\": \"{FORMAT}\" and a "
                                  "\"parameters\" object)")
    if int(content.get("version", 0)) > VERSION:
        raise PostprocessingError(f"{path}: written by a newer version (format version {content['version']})")
    try:
        values = {name: coerce(name, v) for name, v in content["parameters"].items()}
        with_values(DEFAULTS, values)
    except PostprocessingError as e:
        raise PostprocessingError(f"{path}: {e}") from None
    return values


def file_content(parameters: Postprocessing, determined: Optional[dict] = None) -> dict:
    """What ``postprocessing.json`` holds: every parameter, and how they were determined."""
    return {"format": FORMAT, "version": VERSION, "parameters": parameters.to_dict(),
            "determined": determined or {}}


# ------------------------------------------------------------------------------------------------ resolution
@dataclass(frozen=True)
class Resolved:
    """The values a prediction uses, where each came from, and notes for the case reports."""

    values: Postprocessing
    sources: Dict[str, str]
    notes: Tuple[str, ...] = ()

    def report(self) -> dict:
        return {"values": self.values.to_dict(), "sources": dict(self.sources), "notes": list(self.notes)}

    def describe(self) -> str:
        """One line: which values came from where."""
        by_source: Dict[str, List[str]] = {}
        for name, source in self.sources.items():
            if source != DEFAULT_SOURCE:
                by_source.setdefault(source, []).append(name)
        if not by_source:
            return "the documented defaults"
        return "; ".join(f"{', '.join(names)} from {source}" for source, names in by_source.items()) + \
            "; the others default"


def transport_folder(model_folder, folds) -> Path:
    """``crossval_results_folds_<folds>/`` of a model folder: where nnU-Net keeps the post-processing chosen on those
    folds, and what its ``nnUNetv2_export_model_to_zip`` carries (the model folder's own ``postprocessing.json``
    it leaves behind)."""
    return Path(model_folder) / f"crossval_results_folds_{'_'.join(str(f) for f in folds)}"


def _ours(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def model_file(model_folder) -> Tuple[Optional[Path], Optional[str]]:
    """(the post-processing file of a model folder, a note): its ``postprocessing.json``; else, in a model
    installed from nnU-Net's zip, the one of ours in a ``crossval_results_folds_*`` folder (see
    :func:`transport_folder`); else none, with a note."""
    folder = Path(model_folder)
    if (folder / FILE_NAME).is_file():
        return folder / FILE_NAME, None
    carried = [p for p in sorted(folder.glob(f"crossval_results_folds_*/{FILE_NAME}")) if _ours(p)]
    if len(carried) == 1:
        return carried[0], None
    if carried:
        return None, (f"no {FILE_NAME} in the model folder {folder}, and several in its crossval_results_folds_* "
                      f"folders: the documented defaults apply (name one with --postprocessing FILE)")
    return None, (f"no {FILE_NAME} in the model folder {folder}: the documented defaults apply "
                  "(vertebraformer determine-postprocessing chooses the model's own)")


def resolve(model_folder=None, file=None, overrides: Optional[Mapping[str, object]] = None) -> Resolved:
    """What a prediction uses (module docstring): defaults <- the model folder's ``postprocessing.json`` or
    ``file`` <- ``overrides``. Raises PostprocessingError for a named file that is missing, or any invalid file
    or value."""
    sources = {name: DEFAULT_SOURCE for name in NAMES}
    notes: List[str] = []
    values: Dict[str, object] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise PostprocessingError(f"{path}: no such post-processing file")
    elif model_folder is not None:
        path, note = model_file(model_folder)
        notes += [note] if note else []
    else:
        path = None
    if path is not None:
        values.update(read_file(path))
        sources.update({name: str(path) for name in values})
        lacking = [n for n in NAMES if n not in values]
        if lacking:
            notes.append(f"{path} does not set {', '.join(lacking)}: defaults")
    for name, value in (overrides or {}).items():
        values[name] = coerce(name, value)
        sources[name] = OVERRIDE_SOURCE
    return Resolved(with_values(DEFAULTS, values), sources, tuple(notes))


def parse_assignments(items) -> Dict[str, float]:
    """``["name=value", ...]`` (``--set``) -> {name: value}; PostprocessingError naming a bad item."""
    out = {}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise PostprocessingError(f"--set {item!r}: expected NAME=VALUE (names: {', '.join(NAMES)})")
        out[name.strip()] = coerce(name.strip(), value.strip())
    return out
