"""Seconds of the numbering on a 1 mm model grid, profiled: a synthetic spine, no model, no network.

    python benchmarks/numbering_speed.py [--shape 600 358 358] [--spacing 1] [--noise 0.3] [--top 25] [--out-md F]

Issue 12 part 2 asks the numbering to take at most 10 % of a case's time on a 1 mm grid. This builds what the
predictor hands over for such a case (a ``GridProbabilities``: argmax, foreground and lesion maps on the whole grid,
the 26 vertebra and 26 level probabilities at the spine's voxels) for 24 vertebrae C1..L5 stacked along axis 0
(bodies 20-30 mm high, 12 % of each vertebra's voxels with a noisy level, so that the smoothing has work), then runs
``numbering.number_vertebrae`` under cProfile and reports the total and the most expensive functions. The default
shape is the 512 x 512 x 600 CT at 0.7 x 0.7 x 1 mm on a 1 mm grid (77 M voxels). Not a test: the lead runs it on an
idle machine.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from predict_speed import write_result  # this folder is on the path when a script here runs



def synthetic_spine(shape: Sequence[int], spacing: float, noise: float, seed: int = 0):
    """A ``GridProbabilities`` of 24 vertebrae along axis 0 (head at the high end), module docstring."""
    from vertebraformer_nn.inference.grid_probabilities import LEVELS, GridProbabilities

    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    argmax = np.zeros(shape, np.uint8)
    foreground = np.zeros(shape, np.float16)
    cy, cx = shape[1] / 2, shape[2] / 2
    y, x = np.ogrid[:shape[1], :shape[2]]
    disc = ((y - cy) * spacing / 22) ** 2 + ((x - cx) * spacing / 25) ** 2 <= 1  # a body 44 x 50 mm
    heights = np.linspace(20, 30, 24) / spacing
    top = shape[0] - 1
    for level in range(1, 25):  # C1 at the top
        h = int(round(heights[level - 1]))
        lo = max(top - h, 0)
        argmax[lo:top][:, disc] = level
        foreground[lo:top][:, disc] = 0.97
        top = lo - max(1, int(round(4 / spacing)))  # a 4 mm disc
        if top <= 0:
            break
    index = np.flatnonzero(argmax.ravel())
    levels = argmax.ravel()[index].astype(np.int64) - 1
    n = len(index)
    seg = np.full((n, LEVELS), 0.001, np.float32)
    seg[np.arange(n), levels] = 0.95
    unsure = rng.random(n) < noise * 0.4
    shift = np.clip(levels + rng.choice([-1, 1], n), 0, LEVELS - 1)
    seg[unsure, levels[unsure]] = 0.5
    seg[unsure, shift[unsure]] = 0.45
    ident = seg.copy()
    grid = GridProbabilities(shape, argmax, foreground, np.zeros(shape, np.float16), index.astype(np.int64),
                             seg.astype(np.float16), ident.astype(np.float16))
    return grid


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs=3, type=int, default=[600, 358, 358])
    p.add_argument("--spacing", type=float, default=1.0)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out-md", type=Path, help="default benchmarks/results/numbering_speed_<date>.md")
    args = p.parse_args(argv)
    from vertebraformer_nn.inference.numbering import number_vertebrae

    t = time.perf_counter()
    probs = synthetic_spine(args.shape, args.spacing, args.noise)
    built = time.perf_counter() - t
    print(f"grid {args.shape} ({np.prod(args.shape) / 1e6:.0f} M voxels), {len(probs.index) / 1e6:.2f} M spine voxels, "
          f"built in {built:.1f} s", flush=True)
    profile = cProfile.Profile()
    t = time.perf_counter()
    profile.enable()
    result = number_vertebrae(probs, [args.spacing] * 3, 0, 1)
    profile.disable()
    seconds = time.perf_counter() - t
    stream = io.StringIO()
    pstats.Stats(profile, stream=stream).sort_stats("cumulative").print_stats(args.top)
    text = "\n".join([
        f"# Numbering on a synthetic {args.spacing:g} mm grid, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"Command: `{' '.join([sys.executable, *sys.argv])}`", "",
        f"Grid {'x'.join(map(str, args.shape))} ({np.prod(args.shape) / 1e6:.1f} M voxels), "
        f"{len(probs.index) / 1e6:.2f} M spine voxels; numbering {seconds:.1f} s (under cProfile); "
        f"{len(result.instances)} vertebrae numbered.", "", "```", stream.getvalue().strip(), "```", ""])
    print(text)
    write_result(text, args.out_md, "numbering_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
