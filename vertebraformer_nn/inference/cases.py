"""What ``vertebraformer predict -i`` holds, what each case is called, and how a case becomes nnU-Net's input.

Discovery (:func:`discover_cases`): the input is one file or a folder, searched recursively, through symbolic
links, each real folder once (hidden entries skipped). Every image file (``image_io.IMAGE_SUFFIXES``) is a case;
every folder that directly holds DICOM files (Part-10 ``DICM`` magic or a ``.dcm``/``.ima`` suffix) is one case,
read from the series in that folder alone and chosen by ``image_io.choose_series`` (CT, not a localizer, axial,
thinnest). A leaf folder holding neither is a case that fails ("no image files or DICOM series"), so a broken
export is reported instead of passed over. Other files are ignored and listed.

Names: the path relative to the input, suffix and nnU-Net's single-channel ``_0000`` removed, made a case name
by the project's one rule (``case_names.sanitise``: path separators and every run of characters outside
``[A-Za-z0-9._-]`` turned into one ``_``); a DICOM folder is named by its relative path (the input folder's own
name as given, not where a link leads, when the DICOM files sit directly in it). Names that collide
(case-insensitively, as on macOS file systems) keep the first, in sorted path order, and give the others ``_2``,
``_3``, ...; each renaming is reported.

Input (:func:`nnunet_input`): exactly what nnU-Net's ``SimpleITKIOWithReorient`` (or ``SimpleITKIO``) returns for
the same image, array and properties, but built from the image already read (files and DICOM series alike) and
without the reoriented copy ITK would make: the reorientation is a permutation and flips of the axes, learnt
from ``sitk.DICOMOrient`` on a 2x2x2 image with the same direction and applied as numpy views.

CT check (:func:`check_ct`): a usable input is CT in Hounsfield units. Rule: finite values; at least 0.1 % of the
voxels below -50 HU (air, lung or fat, which lies at about -100 HU: an MR image, an image normalised to 0..1, or CT
stored without its rescale intercept has none); a 99.9th percentile of at least 150 HU (some bone). Measured on the
real files of ``../shared/data/real``: the tight TPTBox spine crop has 21.8 % of voxels below -50 HU and a 99.9th
percentile of 1278 HU, the other CTs more and 730-1623 HU. A tight crop holds no air, and its fat lies below -200 HU
only through noise: the TPTBox crop has 1.1 % of voxels there, and 0.017 % once smoothed as a soft reconstruction
kernel would (Gaussian, 1 mm), while 13 % stay below -50 HU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..case_names import sanitise
from ..image_io import IMAGE_SUFFIXES, ImageReadError, read_dicom_series, read_image
from ..image_io.checks import image_suffix
from ..image_io.dicom_series import is_dicom_file, series_in_folder, walk_folders

__all__ = ["Case", "CaseError", "Discovery", "discover_cases", "sanitise", "shard", "read_case", "check_ct",
           "nnunet_input", "Reorientation", "reorientation", "SUPPORTED_READERS"]

NNUNET_CHANNEL_SUFFIX = "_0000"
#: CT rule (module docstring).
AIR_FAT_HU = -50.0
MIN_AIR_FAT_FRACTION = 0.001
MIN_BONE_PERCENTILE_HU = 150.0
#: Voxels sampled for the percentile rule (a strided sample: exact enough, and fast on 150 M voxels).
CT_CHECK_SAMPLES = 2_000_000
#: nnU-Net readers whose output :func:`nnunet_input` reproduces, with the orientation they reorient to.
SUPPORTED_READERS = {"SimpleITKIOWithReorient": "RAS", "SimpleITKIO": None}


class CaseError(Exception):
    """A case that cannot be predicted; the message names the input and the problem."""


@dataclass(frozen=True)
class Case:
    name: str
    source: Path
    kind: str  # "file" (an image file, or one DICOM file) | "dicom" (a folder of DICOM files) | "unusable"
    problem: Optional[str] = None  # why an "unusable" case fails


@dataclass
class Discovery:
    cases: List[Case]
    renamed: List[str] = field(default_factory=list)  # one line per collision resolved
    ignored: List[Path] = field(default_factory=list)  # files that are neither images nor DICOM


# ------------------------------------------------------------------------------------------------ discovery
def _file_case_name(rel: PurePath) -> str:
    stem = rel.name[: -len(image_suffix(rel.name) or "")] or rel.name
    if stem.endswith(NNUNET_CHANNEL_SUFFIX) and len(stem) > len(NNUNET_CHANNEL_SUFFIX):
        stem = stem[: -len(NNUNET_CHANNEL_SUFFIX)]
    return sanitise("_".join([*rel.parent.parts, stem]))


def _resolve_collisions(named: List[Tuple[str, Path, str, Optional[str]]]) -> Tuple[List[Case], List[str]]:
    """Unique names (case-insensitive): the first in sorted path order keeps its name, the others get _2, _3..."""
    taken, cases, renamed = set(), [], []
    first_holder: Dict[str, Path] = {}
    for name, source, kind, problem in sorted(named, key=lambda t: (t[0].lower(), str(t[1]))):
        final, k = name, 1
        while final.lower() in taken:
            k += 1
            final = f"{name}_{k}"
        if final != name:
            renamed.append(f"case name {name!r} is taken by {first_holder[name.lower()]}; {source} is named {final!r}")
        taken.add(final.lower())
        first_holder.setdefault(name.lower(), source)
        cases.append(Case(final, source, kind, problem))
    return sorted(cases, key=lambda c: c.name), renamed


def discover_cases(input_path, exclude: Sequence = ()) -> Discovery:
    """The cases of a file or folder (module docstring). ``exclude``: folders never searched (the output folder,
    when it lies inside the input). Raises CaseError when the input does not exist or holds no case."""
    root = Path(input_path)
    if not root.exists():
        raise CaseError(f"{root}: does not exist")
    if root.is_file():
        return Discovery([Case(_file_case_name(PurePath(root.name)), root, "file")])
    excluded = {Path(p).resolve() for p in exclude}
    named, ignored = [], []
    for folder, dirs, files in walk_folders(root, skip=lambda sub: sub.resolve() in excluded):
        rel = folder.relative_to(root)
        images = [f for f in files if image_suffix(f)]
        headers = {f[: -len(image_suffix(f))] for f in images}
        rest = [f for f in files if f not in images]
        dicom = [f for f in rest if is_dicom_file(folder / f)]
        for f in images:
            named.append((_file_case_name(rel / f), folder / f, "file", None))
        if dicom:
            name = sanitise("_".join(rel.parts)) if rel.parts else sanitise(Path(os.path.abspath(root)).name)
            named.append((name, folder, "dicom", None))
        # data files of two-file formats (.mhd + .raw) are not "ignored"
        ignored += [folder / f for f in rest if f not in dicom and Path(f).stem not in headers
                    and f.split(".")[0] not in headers]
        if not images and not dicom and not dirs and rel.parts:
            what = "an empty folder" if not files else f"{len(files)} file(s), none an image or DICOM"
            named.append((sanitise("_".join(rel.parts)), folder, "unusable",
                          f"no image files or DICOM series found ({what})"))
    if not named:
        raise CaseError(f"{root}: no cases found (no image files {', '.join(IMAGE_SUFFIXES)} and no DICOM series; "
                        f"{'an empty folder' if not ignored else f'{len(ignored)} other file(s)'})")
    cases, renamed = _resolve_collisions(named)
    return Discovery(cases, renamed, ignored)


def shard(cases: Sequence[Case], num_parts: int, part_id: int) -> List[Case]:
    """Part ``part_id`` of ``num_parts``: every num_parts-th case of the cases sorted by name (deterministic, the
    same on every machine given the same input)."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"-part_id must be in 0..{num_parts - 1} for -num_parts {num_parts}, got {part_id}")
    return sorted(cases, key=lambda c: c.name)[part_id::num_parts]


