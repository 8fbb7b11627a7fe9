"""The evaluation reference for the demo's unseen-style cases, from MultiSpine-Sim's complete ground truth.

``SIM/ground_truth/<source>/<case>_vert.nii.gz`` (every vertebra, VerSe codes), ``<case>_lesion.nii.gz`` (every
lesion) and ``<case>_ctd.json`` become a plain reference folder that ``vertebraformer evaluate`` reads:
``<case>.nii.gz``, ``<case>_lesion.nii.gz``, ``<case>_ctd.json``, named like the predictions of
``SIM/<source>/<case>.nii.gz``. One change, the one the training data had: vertebrae cut by the head or foot
border of the field of view (touching its first or last slice along the head-foot axis: the converters'
rule, ``dataset_conversion.partial_vertebrae.cut_vertebrae``) become the evaluation's ignore region
(``evaluation.references.IGNORE_VALUE``), and their centroids are dropped: training ignored them, so ``evaluate``
scores them neither way (its border rule).

For the benchmark, the same for the cases of any sources, named and gridded like the nnU-Net raw dataset's cases:
``name="case"`` names the files by the index's ``case`` field (the raw dataset's case name without ``_0000``), and
``orientation="RAS"`` reorients the label maps (``image_io.reorient``: axes permuted and flipped, no resampling)
onto the grid the converters give every case, with the centroid file written against the reoriented map.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import SimpleITK as sitk

from ..centroids import read_verse_ctd, write_verse_ctd
from ..dataset_conversion.partial_vertebrae import cut_vertebrae
from ..evaluation.references import IGNORE_VALUE
from ..geometry import superior_axis
from ..image_io import IMAGE_SUFFIXES, read_label, reorient, write_image


def partial_codes(vertebrae: sitk.Image) -> list:
    """VerSe codes of the vertebrae of this label map cut by the head or foot border of its field of view."""
    return cut_vertebrae(sitk.GetArrayViewFromImage(vertebrae), superior_axis(vertebrae.GetDirection())[0])


NAMINGS = ("image", "case")


def _reference_name(case: dict, naming: str) -> str:
    """The file stem of a case: its image's file name less the image suffix (as ``predict -i SIM/<source>/...``
    names a file's predictions; a DICOM series keeps its folder's name, dots included) or the index's ``case``
    field (the raw dataset's case name)."""
    if naming == "case":
        return case["case"]
    name = Path(case["image"]).name
    suffix = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")
    return name[: len(name) - len(suffix)]


def truth_reference(sim_root: Path, sources: Union[str, Iterable[str]], out: Path, *, name: str = "image",
                    orientation: Optional[str] = None) -> int:
    """Write the reference folder ``out`` for the cases of ``sources`` (one source, e.g. ``extra_lowdose``, or
    several) in the phantoms' index; returns the number of cases.

    ``name``: "image" names the files after the case's image file, "case" after the index's ``case`` field;
    ``orientation``: None keeps the ground truth's grid, axis codes (e.g. "RAS") reorient the vertebra and lesion
    maps to them (centroid file against the reoriented map). Raises FileNotFoundError naming a missing
    ground-truth file or a source without cases, ValueError for an unknown ``name`` or two cases with one name."""
    if name not in NAMINGS:
        raise ValueError(f"name must be one of {', '.join(NAMINGS)}, got {name!r}")
    sim_root, out = Path(sim_root), Path(out)
    wanted = [sources] if isinstance(sources, str) else list(sources)
    index_file = sim_root / "ground_truth" / "index.json"
    index = json.loads(index_file.read_text())["cases"]
    cases = [c for c in index if c["source"] in wanted]
    missing = [s for s in wanted if not any(c["source"] == s for c in cases)]
    if missing:
        raise FileNotFoundError(f"{index_file}: no case of source {', '.join(map(repr, missing))}")
    names = [_reference_name(c, name) for c in cases]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"{index_file}: several cases would be named {', '.join(clash)} (name={name!r})")
    out.mkdir(parents=True, exist_ok=True)
    for case, stem in zip(cases, names):
        truth = {k: sim_root / v for k, v in case["truth"].items()}
        for kind, path in truth.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ground-truth {kind} of {case['source']}/{case['case_id']} is missing")
        vertebrae = read_label(truth["vertebrae"])
        cut = partial_codes(vertebrae)
        centroids = {c: p for c, p in read_verse_ctd(truth["centroids"], vertebrae).items() if c not in cut}
        array = sitk.GetArrayFromImage(vertebrae).astype(np.uint8)
        reference = sitk.GetImageFromArray(np.where(np.isin(array, cut), np.uint8(IGNORE_VALUE), array))
        reference.CopyInformation(vertebrae)
        if orientation is None:
            shutil.copyfile(truth["lesions"], out / f"{stem}_lesion.nii.gz")
        else:
            reference = reorient(reference, orientation)
            write_image(reorient(read_label(truth["lesions"]), orientation), out / f"{stem}_lesion.nii.gz")
        write_image(reference, out / f"{stem}.nii.gz")
        write_verse_ctd(out / f"{stem}_ctd.json", centroids, reference)  # centroids are world mm: any grid of them
    return len(cases)
