"""A model on the real CT cases kept for checking (issue 16 part 5): predict them, score them, write a report.

    python benchmarks/real_ct.py --work /tmp/realct --tag demo -m MODEL_FOLDER -f 0
    python benchmarks/real_ct.py --work /tmp/realct --tag demo --score-only     # score the predictions already there
    python benchmarks/real_ct.py --work /tmp/rc2 --tag try --renumber /tmp/realct/predictions --set NAME=VALUE

Every option this script does not know goes to ``vertebraformer predict`` unchanged (``-m``/``-d``/``-c``/``-tr``/
``-p``, ``-f``, ``-chk``, ``-device``, ``--disable_tta``, ``--no-coarse``, ``--set``, ``--continue``...): the cases
are predicted by the command itself (``vertebraformer_nn.cli.main(["predict", ...])``, i.e. ``predict_folder``),
with the model's own plans and post-processing, exactly as a user would run it. ``--renumber FOLDER`` runs no
network: ``vertebraformer ensemble -i FOLDER`` numbers and post-processes again the probabilities an earlier run saved
there (``--save_probabilities``), with the options given (``--set``, ``--numbering``, ``--postprocessing``), in
seconds: the way to try post-processing values.

Cases (``$VERTEBRAFORMER_REAL_DATA``, default ``../shared/data/real``; see its MANIFEST.md), linked (never copied,
never modified) into ``<work>/input`` under short names; predictions go to ``<work>/predictions``:

* ``verse014``: real lumbar CT, manual VerSe mask L1-L5 (VerSe codes). Target: binary Dice >= 0.80, L1-L5 right.
* ``tptbox``: real spine crop, manual L2-L4 (VerSe codes; L2 and L4 cut by the crop). Target: L3 right.
* ``example_ct``: real abdomen CT; the reference is TotalSegmentator's prediction ``spine_report/totalseg.nii.gz``
  in TotalSegmentator codes (VerSe = 51 - TS for C1..L5; TS 26, the sacrum, is no VerSe vertebra and reads as
  background, as VerSe leaves the sacrum unlabelled). Target: binary Dice >= 0.75, at least 5 of T11-L5 right.
* ``chest``: real chest DICOM series without labels. Target: T1-T12 counted right by eye, on the preview.

Measures, per case (pure functions below, the evaluation's own readers and metrics):

* binary spine Dice (``evaluation.metrics.binary_dice``) over the reference's head-foot extent: the slices (along
  the grid axis closest to head-foot) outside the first..last slice that holds a reference label are the ignore
  region of the evaluation's border rule (``evaluation.border.apply_border_rule``): neither map is scored there, and
  a predicted vertebra mostly there (a neighbour the reference leaves unlabelled, e.g. T12 above verse014's L1) is
  not scored at all. A reference that spans the whole field (TPTBox) is scored whole;
* per reference vertebra: the predicted label that overlaps it most (any non-zero predicted code, voxel counts from
  ``metrics.overlap_counts``; none when nothing overlaps) and whether it is the reference's level;
* the predicted vertebrae (codes in ``<case>.nii.gz``, the whole field), ``quality`` of ``<case>.json`` (flag and
  reasons) and the numbering anchors (``numbering.anchors``) when the report has them.

Writes ``<results>/real_ct_<date>_<tag>.md`` (a table with the targets beside, then per case its levels and its
preview ``real_ct_<date>_<tag>_<case>_preview.png`` copied beside the report) and the same numbers as ``.json``.
Not a timed benchmark and not a test; the lead runs it with the final model.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import image_io, labels
from vertebraformer_nn.atomic import write_text_atomic
from vertebraformer_nn.evaluation import metrics
from vertebraformer_nn.evaluation.border import apply_border_rule
from vertebraformer_nn.evaluation.references import present_values, verse_codes
from vertebraformer_nn.geometry import superior_axis
from vertebraformer_nn.inference.summary import read_summary
from vertebraformer_nn.paths import real_data_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class RealCase:
    name: str  # the case name predict gives it (the link's name in <work>/input)
    ct: str  # relative to the real-data folder: a file or a DICOM folder
    reference: Optional[str] = None  # label map on the CT's grid
    coding: str = "verse"  # "verse" or "totalseg" (the reference's label values)
    what: str = ""
    min_dice: Optional[float] = None  # targets of issue 16
    levels: Tuple[str, ...] = ()  # reference levels that must be named right ...
    min_right: int = 0  # ... at least this many of them
    by_eye: str = ""  # a target only a person can check on the picture
    note: str = ""  # what is odd about the case or its reference


CASES = (
    RealCase("verse014", "verse_sub-verse014/sub-verse014_ct.nii.gz",
             "verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz", "verse",
             "lumbar CT, manual VerSe mask L1-L5", 0.80, tuple(labels.LUMBAR), 5,
             note="Oblique grid (about 15 degrees); only 80 mm left-right: every vertebra touches a lateral border "
             "(L3-L5 both; transverse processes cut). The top 14 mm above L1 and 17 mm below L5 are unlabelled."),
    RealCase("tptbox", "tptbox_sample_ct/sub-ct_label-22_ct.nii.gz",
             "tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz", "verse",
             "spine crop, manual L2-L4 (L2, L4 cut by the crop)", None, ("L3",), 1,
             note="A 110 x 70 x 110 mm crop: L2 touches the top border, L4 the bottom; only L3 is whole."),
    RealCase("example_ct", "totalsegmentator/example_ct.nii.gz", "totalsegmentator/spine_report/totalseg.nii.gz",
             "totalseg", "abdomen CT, TotalSegmentator's prediction T11-L5 (S1 read as background)", 0.75,
             ("T11", "T12", *labels.LUMBAR), 5,
             note="3 mm voxels. T11 is a 76-voxel sliver in the top 3 slices and T12 touches the top border too (both "
             "cut by the field of view); TotalSegmentator's L5 is in two pieces. A prediction, not ground truth."),
    RealCase("chest", "itkelastix_chest_dicom", None, "verse", "chest DICOM series, no labels",
             by_eye="T1-T12 counted right (from T1 and the ribs, on the preview)"),
)


# --- pure parts ------------------------------------------------------------------------------------------------

def totalseg_lut() -> np.ndarray:
    """TotalSegmentator v2 ``total`` spine codes -> VerSe codes (MANIFEST.md: VerSe = 51 - TS for C1..L5; TS 26,
    the sacrum, -> 0). Other values are -1: ``references.verse_codes`` refuses them, naming the file."""
    lut = np.full(51, -1, dtype=np.int16)
    lut[0] = lut[26] = 0
    lut[27:51] = 51 - np.arange(27, 51)
    return lut


def outside_extent(reference: np.ndarray, axis: int) -> np.ndarray:
    """Boolean mask of the slices along ``axis`` before the first and after the last that hold a reference label
    (all False for an empty reference)."""
    along = np.flatnonzero(np.any(reference > 0, axis=tuple(a for a in range(reference.ndim) if a != axis)))
    inside = np.ones(reference.shape[axis], bool)
    if along.size:
        inside[: along[0]] = inside[along[-1] + 1:] = False
    shape = [1] * reference.ndim
    shape[axis] = -1
    return np.broadcast_to(~inside.reshape(shape), reference.shape)


def spine_dice(reference: np.ndarray, prediction: np.ndarray, axis: int) -> Tuple[float, List[int]]:
    """(binary spine Dice over the reference's extent along ``axis``, predicted codes not scored); the rule is the
    module docstring's."""
    scored = apply_border_rule(reference, outside_extent(reference, axis), prediction, axis)
    return metrics.binary_dice(scored.reference, scored.prediction), scored.not_scored


def level_check(reference: np.ndarray, prediction: np.ndarray) -> List[dict]:
    """Per reference vertebra, head to foot: the predicted code overlapping it most, the fraction of the reference
    vertebra it covers, and whether it is the reference's level (VerSe codes in both maps)."""
    counts = metrics.overlap_counts(reference, prediction)
    rows = []
    for code in labels.sort_head_to_foot(c for c in present_values(reference).tolist() if c):
        overlap = counts[code, 1:]
        best = int(np.argmax(overlap)) + 1 if overlap.any() else None
        rows.append({"reference": labels.name(code), "predicted": labels.name(best) if best else None,
                     "covered": float(overlap[best - 1] / counts[code].sum()) if best else 0.0,
                     "right": best == code})
    return rows


def predicted_names(prediction: np.ndarray) -> List[str]:
    return [labels.name(c) for c in labels.sort_head_to_foot(c for c in present_values(prediction).tolist() if c)]


def target_verdict(case: RealCase, dice: Optional[float], levels: Sequence[dict]) -> str:
    """"met", "missed: <why>" or "by eye" for a case against its targets."""
    if case.by_eye:
        return "by eye"
    misses = []
    if case.min_dice is not None and (dice is None or dice < case.min_dice):
        misses.append(f"Dice {'-' if dice is None else f'{dice:.2f}'} < {case.min_dice:.2f}")
    right = sum(1 for row in levels if row["reference"] in case.levels and row["right"])
    if right < case.min_right:
        misses.append(f"{right} of {'/'.join(case.levels)} right, {case.min_right} needed")
    return "met" if not misses else "missed: " + "; ".join(misses)


# --- reading and scoring one case ------------------------------------------------------------------------------

def read_reference(path: Path, coding: str):
    """(VerSe-coded array, image) of a reference label map in ``coding`` ("verse" or "totalseg")."""
    image = image_io.read_label(path)
    return verse_codes(sitk.GetArrayFromImage(image), totalseg_lut() if coding == "totalseg" else None, path), image


def _case_report(pred_dir: Path, name: str) -> dict:
    path = pred_dir / f"{name}.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _failure(pred_dir: Path, name: str) -> str:
    """Why predict left a case without outputs, from its summary.csv row."""
    try:
        rows = [r for r in read_summary(pred_dir / "summary.csv") if r["case"] == name]
    except ValueError as e:
        return str(e)
    return f"summary.csv: {rows[-1]['status']}: {rows[-1]['reason']}" if rows else "not in summary.csv"


def score_case(case: RealCase, data: Path, pred_dir: Path) -> dict:
    """Everything the report says about one case; ``problem`` when it has no usable prediction."""
    report = _case_report(pred_dir, case.name)
    quality = report.get("quality") or {}
    result = {"case": case.name, "what": case.what, "reference": case.reference, "dice": None, "not_scored": [],
              "levels": [], "predicted": [], "quality": quality.get("flag"),
              "quality_reasons": [r.get("reason") for r in quality.get("reasons") or []],
              "anchors": [{k: a.get(k) for k in ("kind", "vertebra", "allows", "agrees")}
                          for a in (report.get("numbering") or {}).get("anchors") or []],
              "preview": None, "problem": None}
    pred_path = pred_dir / f"{case.name}.nii.gz"
    try:
        if not pred_path.is_file():
            raise image_io.ImageReadError(f"{pred_path}: no prediction ({_failure(pred_dir, case.name)})")
        pred_img = image_io.read_label(pred_path)
        prediction = verse_codes(sitk.GetArrayFromImage(pred_img), None, pred_path)
        result["predicted"] = predicted_names(prediction)
        if case.reference:
            reference, ref_img = read_reference(data / case.reference, case.coding)
            mismatch = image_io.grid_mismatch(ref_img, pred_img)
            if mismatch:
                raise image_io.ImageReadError(f"{pred_path}: not on the reference grid ({mismatch})")
            axis = superior_axis(ref_img.GetDirection())[0]
            dice, not_scored = spine_dice(reference, prediction, axis)
            result.update(dice=dice, not_scored=[labels.name(c) for c in not_scored],
                          levels=level_check(reference, prediction))
    except image_io.ImageReadError as e:
        result["problem"] = str(e)
    preview = pred_dir / f"{case.name}_preview.png"
    result["preview"] = str(preview) if preview.is_file() else None
    result["target"] = "no prediction" if result["problem"] else target_verdict(case, result["dice"],
                                                                                result["levels"])
    return result


# --- predicting ------------------------------------------------------------------------------------------------

def link_inputs(data: Path, input_dir: Path, cases: Sequence[RealCase]) -> None:
    """``<work>/input``: one symbolic link per case, named so that predict names the case ``case.name``."""
    input_dir.mkdir(parents=True, exist_ok=True)
    for entry in input_dir.iterdir():  # the links of an earlier run; anything else is not this script's to delete
        if not entry.is_symlink():
            raise SystemExit(f"real_ct: {entry} is not a link made by this script; choose another --work")
        entry.unlink()
    for case in cases:
        source = (data / case.ct).resolve()
        if not source.exists():
            raise SystemExit(f"real_ct: {source} missing (MANIFEST.md of {data})")
        link = input_dir / (case.name if source.is_dir() else case.name + ".nii.gz")
        link.symlink_to(source, target_is_directory=source.is_dir())


def run_command(command: str, source: Path, pred_dir: Path, args: Sequence[str]) -> int:
    """``vertebraformer predict`` (``source``: the input links) or ``ensemble`` (``source``: an earlier run's
    predictions with ``<case>_vfprobs.npz``, post-processed again without the network) into ``pred_dir``."""
    from vertebraformer_nn.cli import main

    if any(a in ("-i", "-o") for a in args):
        raise SystemExit("real_ct: -i/-o are set by this script (--work, --renumber)")
    return main([command, "-i", str(source), "-o", str(pred_dir), *args])


# --- the report ------------------------------------------------------------------------------------------------

def target_text(case: RealCase) -> str:
    parts = [f"binary Dice >= {case.min_dice:.2f}"] if case.min_dice is not None else []
    if case.levels:
        span = case.levels[0] if len(case.levels) == 1 else f"{case.levels[0]}-{case.levels[-1]}"
        parts.append(f"{span} right" if case.min_right == len(case.levels) else
                     f">= {case.min_right} of {span} right")
    return ", ".join(parts) or case.by_eye


def _levels_cell(levels: Sequence[dict]) -> str:
    if not levels:
        return "-"
    return f"{sum(r['right'] for r in levels)}/{len(levels)}: " + ", ".join(
        f"{r['reference']}->{r['predicted'] or 'none'}" for r in levels)


def _predicted_cell(names: Sequence[str]) -> str:
    return f"{len(names)} ({names[0]}-{names[-1]})" if names else "0"


def _anchors_cell(anchors: Sequence[dict]) -> str:
    cells = [f"{a['kind']} at {a['vertebra']}{'' if a.get('agrees') else ' (disagrees)'}"
             for a in anchors if a["kind"] != "rib_bearing"]
    ribs = [a["vertebra"] for a in anchors if a["kind"] == "rib_bearing"]  # a column of them: one cell
    cells += [f"ribs at {ribs[0]}-{ribs[-1]} ({len(ribs)})"] if ribs else []
    return ", ".join(cells) or "-"


def _quality_cell(result: dict) -> str:
    if not result["quality"]:
        return "-"
    return result["quality"] + (f" ({', '.join(result['quality_reasons'])})" if result["quality_reasons"] else "")


def render_report(results: Sequence[dict], cases: Sequence[RealCase], header: Sequence[str],
                  pictures: Dict[str, str]) -> str:
    by_name = {c.name: c for c in cases}
    lines = [*header, "", "| case | reference | binary Dice | levels right (reference->predicted) | predicted "
             "vertebrae | quality | anchors | target (issue 16) | verdict |", "|" + "---|" * 9]
    for r in results:
        dice = "-" if r["dice"] is None else f"{r['dice']:.3f}"
        lines.append(f"| {r['case']} | {r['what']} | {dice} | {_levels_cell(r['levels'])} | "
                     f"{_predicted_cell(r['predicted'])} | {_quality_cell(r)} | {_anchors_cell(r['anchors'])} | "
                     f"{target_text(by_name[r['case']])} | {r['target']} |")
    for r in results:
        note = by_name[r["case"]].note
        lines += ["", f"## {r['case']}", "", f"Reference: {r['reference'] or 'none'} ({r['what']})."
                  + (f" {note}" if note else ""), ""]
        if r["problem"]:
            lines += [f"**No usable prediction:** {r['problem']}", ""]
        if r["levels"]:
            lines += ["| reference vertebra | predicted label overlapping it most | share of the vertebra | right |",
                      "|---|---|---|---|"]
            lines += [f"| {x['reference']} | {x['predicted'] or 'none'} | {x['covered']:.0%} | "
                      f"{'yes' if x['right'] else 'no'} |" for x in r["levels"]]
            lines.append("")
        lines.append(f"Predicted vertebrae (head to foot): {' '.join(r['predicted']) or 'none'}.")
        if r["not_scored"]:
            lines.append("Predicted vertebrae not scored (mostly outside the reference's head-foot extent): "
                         f"{', '.join(r['not_scored'])}.")
        if r["quality_reasons"]:
            lines.append(f"Quality: {_quality_cell(r)}.")
        if r["case"] in pictures:
            lines += ["", f"![{r['case']} preview]({pictures[r['case']]})"]
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run_description(pred_dir: Path) -> List[str]:
    path = pred_dir / "prediction_args.json"
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError):
        return [f"Model: unknown ({path.name} unreadable)."]
    coarse = run.get("coarse")
    return [f"Model: `{run.get('model')}` (trainer {run.get('trainer')}, plans {run.get('plans')}, "
            f"{run.get('configuration')}), folds {' '.join(map(str, run.get('folds') or []))}, "
            f"checkpoint {run.get('checkpoint')}, device {run.get('device')}, test-time mirroring "
            f"{'on' if run.get('tta_mirroring') else 'off'}, bf16 {'on' if run.get('bf16') else 'off'}, coarse stage "
            f"{'on' if coarse else 'off'}, numbering {run.get('numbering')}."]


