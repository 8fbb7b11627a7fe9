"""The evaluation reference for the demo's unseen-style cases, from MultiSpine-Sim's complete ground truth.

``SIM/ground_truth/<source>/<case>_vert.nii.gz`` (every vertebra, VerSe codes), ``<case>_lesion.nii.gz`` (every
lesion) and ``<case>_ctd.json`` become a plain reference folder that ``vertebraformer evaluate`` reads:
``<case>.nii.gz``, ``<case>_lesion.nii.gz``, ``<case>_ctd.json``, named like the predictions of
``SIM/<source>/<case>.nii.gz``. One change, the one the training data had: vertebrae cut by the head or foot
border of the field of view are set to background (the converters' partial-vertebra rule,
``dataset_conversion.common.remove_partial_vertebrae``, on the image reoriented to RAS), and their centroids are
dropped, since the model was taught to leave them unlabelled.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..centroids import read_verse_ctd, write_verse_ctd
from ..image_io import read_label, reorient, write_image


def partial_codes(vertebrae: sitk.Image) -> list:
    """VerSe codes the training data would have removed from this label map (cut by the head/foot border)."""
    from ..dataset_conversion.common import remove_partial_vertebrae

    _, removed = remove_partial_vertebrae(sitk.GetArrayFromImage(reorient(vertebrae, "RAS")))
    return removed


def truth_reference(sim_root: Path, source: str, out: Path) -> int:
    """Write the reference folder ``out`` for the cases of ``source`` (e.g. ``extra_lowdose``) in the phantoms'
    index; returns the number of cases. Raises FileNotFoundError naming a missing ground-truth file."""
    sim_root, out = Path(sim_root), Path(out)
    index_file = sim_root / "ground_truth" / "index.json"
    cases = [c for c in json.loads(index_file.read_text())["cases"] if c["source"] == source]
    if not cases:
        raise FileNotFoundError(f"{index_file}: no case of source {source!r}")
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        truth = {k: sim_root / v for k, v in case["truth"].items()}
        for kind, path in truth.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ground-truth {kind} of {source}/{case['case_id']} is missing")
        name = Path(case["image"]).name
        name = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
        vertebrae = read_label(truth["vertebrae"])
        removed = partial_codes(vertebrae)
        array = sitk.GetArrayFromImage(vertebrae)
        kept = sitk.GetImageFromArray(np.where(np.isin(array, removed), 0, array).astype(array.dtype))
        kept.CopyInformation(vertebrae)
        write_image(kept, out / f"{name}.nii.gz")
        shutil.copyfile(truth["lesions"], out / f"{name}_lesion.nii.gz")
        centroids = {c: p for c, p in read_verse_ctd(truth["centroids"], vertebrae).items() if c not in removed}
        write_verse_ctd(out / f"{name}_ctd.json", centroids, vertebrae)
    return len(cases)
