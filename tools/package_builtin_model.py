"""Put a trained model into the package as the built-in model (``vertebraformer_nn/builtin_model/``).

    python tools/package_builtin_model.py -f 0 --model MODEL
    python tools/package_builtin_model.py -f 0 1 2 --coarse-folds 0 --model MODEL   (a fold ensemble)

MODEL: a trained ``$nnUNet_results/DatasetXXX/<Trainer>__<Plans>__3d_fullres`` folder.

Copies the model folder's plans.json, dataset.json and postprocessing.json, and each fold's checkpoint cut to what
prediction reads (``trainers.checkpoints.inference_checkpoint``: weights in float16 unless ``--dtype float32``), for
the model and for its coarse ``3d_lowres`` sibling when that has the folds ``--coarse-folds`` names (default the same
as ``-f``; fewer keep a fold ensemble within the limit: one fold of either is ~4.5 MB in float16, and prediction runs
the coarse stage with the folds it has, ``coarse_stage.find_coarse_model``). The destination is emptied first, so
nothing of an earlier model stays. Prints the sizes; refuses more than ``--max-mb`` (20 MB, the package's limit).
The model card (``MODEL_CARD.md``) is written by hand from the measurements: this tool does not touch it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from vertebraformer_nn.builtin_model import CHECKPOINT, FOLDER
from vertebraformer_nn.inference.coarse_stage import find_coarse_model, sibling_folder
from vertebraformer_nn.trainers.checkpoints import inference_checkpoint, load_checkpoint_file

FILES = ("plans.json", "dataset.json", "postprocessing.json")


def package_folder(source: Path, dest: Path, folds, dtype=torch.float16) -> int:
    """One model folder into ``dest``; the bytes written."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    written = 0
    for name in FILES:
        if (source / name).is_file():
            written += shutil.copyfile(source / name, dest / name).stat().st_size
    for fold in folds:
        checkpoint = load_checkpoint_file(str(source / f"fold_{fold}" / CHECKPOINT), map_location="cpu")
        target = dest / f"fold_{fold}" / CHECKPOINT
        target.parent.mkdir()
        torch.save(inference_checkpoint(checkpoint, dtype), target)
        written += target.stat().st_size
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="trained 3d_fullres model folder")
    p.add_argument("-f", dest="folds", nargs="+", default=["0"], help="folds to ship (default 0)")
    p.add_argument("--coarse-folds", nargs="+", default=None,
                   help="folds of the coarse 3d_lowres sibling to ship, some of -f (default: the same as -f)")
    p.add_argument("--into", type=Path, default=FOLDER.parent,
                   help=f"folder to put the model folder in (default the package's {FOLDER.parent})")
    p.add_argument("--max-mb", type=float, default=20.0, help="refuse a model larger than this (default 20)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="how the weights are stored (default float16: half the size; the built-in model's unseen-style "
                   "phantom metrics were the same with float16 and float32 weights)")
    args = p.parse_args(argv)
    if args.into == FOLDER.parent and args.model.name != FOLDER.name:
        sys.exit(f"{args.model.name} is not the built-in model's folder name {FOLDER.name}: the predictor finds the "
                 "coarse sibling by name, so rename nothing; change builtin_model.FOLDER instead")
    coarse_folds = args.folds if args.coarse_folds is None else args.coarse_folds
    if not set(coarse_folds) <= set(args.folds):
        sys.exit(f"--coarse-folds {' '.join(coarse_folds)}: only folds shipped with -f are ever run with the coarse "
                 "stage")
    dest = args.into / args.model.name
    dtype = getattr(torch, args.dtype)
    size = package_folder(args.model, dest, args.folds, dtype)
    coarse = sibling_folder(args.model)
    found, present, note = find_coarse_model(args.model, coarse_folds, CHECKPOINT)
    if found is not None and present == coarse_folds:
        size += package_folder(coarse, dest.parent / coarse.name, coarse_folds, dtype)
        print(f"coarse stage {coarse.name}, fold(s) {' '.join(coarse_folds)}: packaged")
    else:
        if coarse is not None:  # an earlier model's coarse stage must not stay beside this one
            shutil.rmtree(dest.parent / coarse.name, ignore_errors=True)
        print(f"no coarse stage with these folds ({note}): the built-in model numbers without it")
    print(f"built-in model in {dest.parent}: {size / 1e6:.1f} MB")
    if size > args.max_mb * 1e6:
        sys.exit(f"{size / 1e6:.1f} MB is over the limit of {args.max_mb} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
