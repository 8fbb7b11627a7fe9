"""What the planner reads from a raw dataset besides nnU-Net's fingerprint: its domains, the anatomical axes of its
arrays, where a case's lesion map lies. The planner writes the first two into the plans
(``plans["vertebraformer"]["domains"]`` and ``["anatomical_axes"]``), where everything else reads them
(``vertebraformer_nn.plans_facts``).

**Domains.** The distinct ``case_info[case]["domain"]`` of the training cases in dataset.json (the converters
record each case's source there): the MultiSpine sources first, in ``sources.SOURCES`` order (so MultiSpine's
domain indices are those of SOURCES), then any other domain alphabetically. A dataset.json without ``case_info``
(a stock nnU-Net dataset) has no domains: an empty list, a network without domain classifier output, no domain loss;
the modulation unit's code is still computed from the image and trained through the task losses.

**Anatomical axes** (``{"si", "ap", "lr"}`` -> array axis, before nnU-Net's transpose). A reorienting reader
(``SimpleITKIOWithReorient``, which MultiSpine's dataset.json names) hands out (S, A, R) arrays whatever the files'
orientation. Any other reader (stock ``SimpleITKIO`` on VerSe's PIR files, say) hands out each file's own axes, so
they are read from the training images' headers (SimpleITK's ``ReadImageInformation``: no voxel is read) with
``geometry.anatomical_axes``. Every case must then have the same orientation: cases that disagree would put
head-foot, front-back or left-right on different array axes (or flip them) from case to case, and the trainer's
left-right mirroring, its rotations and the patch's head-foot elongation would be wrong for some of them. The
planner stops with an :class:`OrientationError` naming the files of each orientation and the two ways out
(reorient the files, or name ``SimpleITKIOWithReorient`` in dataset.json).
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

from ..geometry import anatomical_axes
from ..plans_facts import REORIENTED_AXES, REORIENTING_READERS
from ..sources import SOURCES

#: Files named per orientation in an OrientationError.
FILES_NAMED = 4


class OrientationError(ValueError):
    """The dataset's arrays have no one anatomical orientation; the message names the files and the remedy."""


def dataset_domains(dataset_json: Mapping, cases) -> List[str]:
    """The domains of ``cases`` (the training cases) per dataset.json's ``case_info`` (see the module docstring)."""
    info = dataset_json.get("case_info") or {}
    found = {str(info[c]["domain"]) for c in cases if c in info and info[c].get("domain") is not None}
    return [s for s in SOURCES if s in found] + sorted(found - set(SOURCES))


def untransposed_axes(reader_name: str, dataset: Mapping[str, Mapping]) -> Dict[str, int]:
    """Anatomical axes of the arrays ``reader_name`` reads from ``dataset`` ({case: {"images": [files], ...}}, as
    nnU-Net's planner holds it), before nnU-Net's transpose (see the module docstring)."""
    if reader_name in REORIENTING_READERS:
        return dict(REORIENTED_AXES)
    import SimpleITK as sitk

    by_orientation: Dict[str, List[str]] = {}
    directions = {}
    for case in sorted(dataset):
        path = dataset[case]["images"][0]
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise OrientationError(f"{path}: SimpleITK cannot read its header ({str(e).strip().splitlines()[-1]}); "
                                   f"without it the image's orientation is unknown") from None
        if reader.GetDimension() != 3:
            raise OrientationError(f"{path}: a {reader.GetDimension()}D image; VertebraFormer plans 3D CT only")
        code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(reader.GetDirection())
        by_orientation.setdefault(code, []).append(str(path))
        directions.setdefault(code, reader.GetDirection())
    if not directions:
        raise OrientationError("the dataset has no training image: no orientation to plan for")
    if len(by_orientation) > 1:
        groups = "; ".join(f"{code} ({len(files)}): {', '.join(files[:FILES_NAMED])}"
                           + (f" and {len(files) - FILES_NAMED} more" if len(files) > FILES_NAMED else "")
                           for code, files in sorted(by_orientation.items(), key=lambda kv: -len(kv[1])))
        raise OrientationError(
            f"the training images have {len(by_orientation)} orientations and nnU-Net's reader {reader_name} does not "
            f"reorient them, so an array axis would run head-foot in one case and left-right in another: {groups}. "
            f"Name \"SimpleITKIOWithReorient\" as \"overwrite_image_reader_writer\" in dataset.json (the reader "
            f"then hands out every image in RAS), or rewrite the images (and labels) in one orientation")
    (code, direction), = directions.items()
    try:
        return anatomical_axes(direction)
    except ValueError as e:
        raise OrientationError(f"{by_orientation[code][0]} and the other cases ({code}): {e}") from None


def lesion_file_for(label_file: str, dataset_json: Optional[Mapping] = None) -> Optional[str]:
    """The lesion map that goes with a labelsTr/labelsTs file (lesionsTr/lesionsTs, same file name), or None
    when the label file is not in such a folder. Existence is not checked."""
    del dataset_json  # the layout alone decides
    folder, name = os.path.split(os.path.abspath(label_file))
    parent, sub = os.path.split(folder)
    if not sub.startswith("labels"):
        return None
    return os.path.join(parent, "lesions" + sub[len("labels"):], name)
