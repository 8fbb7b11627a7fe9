"""The ``vertebraformer phantoms`` subcommand."""
from __future__ import annotations

import argparse
from pathlib import Path


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .plan import SOURCES
    from .randomise import DEFAULT_STRENGTH
    from .styles import EXTRA_STYLES

    p = subparsers.add_parser(
        "phantoms", help="write MultiSpine-Sim: phantom spine CT in the four sources' native layouts, plus ground truth",
        description="Write MultiSpine-Sim phantoms: VerSe, CTSpine1K, SpineWeb and a DICOM cohort in their native "
        "layouts (docs/source_layouts.md), each with its own scanner style, and the complete ground truth under "
        "OUT/ground_truth (index.json). Seeded and deterministic.")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (new, empty, or an earlier MultiSpine-Sim output)")
    p.add_argument("--cases-per-source", type=int, default=6, help="cases per source (default 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="sources to write (default all)")
    p.add_argument("--extra-style", action="append", default=[], choices=sorted(EXTRA_STYLES), dest="extra_styles",
                   metavar="NAME", help=f"also write held-out scanner style NAME ({', '.join(sorted(EXTRA_STYLES))}) "
                   "under OUT/extra_NAME; repeatable")
    p.add_argument("--extra-cases", type=int, default=4, help="cases per extra style (default 4)")
    p.add_argument("--randomise", type=_fraction, default=DEFAULT_STRENGTH, metavar="P",
                   help="domain randomisation of the sources' scans: each group of scan parameters (HU, noise, kernel, "
                   "slices, contrast, metal, field of view, tilt, partial volume) is drawn far beyond its style with "
                   f"probability P (default {DEFAULT_STRENGTH}; 0 = the sources' own styles only)")
    p.add_argument("--previews", action="store_true", help="write sagittal/coronal pictures to OUT/previews/*.png")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from collections import Counter

    from .orchestrate import generate

    index = generate(args.out, cases_per_source=args.cases_per_source, seed=args.seed, sources=args.sources,
                     extra_styles=args.extra_styles, extra_cases=args.extra_cases, previews=args.previews,
                     progress=not args.quiet, randomise=args.randomise)
    cases = index["cases"]
    per_source = Counter(c["source"] for c in cases)
    print(f"MultiSpine-Sim (seed {index['seed']}) written to {args.out}")
    for source, n in per_source.items():
        sub = [c for c in cases if c["source"] == source]
        print(f"  {source:<16} {n} cases, {sum(len(c['lesions']) for c in sub)} lesions, "
              f"{sum(len(c['fractures']) for c in sub)} fractures, transitional: "
              f"{', '.join(sorted({c['transitional'] for c in sub if c['transitional']})) or 'none'}")
    print(f"  ground truth: {Path(args.out) / 'ground_truth' / 'index.json'}")
    if args.previews:
        print(f"  pictures: {Path(args.out) / 'previews'}")
    return 0
