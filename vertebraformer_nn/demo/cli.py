"""The ``vertebraformer demo`` subcommand (argument parsing only; the pipeline is imported when it runs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import STARTS, UNSEEN_CASES


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="the whole pipeline on built-in phantom data in one command, with a report",
        description="Run the whole pipeline on MultiSpine-Sim phantoms: generate the four sources and an unseen "
        "scanner style, convert them into a raw dataset (id 599), plan and preprocess, train fold 0 for the time "
        "left of --minutes (a second fold and an ensemble only when the time allows), predict the fold's "
        "validation cases and the unseen-style cases, evaluate, and write OUT/REPORT.md. Everything, nnU-Net's "
        "folders included, stays under OUT. Stop it any time: running the same command again reuses the "
        "finished steps. On a CPU the training fine-tunes the built-in model (minutes of training from random "
        "weights, --start scratch, give a weak model); this shows the pipeline, not the method's accuracy.")
    p.add_argument("-o", dest="out", type=Path, default=Path("demo_out"), metavar="OUT",
                   help="output folder (default demo_out; new, empty, or an earlier demo's)")
    p.add_argument("--cases-per-source", type=int, default=4,
                   help="phantom cases per source (default 4)")
    p.add_argument("--unseen-cases", type=int, default=UNSEEN_CASES,
                   help=f"unseen-style cases to predict and score (default {UNSEEN_CASES})")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="about how long the whole demo may take (default 10); training gets what the other "
                   "steps leave")
    p.add_argument("-device", "--device", dest="device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default): cuda when torch sees a GPU, else cpu. A CPU gets the CPU preset plans")
    p.add_argument("--max-folds", type=int, choices=(1, 2), default=2,
                   help="train at most this many folds (default 2: a second fold and an ensemble when time allows)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("-tr", dest="trainer", default=None, metavar="TRAINER",
                   help="a fixed-schedule trainer instead of the time-budgeted VertebraFormerTrainer_budget (e.g. "
                   "VertebraFormerTrainer_tiny, a smoke test of a minute or two)")
    p.add_argument("--start", choices=STARTS, default=None,
                   help="where training starts: builtin (the built-in model's weights, fine-tuned on the demo's "
                   "phantoms, as `train -pretrained_weights builtin`; the default on a CPU) or scratch (random "
                   "weights; the default on a GPU)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .config import DemoConfig
    from .environment import DemoError
    from .pipeline import run_demo

    config = DemoConfig(out=args.out, cases_per_source=args.cases_per_source, minutes=args.minutes,
                        device=args.device, trainer=args.trainer, max_folds=args.max_folds, seed=args.seed,
                        start=args.start, unseen_cases=args.unseen_cases)
    try:
        run_demo(config)
    except DemoError as e:
        print(f"vertebraformer demo: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
