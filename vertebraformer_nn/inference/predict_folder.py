"""``vertebraformer predict`` as a Python function: :func:`predict_folder` (the command is a thin wrapper over it, and
the demo calls it directly).

A folder (or a file) of CT scans in, per case the outputs of ``case_outputs`` out, on the input's own grid. What
runs: case discovery (``cases.discover_cases``), the model folder (``predictor.resolve_model_folder``), its
post-processing values (``postprocessing.resolve``: the model folder's ``postprocessing.json``, or a named file,
then overrides), the predictor with its coarse whole-field stage when the sibling ``3d_lowres`` model exists
(``coarse_stage``; ``coarse=False`` skips it),
``prediction_args[_part<I>of<N>].json`` (the run's settings, written before the
first case), then ``runner.run_cases``. Anything that keeps the whole run from starting (no cases, no model, a bad
post-processing file, outputs that would overwrite inputs) raises :class:`PredictionError`; a case that fails is a
row of ``summary.csv`` and counts in the returned number of failures.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Tuple

from ..atomic import write_text_atomic
from .case_outputs import case_files
from .cases import CaseError, discover_cases, shard
from .postprocessing import PostprocessingError, resolve
from .probabilities import probabilities_file
from .runner import RunOptions, run_cases

__all__ = ["PredictionError", "predict_folder"]


class PredictionError(ValueError):
    """Nothing could run: the message says why."""


def _overwrites_inputs(cases, out_dir: Path, save_probabilities: bool) -> Optional[str]:
    """A message when an output file would replace an input file (outputs never overwrite inputs)."""
    sources = {Path(c.source).resolve() for c in cases}
    for case in cases:
        outputs = [*case_files(out_dir, case.name).values()]
        if save_probabilities:
            outputs.append(probabilities_file(out_dir, case.name))
        clash = [p for p in outputs if p.resolve() in sources]
        if clash:
            return f"output {clash[0]} would overwrite an input; choose another output folder"
    return None


def _attach_coarse_stage(predictor, folder: Path, checkpoint: str, device, tta, bf16, step_size) -> str:
    """Load the sibling 3d_lowres model as the predictor's coarse stage, with the predictor's folds it has; the log
    line."""
    from .coarse_stage import CoarseStage, find_coarse_model

    coarse_folder, coarse_folds, note = find_coarse_model(folder, predictor.folds, checkpoint)
    if coarse_folder is not None:
        predictor.coarse_stage = CoarseStage.load(coarse_folder, coarse_folds, checkpoint, device,
                                                  use_mirroring=tta, bf16=bf16, tile_step_size=step_size)
    return note


def _builtin(folds: Optional[Sequence], configuration: str, log: Callable[[str], None]) -> Tuple[Path, Sequence]:
    """The built-in model's folder and folds (``builtin_model``), announced; a ModelError where it cannot serve."""
    from ..builtin_model import MODEL_CARD, BuiltinModelMissing, builtin_model
    from .predictor import ModelError

    try:
        folder, shipped = builtin_model()
    except BuiltinModelMissing as e:
        raise ModelError(str(e)) from None
    if configuration != "3d_fullres":
        raise ModelError(f"the built-in model has no {configuration} configuration of its own; name a model with -m "
                         "or -d")
    log(f"vertebraformer predict: no model named (-m/-d): using the built-in model, trained on phantoms only "
        f"(what it can and cannot do: {MODEL_CARD})")
    return folder, (shipped if folds is None else folds)


