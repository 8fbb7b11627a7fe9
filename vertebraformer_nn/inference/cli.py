"""``vertebraformer predict``, ``ensemble`` and ``determine-postprocessing``: argument parsing and thin ``run``
wrappers over ``predict_folder.predict_folder``, ``ensemble.ensemble_folders`` and
``postprocessing_search.determine_postprocessing`` (imported when a command runs, so ``--help`` answers at once)."""
from __future__ import annotations

import argparse
import sys

from . import postprocessing as PP

NUMBERING_MODES = ("decoder", "argmax")  # as export.NUMBERING_MODES (not imported: --help must not wait for torch)


def add_parser(subparsers) -> None:
    _add_predict(subparsers)
    _add_ensemble(subparsers)
    _add_determine(subparsers)


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
    pp = p.add_argument_group(
        "post-processing", "Numbering and lesion constants. Default: the model folder's postprocessing.json "
        "(vertebraformer determine-postprocessing), else the documented defaults; every <case>.json records the "
        "values used and where each came from.")
    pp.add_argument("--postprocessing", metavar="FILE", default=None,
                    help="take the values from FILE (a postprocessing.json) instead of the model folder's")
    pp.add_argument("--lesion-threshold", dest="lesion_threshold", type=float, metavar="P", default=None,
                    help=f"lesion probability threshold (default {PP.DEFAULTS.lesion_threshold:g})")
    pp.add_argument("--lesion-min-volume", dest="lesion_min_volume_mm3", type=float, metavar="MM3", default=None,
                    help=f"smallest lesion kept, mm3 (default {PP.DEFAULTS.lesion_min_volume_mm3:g})")
    pp.add_argument("--set", dest="pp_set", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                    help="any post-processing value, e.g. --set level_smoothing_mm=5; names: "
                    + ", ".join(PP.NAMES))


def _add_model(p: argparse.ArgumentParser) -> None:
    """Which trained model (predict and determine-postprocessing alike), its checkpoint and the device."""
    p.add_argument("-m", dest="model", default=None, help="trained model folder (<Trainer>__<Plans>__<config>); "
                   "predict without -m and -d uses the built-in phantom-trained model")
    p.add_argument("-d", dest="dataset", default=None,
                   help="dataset id or name, to find the model in $nnUNet_results (instead of -m)")
    p.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-tr", dest="trainer", default=None,
                   help="trainer name (default: the only trained model of the dataset and configuration)")
    p.add_argument("-p", dest="plans", default=None, help="plans identifier (default: as -tr)")
    p.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth",
                   help="checkpoint file name in each fold (default checkpoint_final.pth)")
    p.add_argument("-device", default=None, choices=("cpu", "cuda", "mps"),
                   help="device (default: cuda when available, else cpu)")


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
    _add_model(p)
    p.add_argument("-f", dest="folds", nargs="+", default=None,
                   help="folds to ensemble (default 0 1 2 3 4: the cross-validation folds, or the built-in model's; "
                   "every fold named must have its checkpoint; folds 5+ are cross-domain runs and are never used "
                   "unless named)")
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
    p.add_argument("--no-coarse", dest="no_coarse", action="store_true",
                   help="do not run the coarse whole-field stage. Default: when the sibling model folder "
                   "<Trainer>__<Plans>__3d_lowres has every fold used, it runs first and its level probabilities are "
                   "evidence for the numbering (weight coarse_level_weight; --set coarse_level_weight=0 runs it and "
                   "ignores it)")
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
        "folds, and write the same per-case files and summary.csv as predict. With one folder, its cases are "
        "numbered and post-processed again without the network (other --set values, --numbering argmax): seconds "
        "per case. The CT is read again from the path recorded at prediction. Exit status as predict.")
    p.add_argument("-i", dest="inputs", nargs="+", required=True,
                   help="prediction folders: two or more to ensemble, one to post-process again")
    p.add_argument("-o", dest="output", required=True, help="output folder (created)")
    _add_shared(p)
    p.set_defaults(func=run_ensemble)


