"""``vertebraformer evaluate``::

    vertebraformer evaluate -ref $nnUNet_raw/Dataset501_MultiSpine -pred out/ [-o report.json] [--markdown report.md]
                            [--cases-from-splits FOLD] [--held-out-domain DOMAIN] [--lesion-thresholds 0.1 0.3]
                            [--bootstrap 10000] [--seed 0]
    vertebraformer evaluate -ref labels_folder/ -pred out/

Exit status: 0 when every expected case was scored cleanly, 1 when some prediction was missing or unusable
(the reports are still written, those cases listed), 2 when nothing could be evaluated.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="score a prediction folder: Dice/HD95, VerSe identification, lesion precision/recall/AP",
        description="Evaluate predictions (<case>.nii.gz in VerSe codes, <case>_lesion.nii.gz, optional "
        "<case>_lesion_candidates.nii.gz, <case>_ctd.json, <case>.json) against a reference: an nnU-Net raw dataset "
        "(dataset.json with verse_codes and case_info, labelsTr/labelsTs, lesionsTr/lesionsTs) or a folder of "
        "<case>.nii.gz VerSe-coded label maps with optional <case>_lesion.nii.gz and <case>_ctd.json. Reports "
        "segmentation (Dice, HD95 per vertebra, binary spine Dice), numbering (VerSe identification rate within "
        "20 mm, localisation distance, cases with every vertebra right) and lesions (instance precision and recall "
        "of the written lesions, AP over every ranked candidate, at IoU thresholds), each mean with a "
        "patient-level 95%% BCa bootstrap interval, per domain, in-domain vs cross-domain and overall. Vertebrae cut "
        "by the field of view (the reference's ignore region: the dataset's ignore label, 255 in VerSe-coded maps) "
        "are not scored, and a predicted vertebra lying there is neither an extra nor a miss. A missing or unusable "
        "prediction counts as an empty one and makes the exit status 1.")
    p.add_argument("-ref", dest="reference", required=True, metavar="REF",
                   help="nnU-Net raw dataset folder, or a folder of reference label maps")
    p.add_argument("-pred", dest="prediction", required=True, metavar="PRED", help="prediction folder")
    p.add_argument("-o", dest="output", default=None, metavar="JSON",
                   help="JSON report (default PRED/evaluation.json)")
    p.add_argument("--markdown", default=None, metavar="MD",
                   help="markdown report (default: the JSON path with .md)")
    p.add_argument("--cases-from-splits", dest="fold", type=int, default=None, metavar="FOLD",
                   help="evaluate the validation cases of this fold of the dataset's splits_final.json (a "
                   "leave-one-domain-out fold also sets the held-out domain)")
    p.add_argument("--held-out-domain", dest="held_out_domain", default=None, metavar="DOMAIN",
                   help="domain held out of training (e.g. verse): adds in-domain and cross-domain rows")
    p.add_argument("--lesion-thresholds", dest="thresholds", type=float, nargs="+", default=[0.1, 0.3],
                   metavar="IOU", help="3D IoU thresholds for lesion matching (default 0.1 0.3)")
    p.add_argument("--bootstrap", dest="n_resamples", type=int, default=10_000, metavar="N",
                   help="bootstrap resamples (default 10000; 0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--id-radius", dest="id_radius", type=float, default=20.0, metavar="MM",
                   help="identification radius in mm (default 20, VerSe)")
    p.add_argument("--id-rule", dest="id_rule", choices=("closest_prediction", "verse_code"),
                   default="closest_prediction",
                   help="closest_prediction (default): the predicted centroid of the vertebra's code must be the "
                   "closest prediction to it; verse_code: the official VerSe get_hits test (the reference "
                   "centroid closest to the prediction, among codes present in both, must carry its code)")
    p.add_argument("--skip-missing", dest="skip_missing", action="store_true",
                   help="leave cases without a prediction out of the means (they are still listed)")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .evaluate import EvaluationError, evaluate, exit_status
    from .report import markdown, write_reports

    if any(not 0.0 < t <= 1.0 for t in args.thresholds):
        print("vertebraformer evaluate: --lesion-thresholds must lie in (0, 1]", file=sys.stderr)
        return 2
    try:
        report = evaluate(args.reference, args.prediction, cases_from_splits=args.fold,
                          held_out_domain=args.held_out_domain, lesion_thresholds=args.thresholds,
                          n_resamples=args.n_resamples, seed=args.seed, id_radius_mm=args.id_radius,
                          id_rule=args.id_rule, skip_missing=args.skip_missing, progress=not args.quiet)
    except EvaluationError as e:
        print(f"vertebraformer evaluate: {e}", file=sys.stderr)
        return 2
    json_path, md_path = write_reports(report, args.output or Path(args.prediction) / "evaluation.json",
                                       args.markdown)
    text = markdown(report)
    print(text[: text.index("## Definitions")].rstrip())
    print(f"\nvertebraformer evaluate: reports in {json_path} and {md_path}")
    for failure in report["failures"]:
        print(f"vertebraformer evaluate: {failure['case']}: {failure['status']}: {'; '.join(failure['problems'])}",
              file=sys.stderr)
    return exit_status(report)
