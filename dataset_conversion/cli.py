"""``vertebraformer convert``: one sub-verb per source, plus ``finalize``.

::

    vertebraformer convert verse      ROOT -d 501 [--append] [--name MultiSpine]
    vertebraformer convert ctspine1k  ROOT -d 501 --append
    vertebraformer convert spineweb   ROOT -d 501 --append [--image-pattern '{case}.*'] [--label-pattern '{case}_label.*']
    vertebraformer convert dicom      ROOT -d 501 --append [--mapping mapping.json]
    vertebraformer convert finalize   -d 501

Exit status: 0 when every case converted (and, for finalize, the dataset passed nnU-Net's integrity check);
1 when a case was skipped or failed (all others are converted) or finalize found a problem; 2 when nothing
could run (a clear message says why).
"""
from __future__ import annotations

import argparse
import sys

_SOURCE_HELP = {
    "verse": "VerSe 2019/2020: ROOT holds dataset-verse*/rawdata + derivatives (or the MICCAI naming)",
    "ctspine1k": "CTSpine1K: ROOT holds volumes/, labels/ and data_split.txt",
    "spineweb": "SpineWeb: ROOT holds one folder per case (CT, label map and/or centroid csv)",
    "dicom": "DICOM cohort: ROOT holds DICOM studies and mapping.json",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``convert`` with its sub-verbs on the main command's subparsers."""
    parser = subparsers.add_parser(
        "convert", help="convert a source into the MultiSpine nnU-Net raw dataset, then finalize it",
        description="Convert the MultiSpine sources into $nnUNet_raw/Dataset<ID>_MultiSpine, one source per call "
        "(--append for the second and later), then run 'finalize' once: it writes dataset.json, removes duplicate "
        "subjects, writes splits_final.json and runs nnU-Net's dataset integrity check. Sources are only read; "
        "re-converting a source replaces its cases. Layouts: docs/source_layouts.md.")
    verbs = parser.add_subparsers(dest="convert_verb", metavar="SOURCE")
    for source, text in _SOURCE_HELP.items():
        p = verbs.add_parser(source, help=text, description=text)
        p.add_argument("root", metavar="ROOT", help="the source folder (read only)")
        _dataset_args(p)
        p.add_argument("--append", action="store_true",
                       help="add to a dataset that already holds other sources (required then)")
        p.add_argument("--name", default=None, help="dataset name for a new dataset (default MultiSpine)")
        if source == "spineweb":
            p.add_argument("--image-pattern", default=None, help="CT file pattern in a case folder (default '{case}.*')")
            p.add_argument("--label-pattern", default=None, help="label-map pattern (default '{case}_label.*')")
            p.add_argument("--centroid-pattern", default=None, help="centroid csv pattern (default '{case}_centroids.csv')")
        if source == "dicom":
            p.add_argument("--mapping", default=None, help="mapping file (default ROOT/mapping.json)")
        p.add_argument("--quiet", action="store_true", help="print only the summary line and skipped cases")
        p.set_defaults(func=_run_convert, source=source)
    p = verbs.add_parser("finalize", help="dataset.json, de-duplication, splits_final.json, nnU-Net integrity check "
                         "(idempotent)")
    _dataset_args(p)
    p.add_argument("--skip-check", action="store_true", help="do not run nnU-Net's verify_dataset_integrity")
    p.set_defaults(func=_run_finalize)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    return parser


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--dataset-id", dest="dataset_id", type=int, required=True, help="nnU-Net dataset id, e.g. 501")


def _run_convert(args) -> int:
    from . import ConversionError, convert_source

    options = {k: getattr(args, k, None) for k in ("image_pattern", "label_pattern", "centroid_pattern", "mapping")}
    try:
        report = convert_source(args.source, args.root, args.dataset_id, append=args.append, name=args.name,
                                progress=not args.quiet, **options)
    except ConversionError as e:
        print(f"vertebraformer convert {args.source}: error: {e}", file=sys.stderr)
        return 2
    text = report.format()
    if args.quiet:
        text = "\n".join(ln for ln in text.splitlines() if "SKIPPED" in ln or not ln.startswith(" "))
    print(text)
    return 0 if report.ok else 1


def _run_finalize(args) -> int:
    from . import ConversionError, finalize

    try:
        report = finalize(args.dataset_id, check=not args.skip_check)
    except ConversionError as e:
        print(f"vertebraformer convert finalize: error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1