def _add_determine(subparsers) -> None:
    p = subparsers.add_parser(
        "determine-postprocessing", help="choose a model's post-processing values on its cross-validation cases",
        description="Choose the numbering and lesion constants of a trained model on the validation cases of its "
        "cross-validation folds (as nnUNetv2_determine_postprocessing does) and write postprocessing.json into "
        "the model folder, which predict then uses. Each fold's validation cases are predicted from the "
        "preprocessed dataset with that fold's checkpoint (saved as fold_<f>/validation/<case>_vfprobs.npz and "
        "reused while the checkpoint is unchanged) and scored with the evaluation's rules: the VerSe "
        "identification rate for the numbering values, lesion AP for the lesion values. Search: a few candidates "
        "per value, one value at a time; a value changes only when a candidate is better by a point on the pooled "
        "score and on more cases than it is worse (sign test p <= 0.05). The file records the values, every "
        "candidate's scores and the cases used. Needs $nnUNet_preprocessed of the dataset (the machine that "
        "trained). Exit status 0 when the file was written, 2 when nothing could run.")
    _add_model(p)
    p.add_argument("-f", dest="folds", nargs="+", type=int, default=None,
                   help="cross-validation folds whose validation cases choose (default: those of 0-4 with a "
                   "checkpoint; leave-one-domain-out folds are refused: their validation cases are test cases)")
    p.add_argument("--parameters", nargs="+", default=None, metavar="NAME",
                   help="search only these values (default: every searched one: "
                   + ", ".join(n for n in PP.NAMES if PP.candidates(n)) + ")")
    p.add_argument("--recompute", action="store_true",
                   help="predict the validation cases again even where saved probabilities of the checkpoint exist")
    p.set_defaults(func=run_determine)


def _error(command: str, message) -> int:
    print(f"vertebraformer {command}: {message}", file=sys.stderr)
    return 2


def _options(args):
    from .runner import RunOptions

    return RunOptions(preview=not args.no_preview, save_probabilities=args.save_probabilities, resume=args.resume,
                      num_parts=args.num_parts, part_id=args.part_id, progress=not args.disable_progress_bar,
                      numbering=args.numbering, dicom_seg=getattr(args, "dicom_seg", False))


def _overrides(args) -> dict:
    """The post-processing values named on the command line (``--set`` first, the two lesion options win)."""
    values = PP.parse_assignments(args.pp_set)
    for name in ("lesion_threshold", "lesion_min_volume_mm3"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return values


def run_predict(args) -> int:
    from .predict_folder import PredictionError, predict_folder

    try:
        _, failed = predict_folder(
            args.input, args.output, model=args.model, dataset=args.dataset, configuration=args.configuration,
            trainer=args.trainer, plans=args.plans, folds=args.folds, checkpoint=args.checkpoint, device=args.device,
            tta=True if args.enable_tta else False if args.disable_tta else None, bf16=False if args.fp32 else None,
            step_size=args.step_size, options=_options(args), postprocessing_file=args.postprocessing,
            overrides=_overrides(args), coarse=not args.no_coarse)
    except (PredictionError, PP.PostprocessingError) as e:
        return _error("predict", e)
    return 1 if failed else 0


def run_ensemble(args) -> int:
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        return _error("ensemble", f"-part_id must be in 0..{args.num_parts - 1} for -num_parts {args.num_parts}")
    from .ensemble import ensemble_folders

    try:
        overrides = _overrides(args)
    except PP.PostprocessingError as e:
        return _error("ensemble", e)
    return ensemble_folders(args.inputs, args.output, _options(args),
                            log=lambda m: print(m, file=sys.stderr if m.startswith("vertebraformer") else sys.stdout),
                            postprocessing_file=args.postprocessing, overrides=overrides)


def run_determine(args) -> int:
    from .postprocessing_search import determine_postprocessing
    from .predictor import DEFAULT_FOLDS as FOLDS, ModelError, resolve_model_folder

    try:
        folder = resolve_model_folder(args.model, args.dataset, args.configuration, args.trainer, args.plans)
        folds = args.folds
        if folds is None:
            folds = [f for f in FOLDS if (folder / f"fold_{f}" / args.checkpoint).is_file()]
            if not folds:
                raise ModelError(f"{folder}: no cross-validation fold (0-4) has {args.checkpoint}")
        determine_postprocessing(folder, folds, device=args.device, checkpoint=args.checkpoint,
                                 parameters=args.parameters, recompute=args.recompute)
    except ValueError as e:  # ModelError, PostprocessingError and the checks of the folds and data
        return _error("determine-postprocessing", e)
    return 0
