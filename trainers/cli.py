"""``vertebraformer train DATASET FOLD``: one fold with a VertebraFormer trainer, in nnU-Net's results layout.

Loads the plans and dataset.json from ``$nnUNet_preprocessed/DatasetXXX_Name/``, sets
``plans['continue_training']``, instantiates the trainer class directly (no name lookup), then trains
(``--c``: from checkpoint_final, else checkpoint_latest, else checkpoint_best, as nnU-Net) and validates.
It also puts our shim folder on ``nnUNet_extTrainer`` so that nnU-Net's own tools (its predictor reading
``trainer_name`` from a checkpoint) find the trainer in this process and its children.
"""
from __future__ import annotations

import argparse
import os
import sys

from .build import DEFAULT_TRAINER, build_trainer, find_plans, preprocessed_folder


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
    p.add_argument("-pretrained_weights", dest="pretrained_weights", default=None,
                   help="start from the weights of this checkpoint (as nnUNetv2_train), or 'builtin': the built-in "
                   "model's (with -c 3d_lowres its coarse whole-field stage's), to fine-tune it on your data; modules "
                   "it lacks (a head) keep their initialisation, and its positional embedding is resampled to your "
                   "plans' patch")
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
    if args.pretrained_weights and (args.continue_training or args.validation_only):
        print("vertebraformer train: -pretrained_weights starts a new training: not with --c or --val", file=sys.stderr)
        return 2
    if args.pretrained_weights and args.num_gpus > 1:
        print("vertebraformer train: -pretrained_weights is for a single-process training", file=sys.stderr)
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

    if getattr(trainer, "TRAIN_ONLY_NEW_MODULES", False) and not args.pretrained_weights and not args.validation_only:
        from .new_heads import NEEDS_PRETRAINED

        print(f"vertebraformer train: {NEEDS_PRETRAINED.format(trainer=args.trainer)}", file=sys.stderr)
        return 2
    maybe_load_checkpoint(trainer, args.continue_training, args.validation_only)
    if args.pretrained_weights:
        from .checkpoints import start_from_pretrained

        try:
            start_from_pretrained(trainer, pretrained_path(args.pretrained_weights, args.configuration))
        except (OSError, KeyError, ValueError) as e:
            print(f"vertebraformer train: {e}", file=sys.stderr)
            return 2
    if device == "cuda":
        from torch.backends import cudnn

        cudnn.deterministic = False
        cudnn.benchmark = True
    if not args.validation_only:
        trainer.run_training()
    trainer.perform_actual_validation(args.npz)
    print(f"vertebraformer train: results in {trainer.output_folder}")
    return 0


def pretrained_path(name: str, configuration: str = "3d_fullres") -> str:
    """``-pretrained_weights``: a checkpoint's path, or ``builtin`` for the built-in model's of ``configuration``
    (its coarse whole-field stage's for the coarse configuration)."""
    if name != "builtin":
        return name
    from ..builtin_model import builtin_checkpoint
    from ..planners.presets import COARSE_CONFIGURATION

    return str(builtin_checkpoint(coarse=configuration == COARSE_CONFIGURATION))


def run_ddp(args, fold, device: str) -> int:
    """``-num_gpus N``: nnU-Net's DDP path, one process per GPU (or CPU process with gloo), :mod:`.ddp`."""
    from .ddp_launch import run_ddp_training
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