# ------------------------------------------------------------------------------------------------ reading
def read_case(case: Case) -> sitk.Image:
    """The case's CT volume (geometry as stored). Raises CaseError naming the input and the problem."""
    if case.kind == "unusable":
        raise CaseError(f"{case.source}: {case.problem}")
    try:
        if case.kind == "dicom":  # only the series of this folder: its sub-folders are cases of their own
            return read_dicom_series(series_in_folder(case.source))
        return read_image(case.source)
    except ImageReadError as e:
        raise CaseError(str(e)) from None
    except (RuntimeError, OSError, ValueError) as e:  # anything a reader library throws: still one case's problem
        raise CaseError(f"{case.source}: unreadable ({type(e).__name__}: {str(e).strip().splitlines()[-1][:300]})") \
            from None


def check_ct(image: sitk.Image, where) -> None:
    """Raise CaseError unless ``image`` looks like CT in Hounsfield units (rule in the module docstring)."""
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            raise CaseError(f"{where}: image holds {values.size - int(finite.sum())} NaN or infinite voxel values")
        del finite
    flat = values.reshape(-1)
    sample = flat[:: max(1, flat.size // CT_CHECK_SAMPLES)]
    lo, hi = float(sample.min()), float(sample.max())
    below = float(np.mean(sample < AIR_FAT_HU))
    bone = float(np.percentile(sample, 99.9))
    if below < MIN_AIR_FAT_FRACTION:
        raise CaseError(
            f"{where}: intensities {lo:g}..{hi:g} are not CT in Hounsfield units: {100 * below:.3g} % of voxels lie "
            f"below {AIR_FAT_HU:g} HU (CT shows air, lung or fat there in at least {100 * MIN_AIR_FAT_FRACTION:g} "
            "%); an MR image, a normalised image, or CT stored without its rescale intercept?")
    if bone < MIN_BONE_PERCENTILE_HU:
        raise CaseError(
            f"{where}: intensities {lo:g}..{hi:g} show no bone: the 99.9th percentile is {bone:g} HU, below "
            f"{MIN_BONE_PERCENTILE_HU:g} HU; not a spine CT in Hounsfield units?")


# ------------------------------------------------------------------------------------------------ nnU-Net input
@dataclass(frozen=True)
class Reorientation:
    """numpy view from an image's own (z, y, x) array to its reoriented array: reoriented axis r is own axis
    ``axes[r]``, reversed where ``flip[r]``."""

    axes: Tuple[int, int, int]
    flip: Tuple[bool, bool, bool]

    def apply(self, array: np.ndarray) -> np.ndarray:
        view = np.transpose(array, self.axes)
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]


def reorientation(image: sitk.Image, orientation: Optional[str]) -> Tuple[Reorientation, sitk.Image]:
    """(the array view ``sitk.DICOMOrient(image, orientation)`` amounts to, a 2x2x2 image with the reoriented
    direction and spacing). Learnt from ITK itself on a tiny image whose voxels hold their own index."""
    probe = sitk.GetImageFromArray(np.arange(8, dtype=np.int16).reshape(2, 2, 2))  # value = 4z + 2y + x
    probe.SetDirection(image.GetDirection())
    probe.SetSpacing(image.GetSpacing())
    if orientation is None:
        return Reorientation((0, 1, 2), (False, False, False)), probe
    out = sitk.DICOMOrient(probe, orientation)
    code = sitk.GetArrayFromImage(out)
    base = np.array(np.unravel_index(int(code[0, 0, 0]), (2, 2, 2)))
    axes, flip = [], []
    for r in range(3):
        step = [0, 0, 0]
        step[r] = 1
        moved = np.array(np.unravel_index(int(code[tuple(step)]), (2, 2, 2))) - base
        src = int(np.flatnonzero(moved)[0])
        axes.append(src)
        flip.append(bool(moved[src] < 0))
    return Reorientation(tuple(axes), tuple(flip)), out


def nnunet_input(image: sitk.Image, reader: str = "SimpleITKIOWithReorient") -> Tuple[np.ndarray, dict, Reorientation]:
    """(data float32 (1, z, y, x), properties, the reorientation used): what nnU-Net's ``reader`` returns for
    this image (array and properties dict), built without ITK's reoriented copy."""
    if reader not in SUPPORTED_READERS:
        raise ValueError(f"the model's plans name the image reader {reader!r}; prediction supports "
                         f"{', '.join(SUPPORTED_READERS)}")
    orientation = SUPPORTED_READERS[reader]
    reo, probe = reorientation(image, orientation)
    array = reo.apply(sitk.GetArrayViewFromImage(image))
    # origin: the physical point of the voxel that becomes index 0 of the reoriented image
    size_zyx = image.GetSize()[::-1]
    first = [0, 0, 0]
    for r, (src, flipped) in enumerate(zip(reo.axes, reo.flip)):
        first[src] = size_zyx[src] - 1 if flipped else 0
    origin = image.TransformIndexToPhysicalPoint([int(v) for v in first[::-1]])
    spacing = probe.GetSpacing()
    stuff = {"spacing": spacing, "origin": origin, "direction": probe.GetDirection()}
    if orientation is not None:
        stuff["original_orientation"] = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(
            image.GetDirection())
    properties = {"sitk_stuff": stuff, "spacing": list(np.abs(list(spacing)[::-1]))}
    data = np.empty((1, *array.shape), dtype=np.float32)
    data[0] = array  # one copy, converting to float32 as nnU-Net's np.vstack(..., dtype=float32) does
    return data, properties, reo