RULES = (
    "Binary spine Dice: every vertebra label against background, over the reference's head-foot extent (slices "
    "outside its first..last labelled slice are the evaluation's ignore region: not scored, and a predicted "
    "vertebra mostly there is left out, `evaluation/border.py`). Levels: per reference vertebra, the predicted "
    "label with the most voxels inside it (VerSe codes); `none` when no predicted label touches it. example_ct's "
    "reference is TotalSegmentator's prediction (TS codes read as VerSe = 51 - TS; its sacrum, TS 26, counts as "
    "background, as VerSe leaves the sacrum unlabelled), not ground truth. Predicted vertebrae: the codes of "
    "`<case>.nii.gz` in the whole field.")


def write_report(results: Sequence[dict], cases: Sequence[RealCase], pred_dir: Path, results_dir: Path,
                 tag: str, command: str, renumbered_from: Optional[Path] = None) -> Path:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    stem = f"real_ct_{date}_{tag}"
    results_dir.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for r in results:
        if r["preview"]:
            picture = results_dir / f"{stem}_{r['case']}_preview.png"
            shutil.copyfile(r["preview"], picture)
            pictures[r["case"]] = picture.name
    header = [f"# Real CT check `{tag}`, {date}", "", f"Command: `{command}` (commit {_git_commit()}); "
              f"predictions in `{pred_dir}`.", "", *_run_description(renumbered_from or pred_dir), "", RULES]
    if renumbered_from is not None:  # the model's run is the earlier one; the numbering and post-processing are now
        header[-2:-2] = ["", f"Post-processed again from the probabilities saved in `{renumbered_from}` (no network; "
                         "the numbering and post-processing of this commit and the options of the command)."]
    report = results_dir / f"{stem}.md"
    write_text_atomic(report, render_report(results, cases, header, pictures))
    write_text_atomic(results_dir / f"{stem}.json", json.dumps(list(results), indent=1))
    return report