def predict_folder(input, output, *, model=None, dataset=None, configuration: str = "3d_fullres",
                   trainer: Optional[str] = None, plans: Optional[str] = None, folds: Optional[Sequence] = None,
                   checkpoint: str = "checkpoint_final.pth", device: Optional[str] = None,
                   tta: Optional[bool] = None, bf16: Optional[bool] = None, step_size: float = 0.5,
                   options: Optional[RunOptions] = None, postprocessing_file=None,
                   overrides: Optional[Mapping[str, float]] = None, coarse: bool = True,
                   log: Callable[[str], None] = print) -> Tuple[int, int]:
    """Predict every case of ``input`` into ``output`` (module docstring); returns (cases done, cases failed).

    The model: ``model`` (a folder) or ``dataset`` [+ ``configuration``, ``trainer``, ``plans``] in
    ``$nnUNet_results``; neither: the built-in model (``builtin_model``), said in the log. ``folds`` are ensembled
    in-process (None: 0-4, or the built-in model's). ``device`` None = cuda when available; ``tta`` None
    = mirroring on a GPU only; ``bf16`` None = the CPU default (``predictor.BF16_DEFAULT``). ``options``: what
    to write and which part of the cases to run (``runner.RunOptions``; its ``postprocessing`` is set here).
    ``postprocessing_file`` replaces the model folder's ``postprocessing.json``; ``overrides`` (name -> value)
    win over both. ``coarse``: run the coarse whole-field stage when the model has one (``--no-coarse``: False)."""
    options = options or RunOptions()
    if options.num_parts < 1 or not 0 <= options.part_id < options.num_parts:
        raise PredictionError(f"-part_id must be in 0..{options.num_parts - 1} for -num_parts {options.num_parts}")
    out_dir = Path(output)
    try:
        found = discover_cases(input, exclude=[out_dir])
    except CaseError as e:
        raise PredictionError(str(e)) from None
    problem = _overwrites_inputs(found.cases, out_dir, options.save_probabilities)
    if problem:
        raise PredictionError(problem)
    cases = shard(found.cases, options.num_parts, options.part_id)

    import torch  # only now: a bad input folder is reported without waiting for torch

    from .predictor import DEFAULT_FOLDS, ModelError, VertebraFormerPredictor, resolve_model_folder

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if model is None and dataset is None:
            folder, folds = _builtin(folds, configuration, log)
        else:
            folder = resolve_model_folder(model, dataset, configuration, trainer, plans)
            folds = DEFAULT_FOLDS if folds is None else folds
        postprocessing = resolve(folder, postprocessing_file, overrides)
        predictor = VertebraFormerPredictor(device, use_mirroring=tta, bf16=bf16, tile_step_size=step_size)
        predictor.initialize_from_trained_model_folder(folder, folds, checkpoint)
        coarse_note = _attach_coarse_stage(predictor, folder, checkpoint, device, tta, bf16, step_size) if coarse \
            else "coarse whole-field stage: off (--no-coarse)"
    except (ModelError, PostprocessingError) as e:
        raise PredictionError(str(e)) from None
    options = dataclasses.replace(options, postprocessing=postprocessing)
    setup = predictor.describe()
    parts = options.num_parts
    log(f"vertebraformer predict: {len(cases)} case(s) of {len(found.cases)} (part {options.part_id + 1} of "
        f"{parts}); model {folder}, folds {' '.join(map(str, setup['folds']))}, device {device}, "
        f"test-time mirroring {'on' if setup['tta_mirroring'] else 'off'}, "
        f"{'bf16 autocast' if setup['bf16'] else 'full precision' if device == 'cpu' else 'nnU-Net autocast'}")
    log(f"  post-processing: {postprocessing.describe()}")
    log(f"  {coarse_note}")
    for line in [*postprocessing.notes, *(f"renamed: {r}" for r in found.renamed)]:
        log(f"  {line}")
    if found.ignored:
        shown = ", ".join(str(p) for p in found.ignored[:5]) + (" ..." if len(found.ignored) > 5 else "")
        log(f"  ignored {len(found.ignored)} file(s) that are neither images nor DICOM: {shown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"_part{options.part_id}of{parts}" if parts > 1 else ""
    write_text_atomic(out_dir / f"prediction_args{suffix}.json", json.dumps({
        "input": str(input), "output": str(out_dir), **setup, "numbering": options.numbering,
        "postprocessing": postprocessing.report(), "renamed": found.renamed,
        "cases": {c.name: str(c.source) for c in cases}}, indent=1))
    return run_cases(cases, out_dir, predictor.predict_case, options, log)
