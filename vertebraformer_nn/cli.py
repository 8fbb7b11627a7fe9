"""The ``vertebraformer`` command: one subcommand per pipeline step. Each step's module registers its own
subcommand (``add_parser``) and keeps its imports light, so ``--help`` answers at once."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    from .dataset_conversion.cli import add_parser as add_convert
    from .phantoms import add_parser as add_phantoms
    from .planners.cli import add_parser as add_plan_and_preprocess
    from .trainers.cli import add_parser as add_train
    from .evaluation.cli import add_parser as add_evaluate
    from .inference.cli import add_parser as add_predict_and_ensemble
    from .demo.cli import add_parser as add_demo

    parser = argparse.ArgumentParser(
        prog="vertebraformer",
        description="VertebraFormer-nn: nnU-Net-style vertebra segmentation, numbering and lesion localisation "
        "for spinal CT. Steps, in order: phantoms (built-in MultiSpine-Sim data) or your own sources -> "
        "convert <source> ... -> convert finalize -> plan-and-preprocess -> train -> predict (-> ensemble) "
        "-> evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_phantoms(sub)
    add_convert(sub)
    add_plan_and_preprocess(sub)
    add_train(sub)
    add_predict_and_ensemble(sub)
    add_evaluate(sub)
    add_demo(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    status = args.func(args)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
