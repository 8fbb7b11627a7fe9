"""``vertebraformer ensemble -i DIR DIR ... -o OUT``: average the probabilities saved by several prediction folders.

Each input folder holds ``<case>_vfprobs.npz`` files (``predict --save_probabilities``). A case is ensembled from
the files of every folder, averaged with the one rule of :mod:`probabilities` (the rule ``predict`` uses across
folds in-process), then exported exactly as ``predict`` does (numbering, the input's grid, the same per-case files
and ``summary.csv``), with the post-processing values of the model the folders were predicted with. The CT itself
is read again from the path recorded in the files, for the report's HU values, the geometry and the preview; a
case whose files disagree (another grid or another input) or whose CT has moved or changed fails with the reason,
and the others still run.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..image_io import grid_mismatch
from . import probabilities as P
from .cases import Case, CaseError, read_case, shard
from .postprocessing import PostprocessingError, resolve
from .runner import run_cases

__all__ = ["EnsembleCase", "find_cases", "ensemble_case", "ensemble_folders"]

#: meta entries that must agree between the files of one case
SAME_CASE_KEYS = ("input_geometry", "properties", "model_shape", "transpose_forward", "reorientation", "superior")


@dataclass(frozen=True)
class EnsembleCase:
    name: str
    source: str  # the CT's path, as recorded by the first folder's file
    files: tuple  # one probabilities file (or None) per input folder


def _meta_only(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f["meta"]))


def find_cases(folders: Sequence) -> List[EnsembleCase]:
    """Every case with a probabilities file in at least one folder, sorted by name."""
    index: List[Dict[str, Path]] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise CaseError(f"{folder}: not a folder")
        index.append({p.name[: -len(P.FILE_SUFFIX)]: p for p in folder.glob(f"*{P.FILE_SUFFIX}")})
    names = sorted(set().union(*index))
    if not names:
        raise CaseError(f"no {P.FILE_SUFFIX} files in {', '.join(map(str, folders))} (predict with "
                        "--save_probabilities first)")
    cases = []
    for name in names:
        files = tuple(ix.get(name) for ix in index)
        first = next(f for f in files if f is not None)
        try:
            source = _meta_only(first).get("source", str(first))
        except (OSError, KeyError, ValueError):
            source = str(first)
        cases.append(EnsembleCase(name, source, files))
    return cases


def ensemble_case(case: EnsembleCase, folders: Sequence, seconds: Dict[str, float], keep=None):
    """(CT image, averaged probabilities (a ``GridProbabilities``), meta) of one case; CaseError for what cannot be
    ensembled. ``keep``: the output probabilities file, when the average is to be saved (``runner.run_cases``)."""
    t = time.perf_counter()
    missing = [str(folder) for folder, f in zip(folders, case.files) if f is None]
    if missing:
        raise CaseError(f"{case.name}: no {case.name}{P.FILE_SUFFIX} in {', '.join(missing)}")
    items, metas = [], []
    for path in case.files:
        try:
            probs, meta = P.load(path)
        except ValueError as e:
            raise CaseError(str(e)) from None
        if metas:
            differ = [k for k in SAME_CASE_KEYS if meta.get(k) != metas[0].get(k)]
            if differ:
                raise CaseError(f"{path}: not the same case or grid as {case.files[0]} (differs in {', '.join(differ)})")
        if items and (probs.shape != items[0].shape or set(probs.heads) != set(items[0].heads)):
            raise CaseError(f"{path}: cannot average probabilities of grid {probs.shape} with heads "
                            f"{sorted(probs.heads)} into grid {items[0].shape} with heads {sorted(items[0].heads)}")
        items.append(probs)
        metas.append(meta)
    meta = dict(metas[0])
    meta["case"] = case.name
    meta["ensemble"] = [{"file": str(p), "prediction": m.get("prediction")} for p, m in zip(case.files, metas)]
    image = read_case(Case(case.name, Path(meta["source"]), meta.get("kind", "file")))
    recorded = meta["input_geometry"]
    problem = grid_mismatch(image, _geometry_image(recorded))
    if problem:
        raise CaseError(f"{meta['source']}: the image changed since it was predicted ({problem})")
    kept = None
    if keep is not None:
        kept = P.KeptWriter(items[0].shape, {h: items[0].channels(h) for h in items[0].heads}, Path(keep).parent,
                            Path(keep).name)
    try:
        averaged = P.averaged_grid(items, kept)
    except ValueError as e:
        if kept is not None:
            kept.discard()
        raise CaseError(f"{case.name}: {e}") from None
    seconds["read"] = time.perf_counter() - t
    return image, averaged, meta


def _geometry_image(geometry: dict):
    """An empty image with the recorded geometry, to compare grids with image_io.grid_mismatch."""
    import SimpleITK as sitk

    image = sitk.Image([int(s) for s in geometry["size"]], sitk.sitkUInt8)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image


def _model_folders(cases: Sequence[EnsembleCase]) -> List[str]:
    """The model folders the cases' probabilities were predicted with (as their files record them)."""
    found = set()
    for case in cases:
        for path in case.files:
            if path is not None:
                try:
                    found.add(str((_meta_only(path).get("prediction") or {}).get("model")))
                except (OSError, KeyError, ValueError):
                    continue
    return sorted(found)


def _postprocessing(cases, postprocessing_file, overrides):
    """The post-processing values of an ensemble: those of the one model folder all inputs came from (its
    ``postprocessing.json``, else the defaults), or with several models the defaults (a note says so); a named
    file and overrides win as in ``predict``."""
    models = _model_folders(cases)
    if len(models) == 1 and models[0] != "None":
        return resolve(models[0], postprocessing_file, overrides)
    resolved = resolve(None, postprocessing_file, overrides)
    if postprocessing_file is None:
        note = (f"the inputs come from {len(models)} model folders ({', '.join(models)}): the documented "
                "post-processing defaults apply (name one with --postprocessing FILE)")
        resolved = dataclasses.replace(resolved, notes=(*resolved.notes, note))
    return resolved


def ensemble_folders(folders: Sequence, out_dir, options, log=print, postprocessing_file=None,
                     overrides=None) -> int:
    """Run the ensemble (module docstring): exit status 0 when every case succeeded, 1 when some failed, 2 when
    nothing could run. Post-processing: see :func:`_postprocessing`."""
    folders = [Path(f) for f in folders]
    out_dir = Path(out_dir)
    if out_dir.resolve() in {f.resolve() for f in folders}:
        log(f"vertebraformer ensemble: the output folder {out_dir} is one of the inputs; choose another")
        return 2
    try:
        cases = shard(find_cases(folders), options.num_parts, options.part_id)
    except (CaseError, ValueError) as e:
        log(f"vertebraformer ensemble: {e}")
        return 2
    try:
        options = dataclasses.replace(options, postprocessing=_postprocessing(cases, postprocessing_file, overrides))
    except PostprocessingError as e:
        log(f"vertebraformer ensemble: {e}")
        return 2
    log(f"ensembling {len(cases)} case(s) from {len(folders)} folder(s) into {out_dir}; post-processing: "
        f"{options.postprocessing.describe()}")
    _, failed = run_cases(cases, out_dir, lambda case, seconds, keep: ensemble_case(case, folders, seconds, keep),
                          options, log)
    return 1 if failed else 0
