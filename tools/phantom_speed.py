"""Time MultiSpine-Sim: seconds per case to build (sample, render, acquire) and to write, on one core.

    python tools/phantom_speed.py [--cases-per-source 3] [--seed 0] [--randomise 0.5] [--profile]

Builds every case of a plan in a loop (the default, CPU-friendly resolution of each source's style), then runs
generate() into a temporary folder for the writing cost; prints per-case build times, their median and mean,
and the total per case with writing. ``--profile`` adds the top of a cProfile of the builds. Numbers measured
beside other work on a shared machine are not the generator's speed: run it on an idle one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the generator runs in a data-preparation job

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vertebraformer_nn.phantoms import generate  # noqa: E402
from vertebraformer_nn.phantoms.orchestrate import CaseBuilder  # noqa: E402
from vertebraformer_nn.phantoms.plan import build_plan  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases-per-source", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--randomise", type=float, default=0.5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    plan = build_plan(args.cases_per_source, args.seed, randomise=args.randomise)
    builder = CaseBuilder(plan)
    builder.build(plan.cases[0])  # warm caches and imports
    times = []
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    for cp in plan.cases:
        t0 = time.perf_counter()
        case = builder.build(cp)
        times.append(time.perf_counter() - t0)
        voxels = float(np.prod(case.grid.shape)) / 1e6
        print(f"{cp.key:48s} {case.params.fov:16s} {voxels:5.2f} Mvoxels {times[-1]:6.2f} s", flush=True)
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    print(f"build: median {statistics.median(times):.2f} s, mean {statistics.mean(times):.2f} s "
          f"over {len(times)} cases")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index = generate(tmp, cases_per_source=args.cases_per_source, seed=args.seed, randomise=args.randomise,
                         progress=False)
        total = time.perf_counter() - t0
    print(f"generate (build + write): {total / len(index['cases']):.2f} s per case over {len(index['cases'])} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