# --- command ---------------------------------------------------------------------------------------------------

def parse(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(
        description="Predict and score the real CT cases kept for checking (see the module docstring); every "
        "other option goes to `vertebraformer predict` (-m/-d, -f, -chk, -device, --continue, ...).",
        allow_abbrev=False)
    p.add_argument("--work", required=True, type=Path, help="work folder: input links and predictions (created)")
    p.add_argument("--tag", required=True, help="the report's name: real_ct_<date>_<tag>.md")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where the report goes (default {RESULTS})")
    p.add_argument("--data", type=Path, default=None,
                   help="real data folder (default $VERTEBRAFORMER_REAL_DATA or ../shared/data/real)")
    p.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], default=None, help="a subset of the cases")
    p.add_argument("--score-only", action="store_true", help="do not predict: score what <work>/predictions holds")
    p.add_argument("--renumber", type=Path, default=None, metavar="FOLDER",
                   help="do not predict: post-process again the probabilities an earlier run saved in FOLDER (its "
                   "predictions, made with --save_probabilities); the other options go to vertebraformer ensemble")
    return p.parse_known_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, predict_args = parse(argv)
    data = args.data or real_data_dir()
    if not (data / "MANIFEST.md").is_file():
        print(f"real_ct: no real data at {data} (MANIFEST.md missing; set VERTEBRAFORMER_REAL_DATA)", file=sys.stderr)
        return 2
    cases = [c for c in CASES if args.cases is None or c.name in args.cases]
    pred_dir = args.work / "predictions"
    status = 0
    if args.renumber is not None:
        status = run_command("ensemble", args.renumber, pred_dir, predict_args)
    elif not args.score_only:
        link_inputs(data, args.work / "input", cases)
        status = run_command("predict", args.work / "input", pred_dir, predict_args)
    elif predict_args:
        print(f"real_ct: --score-only ignores {' '.join(predict_args)}", file=sys.stderr)
    if status == 2:
        return 2
    results = [score_case(c, data, pred_dir) for c in cases]
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/real_ct.py", *(argv or sys.argv[1:])])
    report = write_report(results, cases, pred_dir, args.results, args.tag, command, args.renumber)
    for r in results:
        dice = "-" if r["dice"] is None else f"{r['dice']:.3f}"
        print(f"{r['case']}: Dice {dice}, {_levels_cell(r['levels'])}; {r['target']}")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools need the guard
    sys.exit(main())
