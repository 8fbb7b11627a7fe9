"""``vertebraformer train DATASET FOLD``: one fold with a VertebraFormer trainer, in nnU-Net's results layout.

Loads the plans and dataset.json from ``$nnUNet_preprocessed/DatasetXXX_Name/``, sets
``plans['continue_training']``, instantiates the trainer class directly (no name lookup), then trains
(``--c``: from checkpoint_final, else checkpoint_latest, else checkpoint_best, as nnU-Net) and validates.
It also puts our shim folder on ``nnUNet_extTrainer`` so that nnU-Net's own tools (its predictor reading
``trainer_name`` from a checkpoint) find the trainer in this process and its children.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Optional

DEFAULT_TRAINER = "VertebraFormerTrainer"
NETWORK_MARKER = "vertebraformer_nn.network"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train one fold (nnU-Net results layout)",
        description="Train one fold of a planned and preprocessed dataset with a VertebraFormer trainer, then "
        "validate it. Results: $nnUNet_results/DatasetXXX_Name/<Trainer>__<Plans>__<config>/fold_<f>/ "
        "(checkpoint_final.pth, progress.png, training log, validation/). Folds 0-4: cross-validation; "
        "further folds: leave-one-domain-out (see splits_final.json); a fold the splits file lacks is an error.")
    p.add_argument("dataset", help="dataset id (501) or name (Dataset501_MultiSpine)")
    p.add_argument("fold", help="fold number, or 'all'")
    p.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-tr", dest="trainer", default=DEFAULT_TRAINER,
                   help=f"trainer class (default {DEFAULT_TRAINER}; short: VertebraFormerTrainer_tiny, "
                   "VertebraFormerTrainer_CPU5min, VertebraFormerTrainer_CPU20min; any nnU-Net trainer name works too)")
    p.add_argument("-p", dest="plans", default=None,
                   help="plans identifier (default: the VertebraFormer plans found in the preprocessed folder)")
    p.add_argument("-device", dest="device", default=None, choices=("cpu", "cuda", "mps"),
                   help="device (default: cuda if available, else cpu)")
    p.add_argument("--c", dest="continue_training", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--val", dest="validation_only", action="store_true",
                   help="only run the final validation (needs checkpoint_final.pth)")
    p.add_argument("--npz", action="store_true", help="also save the validation softmax (.npz) for ensembling")
    p.add_argument("-num_gpus", dest="num_gpus", type=int, default=1,
                   help="DDP processes, as nnUNetv2_train: one per GPU with -device cuda; with -device cpu, CPU "
                   "processes (gloo), e.g. to check a DDP setup without GPUs")
    p.add_argument("--ddp-backend", dest="ddp_backend", default=None, choices=("nccl", "gloo"),
                   help="torch.distributed backend with -num_gpus > 1 (default: nccl on cuda, gloo on cpu)")
    p.set_defaults(func=run)
    return p


def find_plans(preprocessed_dataset_folder: str, device: Optional[str] = None) -> str:
    """The identifier of the plans file in the folder whose configurations use the VertebraFormer network; with
    both a CPU-preset and a GPU plans file there, the one matching ``device``."""
    found, cpu_preset = [], {}
    for path in sorted(glob.glob(os.path.join(preprocessed_dataset_folder, "*.json"))):
        try:
            with open(path) as f:
                plans = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(plans, dict) or "configurations" not in plans:
            continue
        classes = [str(c.get("architecture", {}).get("network_class_name", ""))
                   for c in plans["configurations"].values() if isinstance(c, dict)]
        if any(c.startswith(NETWORK_MARKER) for c in classes):
            name = os.path.splitext(os.path.basename(path))[0]
            found.append(name)
            cpu_preset[name] = (plans.get("vertebraformer") or {}).get("preset") == "cpu"
    if not found:
        raise SystemExit(f"vertebraformer train: no VertebraFormer plans in {preprocessed_dataset_folder}; run "
                         "`vertebraformer plan-and-preprocess` first, or name the plans with -p")
    if len(found) > 1 and device is not None:
        matching = [n for n in found if cpu_preset[n] == (device == "cpu")]
        if len(matching) == 1:
            return matching[0]
    if len(found) > 1:
        raise SystemExit(f"vertebraformer train: several VertebraFormer plans in {preprocessed_dataset_folder}: "
                         f"{', '.join(found)}; choose one with -p")
    return found[0]


def ensure_shim_on_ext_trainer() -> None:
    from . import shim_folder

    folder = shim_folder()
    current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if folder not in current:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join(current + [folder])


def preprocessed_folder(dataset: str) -> str:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` of a dataset id or name (nnU-Net's folders set up, our shim folder on
    ``nnUNet_extTrainer`` for this process and its children)."""
    from vertebraformer_nn.paths import ensure_env

    ensure_env()
    ensure_shim_on_ext_trainer()
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(int(dataset) if str(dataset).isdigit() else dataset)
    return os.path.join(str(nnUNet_preprocessed), name)


