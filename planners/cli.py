"""``vertebraformer plan-and-preprocess``::

    vertebraformer plan-and-preprocess -d 501 [-c 3d_fullres 3d_lowres] [--verify_dataset_integrity] [-np 2]
                                       [--gpu-memory-gb 24 | --preset cpu] [--clean] [--plans-name NAME]
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plan-and-preprocess", help="fingerprint, plan (VertebraFormer planner) and preprocess a raw dataset",
        description="nnU-Net's dataset fingerprint, then the VertebraFormer plans (spacing, token-sized patch "
        "elongated head-foot, batch size from a memory budget, a CT window that keeps lesions and soft tissue), "
        "then preprocessing with the lesion map as a second segmentation channel. Writes "
        "$nnUNet_preprocessed/Dataset<ID>_<name>/VertebraFormerPlans.json (VertebraFormerCPUPlans.json with "
        "--preset cpu) with two configurations, 3d_fullres and 3d_lowres (the coarse whole-field stage of the "
        "numbering: one patch holds the whole scan, the long ones included), and their data folders "
        "<plans>_<configuration>.")
    parser.add_argument("-d", "--dataset", dest="dataset_id", type=int, required=True, metavar="ID",
                        help="dataset id (e.g. 501)")
    parser.add_argument("-c", dest="configurations", nargs="+", default=["3d_fullres", "3d_lowres"],
                        metavar="CONFIG", help="configurations to preprocess (default both: 3d_fullres 3d_lowres; "
                        "both are always planned)")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="run nnU-Net's dataset integrity check first (also re-extracts the fingerprint)")
    parser.add_argument("-np", dest="num_processes", type=int, default=2, metavar="N",
                        help="worker processes for fingerprint and preprocessing (default 2)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--gpu-memory-gb", dest="gpu_memory_gb", type=float, default=24.0, metavar="GB",
                        help="GPU memory target that sizes patch and batch (default 24); plans VertebraFormerPlans")
    budget.add_argument("--preset", choices=["cpu"], default=None,
                        help="cpu: 3.5 mm isotropic, a 512-token patch, batch 2, the cpu network preset; plans "
                        "VertebraFormerCPUPlans")
    parser.add_argument("--clean", action="store_true", help="re-extract the fingerprint even if it exists")
    parser.add_argument("--disc-head", dest="disc_head", action="store_true",
                        help="give 3d_fullres the disc head (numbering cuts fused vertebrae where it sees a disc); off "
                        "by default: trained from the first step it cost unseen scanner styles numbering accuracy")
    parser.add_argument("--plans-name", dest="plans_name", default=None,
                        help="plans identifier to write instead of the preset's default")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from .api import plan_and_preprocess

    if any(c not in ("3d_fullres", "3d_lowres") for c in args.configurations):
        print(f"plan-and-preprocess: VertebraFormer plans 3d_fullres and 3d_lowres (got "
              f"{' '.join(args.configurations)})", file=sys.stderr)
        return 2
    if args.num_processes < 1:
        print("plan-and-preprocess: -np must be at least 1", file=sys.stderr)
        return 2
    try:
        plan_and_preprocess(args.dataset_id, preset=args.preset, gpu_memory_gb=args.gpu_memory_gb,
                            configurations=args.configurations, num_processes=args.num_processes,
                            verify=args.verify_dataset_integrity, clean=args.clean, plans_name=args.plans_name,
                            disc_head=args.disc_head)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"plan-and-preprocess: {exc}", file=sys.stderr)
        return 1
    return 0
