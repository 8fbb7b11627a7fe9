"""``vertebraformer predict`` and ``vertebraformer ensemble`` (argument parsing only; the work is imported when a
command runs, so ``--help`` answers at once)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_FOLDS = ("0", "1", "2", "3", "4")  # as predictor.DEFAULT_FOLDS (not imported: that module imports torch)
NUMBERING_MODES = ("decoder", "argmax")  # as export.NUMBERING_MODES (not imported, for the same reason)


def add_parser(subparsers) -> None:
    _add_predict(subparsers)
    _add_ensemble(subparsers)


def _add_shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save_probabilities", action="store_true",
                   help="also save <case>_vfprobs.npz (every head's probabilities, float16, cropped to the spine) "
                   "for `vertebraformer ensemble`")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="skip cases whose outputs are complete (after an interrupted run); the rest run again")
    p.add_argument("-num_parts", type=int, default=1,
                   help="split the cases (sorted by name) into this many parts, e.g. one per machine (default 1)")
    p.add_argument("-part_id", type=int, default=0,
                   help="which part this run does, 0..num_parts-1; each part writes summary_part<I>of<N>.csv")
    p.add_argument("--no_preview", action="store_true", help="do not draw <case>_preview.png")
    p.add_argument("--disable_progress_bar", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--numbering", choices=NUMBERING_MODES, default="decoder",
                   help="how vertebrae get their levels: 'decoder' (default) finds vertebra instances and labels "
                   "the head-to-foot sequence jointly; 'argmax' takes the per-voxel argmax of the segmentation as "
                   "it is (duplicated or split levels stay), for ablations and baselines only")


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="segment, number and find lesions in a folder of CT scans",
        description="Predict vertebrae (VerSe codes, numbered C1..L5 with T13/L6), their centroids and spinal "
        "lesions for CT scans: NIfTI (.nii/.nii.gz), NRRD, MHA/MHD files and DICOM series folders, in any "
        "orientation and spacing. Per case, on the input's own grid: <case>.nii.gz, <case>_lesion.nii.gz, "
        "<case>_ctd.json (VerSe centroid format), <case>.json (report), <case>_preview.png; and summary.csv "
        "(one row per case, failures with their reason) plus a 3D Slicer colour table. Exit status: 0 all cases "
        "done, 1 some failed (the others are still predicted), 2 nothing could run.")
    p.add_argument("-i", dest="input", required=True,
                   help="a CT file, or a folder searched recursively (every image file is a case, every folder "
                   "holding DICOM files is a case named after its relative path)")
    p.add_argument("-o", dest="output", required=True, help="output folder (created)")
    p.add_argument("-m", dest="model", default=None, help="trained model folder (<Trainer>__<Plans>__<config>)")
    p.add_argument("-d", dest="dataset", default=None,
                   help="dataset id or name, to find the model in $nnUNet_results (instead of -m)")
    p.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-tr", dest="trainer", default=None,
                   help="trainer name (default: the only trained model of the dataset and configuration)")
    p.add_argument("-p", dest="plans", default=None, help="plans identifier (default: as -tr)")
    p.add_argument("-f", dest="folds", nargs="+", default=list(DEFAULT_FOLDS),
                   help="folds to ensemble (default 0 1 2 3 4: the cross-validation folds; every fold named must "
                   "have its checkpoint; folds 5+ are cross-domain runs and are never used unless named)")
    p.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth",
                   help="checkpoint file name in each fold (default checkpoint_final.pth)")
    p.add_argument("-device", default=None, choices=("cpu", "cuda", "mps"),
                   help="device (default: cuda when available, else cpu)")
    p.add_argument("-step_size", type=float, default=0.5, help="sliding-window step as a fraction of the patch "
                   "(default 0.5)")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--disable_tta", action="store_true",
                     help="no test-time mirroring. Default: mirroring (left-right only, the one flip the trainer "
                     "allows) is ON on a GPU and OFF on the CPU, where it would double the network time")
    tta.add_argument("--enable_tta", action="store_true", help="test-time mirroring also on the CPU")
    p.add_argument("--dicom-seg", dest="dicom_seg", action="store_true",
                   help="also write <case>_seg.dcm, a DICOM Segmentation (a segment per vertebra, one for lesions) "
                   "referencing the source series, for every case read from a DICOM series")
    p.add_argument("--fp32", action="store_true",
                   help="full precision on the CPU. Default: bf16 autocast on the CPU (about half the network "
                   "time; labels agree with fp32, see README); on a GPU nnU-Net's fp16 autocast applies")
    _add_shared(p)
    p.set_defaults(func=run_predict)


def _add_ensemble(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble", help="average the saved probabilities of several prediction folders",
        description="Average the probabilities that `vertebraformer predict --save_probabilities` saved "
        "(<case>_vfprobs.npz) in several folders (folds, configurations), with the same rule predict uses across "
        "folds, and write the same per-case files and summary.csv as predict. The CT is read again from the path "
        "recorded at prediction. Exit status as predict.")
    p.add_argument("-i", dest="inputs", nargs="+", required=True, help="prediction folders (two or more)")
    p.add_argument("-o", dest="output", required=True, help="output folder (created)")
    _add_shared(p)
    p.set_defaults(func=run_ensemble)


def _error(command: str, message) -> int:
    print(f"vertebraformer {command}: {message}", file=sys.stderr)
    return 2


def _options(args):
    from .predictor import RunOptions

    return RunOptions(preview=not args.no_preview, save_probabilities=args.save_probabilities, resume=args.resume,
                      num_parts=args.num_parts, part_id=args.part_id, progress=not args.disable_progress_bar,
                      numbering=args.numbering, dicom_seg=getattr(args, "dicom_seg", False))


def _part_suffix(args) -> str:
    return f"_part{args.part_id}of{args.num_parts}" if args.num_parts > 1 else ""


def run_predict(args) -> int:
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        return _error("predict", f"-part_id must be in 0..{args.num_parts - 1} for -num_parts {args.num_parts}")
    from .cases import CaseError, discover_cases, shard

    out_dir = Path(args.output)
    try:
        found = discover_cases(args.input, exclude=[out_dir])
    except CaseError as e:
        return _error("predict", e)
    problem = _overwrites_inputs(found.cases, out_dir, args.save_probabilities)
    if problem:
        return _error("predict", problem)
    cases = shard(found.cases, args.num_parts, args.part_id)

    import torch

    from ..atomic import write_text_atomic
    from .predictor import ModelError, VertebraFormerPredictor, resolve_model_folder, run_cases

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tta = True if args.enable_tta else False if args.disable_tta else None
    try:
        folder = resolve_model_folder(args.model, args.dataset, args.configuration, args.trainer, args.plans)
        predictor = VertebraFormerPredictor(device, use_mirroring=tta, bf16=False if args.fp32 else None,
                                            tile_step_size=args.step_size)
        predictor.initialize_from_trained_model_folder(folder, args.folds, args.checkpoint)
    except ModelError as e:
        return _error("predict", e)
    setup = predictor.describe()
    print(f"vertebraformer predict: {len(cases)} case(s) of {len(found.cases)} (part {args.part_id + 1} of "
          f"{args.num_parts}); model {folder}, folds {' '.join(map(str, setup['folds']))}, device {device}, "
          f"test-time mirroring {'on' if setup['tta_mirroring'] else 'off'}, "
          f"{'bf16 autocast' if setup['bf16'] else 'full precision' if device == 'cpu' else 'nnU-Net autocast'}")
    for line in found.renamed:
        print(f"  renamed: {line}")
    if found.ignored:
        shown = ", ".join(str(p) for p in found.ignored[:5]) + (" ..." if len(found.ignored) > 5 else "")
        print(f"  ignored {len(found.ignored)} file(s) that are neither images nor DICOM: {shown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"prediction_args{_part_suffix(args)}.json", json.dumps({
        "input": str(args.input), "output": str(out_dir), **setup, "numbering": args.numbering,
        "renamed": found.renamed,
        "cases": {c.name: str(c.source) for c in cases}}, indent=1))
    _, failed = run_cases(cases, out_dir, predictor.predict_case, _options(args))
    return 1 if failed else 0


def _overwrites_inputs(cases, out_dir: Path, save_probabilities: bool):
    """A message when an output file would replace an input file (outputs never overwrite inputs)."""
    from .case_outputs import case_files
    from .probabilities import probabilities_file

    sources = {Path(c.source).resolve() for c in cases}
    for case in cases:
        outputs = [*case_files(out_dir, case.name).values()]
        if save_probabilities:
            outputs.append(probabilities_file(out_dir, case.name))
        clash = [p for p in outputs if p.resolve() in sources]
        if clash:
            return f"output {clash[0]} would overwrite an input; choose another output folder"
    return None


def run_ensemble(args) -> int:
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        return _error("ensemble", f"-part_id must be in 0..{args.num_parts - 1} for -num_parts {args.num_parts}")
    from .ensemble import ensemble_folders

    return ensemble_folders(args.inputs, args.output, _options(args),
                            log=lambda m: print(m, file=sys.stderr if m.startswith("vertebraformer") else sys.stdout))