def build_trainer(dataset: str, fold, configuration: str = "3d_fullres", trainer: str = DEFAULT_TRAINER,
                  plans_identifier: Optional[str] = None, device: Optional[str] = None,
                  continue_training: bool = False):
    """The trainer instance, as ``vertebraformer train`` builds it (no checkpoint loaded yet)."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import join, load_json

    from .folds import check_fold, read_splits
    from .registry import UnknownTrainerError, resolve_trainer_class

    base = preprocessed_folder(dataset)
    fold = fold if fold == "all" else int(fold)
    check_fold(fold, read_splits(base))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    plans_identifier = plans_identifier or find_plans(base, device)
    plans = load_json(join(base, plans_identifier + ".json"))
    if configuration not in plans.get("configurations", {}):
        raise SystemExit(f"vertebraformer train: configuration {configuration!r} is not in {plans_identifier} "
                         f"(has {', '.join(plans.get('configurations', {}))})")
    plans["continue_training"] = bool(continue_training)
    dataset_json = load_json(join(base, "dataset.json"))
    try:
        cls = resolve_trainer_class(trainer)
    except UnknownTrainerError as e:
        raise SystemExit(f"vertebraformer train: {e}") from None
    return cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
               device=torch.device(device))


def run(args) -> int:
    import multiprocessing

    # nnU-Net sizes its export / evaluation pools from nnUNet_def_n_proc (default 8), read when it is first
    # imported: on a small machine 8 spawned workers only compete for the cores
    os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(8, os.cpu_count() or 1))))
    import torch

    from .folds import FoldError

    if args.continue_training and args.validation_only:
        print("vertebraformer train: --c and --val exclude each other", file=sys.stderr)
        return 2
    if args.num_gpus < 1:
        print(f"vertebraformer train: -num_gpus must be at least 1, not {args.num_gpus}", file=sys.stderr)
        return 2
    fold = args.fold if args.fold == "all" else args.fold
    if fold != "all" and not str(fold).lstrip("-").isdigit():
        print(f"vertebraformer train: fold must be an integer or 'all', not {fold!r}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.num_gpus > 1:
        return run_ddp(args, fold, device)
    if device == "cpu":  # as nnUNetv2_train does
        torch.set_num_threads(multiprocessing.cpu_count())
    elif device == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    try:
        trainer = build_trainer(args.dataset, fold, args.configuration, args.trainer, args.plans, device,
                                continue_training=args.continue_training)
    except FoldError as e:
        print(f"vertebraformer train: {e}", file=sys.stderr)
        return 2
    from nnunetv2.run.run_training import maybe_load_checkpoint

    maybe_load_checkpoint(trainer, args.continue_training, args.validation_only)
    if device == "cuda":
        from torch.backends import cudnn

        cudnn.deterministic = False
        cudnn.benchmark = True
    if not args.validation_only:
        trainer.run_training()
    trainer.perform_actual_validation(args.npz)
    print(f"vertebraformer train: results in {trainer.output_folder}")
    return 0


def run_ddp(args, fold, device: str) -> int:
    """``-num_gpus N``: nnU-Net's DDP path, one process per GPU (or CPU process with gloo), :mod:`.ddp`."""
    from .ddp import run_ddp_training
    from .folds import FoldError, check_fold, read_splits
    from .registry import UnknownTrainerError, resolve_trainer_class

    try:  # what can be wrong is found before any rank is spawned
        base = preprocessed_folder(args.dataset)
        check_fold(fold, read_splits(base))
        resolve_trainer_class(args.trainer)
        plans = args.plans or find_plans(base, device)
        run_ddp_training(args.dataset, fold if fold == "all" else int(fold), args.num_gpus, args.configuration,
                         args.trainer, plans, device, args.ddp_backend, args.continue_training,
                         args.validation_only, args.npz)
    except (FoldError, UnknownTrainerError, ValueError) as e:
        print(f"vertebraformer train: {e}", file=sys.stderr)
        return 2
    print(f"vertebraformer train: {args.num_gpus} DDP processes finished")
    return 0
