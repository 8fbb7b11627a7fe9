"""``OUT/REPORT.md`` of ``vertebraformer demo``: what was done, the metrics, pictures, where the files are, and how
to do the same with real data. Built from the step markers and the evaluation JSON reports, so it describes the
run that produced the outputs (also when steps were reused)."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import List, Optional

from ..atomic import write_text_atomic
from .config import UNSEEN_CASES

#: preview pictures shown per evaluated set
PICTURES_PER_SET = 2

STEP_TEXT = {
    "phantoms": "MultiSpine-Sim phantoms: the four sources in their native layouts, an unseen scanner style, "
                "complete ground truth",
    "convert": "`convert <source>` x 4 and `convert finalize`: one nnU-Net raw dataset, splits by subject",
    "plan": "`plan-and-preprocess`: fingerprint, VertebraFormer plans, preprocessing",
    "train": "`train` fold 0",
    "train_fold1": "`train` fold 1 (only when the time allows)",
    "predict": "`predict` fold 0's validation cases and the unseen-style cases",
    "ensemble": "`ensemble` the folds on the unseen-style cases",
    "evaluate": "`evaluate` against the raw dataset and against the phantoms' complete truth",
    "report": "this report",
}


def _fmt(estimate: Optional[dict], percent: bool) -> str:
    if not estimate or estimate.get("value") is None:
        return "–"
    value = estimate["value"] * (100 if percent else 1)
    return f"{value:.1f}"


def metric_rows(label: str, model: str, evaluation: dict, threshold: str = "0.1") -> List[List[str]]:
    """Table rows (one per domain, then overall) of an evaluation report's summary."""
    summary = evaluation["summary"]
    groups = [(k.split(":", 1)[1], v) for k, v in sorted(summary.items()) if k.startswith("domain:")]
    groups.append(("all" if groups else "", summary["overall"]))
    rows = []
    for group, s in groups:
        seg, num, les = s["segmentation"], s["numbering"], s.get("lesions")
        lesion = les.get(threshold) if les else None
        rows.append([f"{label}{' – ' + group if group else ''}", model, str(s["n_cases"]),
                     _fmt(seg["dice"], True), _fmt(seg["binary_dice"], True), _fmt(seg["hd95_mm"], False),
                     _fmt(num["id_rate"], True), _fmt(num["localisation_mm"], False),
                     _fmt(lesion["recall"], True) if lesion else "–", _fmt(lesion["ap"], True) if lesion else "–"])
    return rows


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _link(report_dir: Path, path: Path) -> str:
    return Path(os.path.relpath(path, report_dir)).as_posix()


def pictures(report_dir: Path, folder: Path, n: int = PICTURES_PER_SET) -> List[Path]:
    return sorted(folder.glob("*_preview.png"))[:n] if folder.is_dir() else []


def _training_lines(demo) -> List[str]:
    lines = []
    for step in ("train", "train_fold1"):
        run = demo.runs.get(step)
        if run is None:
            continue
        r = run.record["result"]
        if step == "train_fold1" and not r.get("trained"):
            lines.append(f"- Fold 1 was not trained: {r.get('why')}.")
            continue
        dice = r.get("last_val_spine_dice")
        start = " from the built-in model's weights" if r.get("weights_from") == "builtin" else " from random weights"
        lines.append(f"- Fold {r['fold']}: `{r['trainer']}`{start}, {r['epochs']} epoch(s) of {r['iterations_per_epoch']} "
                     f"iterations in {run.seconds:.0f} s"
                     + (f" (budget {r['budget_s']:.0f} s)" if r["trainer"].endswith("_budget") else "")
                     + (f"; last validation-patch spine Dice {100 * dice:.1f} %" if dice is not None else "") + ".")
        if r.get("time_plan"):
            lines.append(f"- Time plan: {r['time_plan']}.")
    return lines


def _caveat(train: dict, seconds: float, device: str, cases: int) -> str:
    """The report's first warning: what the model is, by where its training started."""
    ran = f"{train['epochs']} epoch(s) ({seconds / 60:.1f} min on {device}) on {cases} small phantom cases"
    if train.get("weights_from") == "builtin":
        return ("> **This is a demonstration of the pipeline, not of the method's accuracy.** The model is the "
                "built-in model (trained on phantoms only: `vertebraformer_nn/builtin_model/MODEL_CARD.md`) "
                f"fine-tuned for {ran}, as `vertebraformer train ... -pretrained_weights builtin` fine-tunes it on "
                "your data (`--start scratch` trains from random weights instead: minutes of CPU training give a "
                "weak model). The numbers below measure it on phantoms and nothing else.")
    return ("> **This is a demonstration of the pipeline, not of the method's accuracy.** The model was trained from "
            f"random weights for {ran}. A few minutes of CPU training give a weak model: expect it to find part of "
            "the spine at best, and to mislabel or miss vertebrae and lesions. The numbers below measure this short "
            "run on phantoms and nothing else.")


def build_report(demo) -> str:
    c, p = demo.config, demo.paths
    out = p.out
    runs = demo.runs
    total = sum(r.seconds for r in runs.values())
    phantoms = runs["phantoms"].record["result"]
    convert = runs["convert"].record["result"]
    plan = runs["plan"].record["result"]
    train = runs["train"].record["result"]
    ensembled = runs["ensemble"].record["result"].get("ensembled", False)
    model_folder = out / train["model_folder"]
    device = f"{demo.device} ({_device_text(demo.device)})"

    lines = ["# VertebraFormer-nn demo report", "",
             f"`vertebraformer demo -o {out} --cases-per-source {c.cases_per_source} --minutes {c.minutes:g} "
             f"-device {c.device}`" + (f" `-tr {c.trainer}`" if c.trainer else "")
             + (f" `--start {c.start}`" if c.start else "")
             + (f" `--unseen-cases {c.unseen_cases}`" if c.unseen_cases != UNSEEN_CASES else "")
             + f", {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{platform.node() or 'this machine'}: device {device}. The steps took {total / 60:.1f} min in all "
             f"(about {c.minutes:g} min asked for).", "",
             _caveat(train, runs["train"].seconds, device, convert["training_cases"]), ""]

    lines += ["## What was done", ""]
    lines += table(["step", "what", "seconds", "this run"], [
        [name, STEP_TEXT[name] + (" – skipped" if _skipped(run) else ""), f"{run.seconds:.1f}",
         "reused" if run.reused else "ran"] for name, run in runs.items() if name != "report"])
    per_source = ", ".join(f"{k} {v}" for k, v in phantoms["per_source"].items())
    lines += ["", f"- Phantoms: {phantoms['cases']} cases ({per_source}); the `{c.unseen_style}` style is used by no "
              "source and is never converted, so no fold sees it.",
              f"- Raw dataset `{p.dataset_name}`: {convert['training_cases']} training cases, {convert['test_cases']} "
              f"official test-split cases; fold 0: {convert['fold_sizes'][0]['train']} training / "
              f"{convert['fold_sizes'][0]['val']} validation cases.",
              f"- Plans `{plan['plans']}`: patch {plan['patch_size']} voxels at {_spacing(plan['spacing'])} mm, "
              f"batch {plan['batch_size']}."]
    lines += _training_lines(demo)
    if ensembled:
        lines.append("- Ensemble: folds 0 and 1 averaged (probabilities) on the unseen-style cases; fold 0's "
                     "validation cases are training cases of fold 1, so they are not ensembled.")
    lines.append("- nnU-Net's own end-of-training validation is skipped: `predict` and `evaluate` below do it with "
                 "the full pipeline (numbering, lesion instances, VerSe metrics).")

    lines += ["", "## Results", "",
              "Dice and spine Dice in %, HD95 and localisation in mm, identification rate (VerSe: the predicted "
              "centroid of the right label within 20 mm) in %, lesion recall and AP in % at 3D IoU 0.1 (lesion "
              "ground truth only where it is annotated: the DICOM cohort in the raw dataset, every case of the "
              "phantoms' complete truth). Means over cases; the full reports give 95 % bootstrap intervals, which "
              "with this few cases are wide.", ""]
    rows = []
    for item in demo.evaluations():
        path = p.evaluation / f"{item['name']}.json"
        if path.is_file():
            rows += metric_rows(item["what"].split(" (")[0], item["model"], json.loads(path.read_text()))
    lines += table(["cases", "model", "n", "Dice", "spine Dice", "HD95", "id rate", "localisation", "lesion recall",
                    "lesion AP"], rows)
    lines += ["", "Full reports (every metric with its interval, per case in the JSON): " + ", ".join(
        f"[{item['name']}]({_link(out, p.evaluation / (item['name'] + '.md'))})" for item in demo.evaluations()) + "."]

    lines += ["", "## Pictures", "",
              "Sagittal and coronal views through the spine: predicted vertebrae coloured and named (VerSe labels), "
              "lesions outlined. Each prediction folder has one per case.", ""]
    shown = [(item["what"].split(" (")[0], f) for item in demo.evaluations()[:2]
             for f in pictures(out, item["prediction"])]
    for what, f in shown:
        lines += [f"**{what}: `{f.name[:-len('_preview.png')]}`**", "", f"![{f.name}]({_link(out, f)})", ""]
    progress = model_folder / "fold_0" / "progress.png"
    if progress.is_file():
        lines += ["**Training curves of fold 0** (losses per task, validation-patch metrics, learning rate)", "",
                  f"![progress]({_link(out, progress)})", ""]

    lines += ["## What a real run would give", "",
              "Not measured here. On a GPU the same command plans at nnU-Net's spacing and buys many more epochs "
              "in the same minutes, but a useful model needs the full schedule (`vertebraformer train` with the "
              "default `VertebraFormerTrainer`: 1000 epochs of 250 iterations, hours to days on one GPU) and real "
              "data. The paper this project implements reports, for its own model on its MultiSpine data with full "
              "training, Dice 89.3 %, identification accuracy 85.6 % and lesion AP 68.7 % (Du et al., npj Digital "
              "Medicine 2026; their numbers, not reproduced here). This project ships no model trained on real CT.",
              ""]

    lines += ["## Where each file is", ""]
    files = [
        (p.sim, "phantom sources (`verse/`, `ctspine1k/`, `spineweb/`, `dicom/`), the unseen style "
                f"(`{p.unseen_source}/`) and the complete truth (`ground_truth/`)"),
        (p.raw_dataset, "the nnU-Net raw dataset (`imagesTr`, `labelsTr`, `lesionsTr`, `imagesTs`..., "
                        "`dataset.json`, `splits_final.json`, `conversion/` reports)"),
        (p.preprocessed / p.dataset_name, "plans and preprocessed data"),
        (model_folder, "the trained model (`fold_0/checkpoint_final.pth`, `progress.png`, training log); use it "
                       "with `vertebraformer predict -m`"),
        (p.predictions, "predictions, one folder per set: `<case>.nii.gz` (VerSe codes), `<case>_lesion.nii.gz`, "
                        "`<case>_ctd.json`, `<case>.json`, `<case>_preview.png`, `summary.csv`"),
        (p.reference, f"the evaluation reference of the unseen style (built from `{p.rel(p.unseen_truth)}`)"),
        (p.evaluation, "evaluation reports (JSON and markdown)"),
        (demo.markers.folder, "one marker per finished step (what a re-run reuses)"),
    ]
    lines += table(["path", "content"], [[f"`{_link(out, path)}/`", text] for path, text in files])

    lines += ["", "## The same with real data", "",
              "Get the sources (see the README for where and which licence), point nnU-Net's folders somewhere "
              "with room, and run on a machine with a GPU:", "", "```bash",
              "export nnUNet_raw=/data/nnUNet_raw nnUNet_preprocessed=/data/nnUNet_preprocessed "
              "nnUNet_results=/data/nnUNet_results",
              "vertebraformer convert verse     /data/verse      -d 501",
              "vertebraformer convert ctspine1k /data/ctspine1k  -d 501 --append",
              "vertebraformer convert spineweb  /data/spineweb   -d 501 --append",
              "vertebraformer convert dicom     /data/cohort     -d 501 --append --mapping /data/cohort/mapping.json",
              "vertebraformer convert finalize  -d 501",
              "vertebraformer plan-and-preprocess -d 501 --gpu-memory-gb 24",
              "for f in 0 1 2 3 4; do vertebraformer train 501 $f -device cuda; done      # cross-validation",
              "vertebraformer train 501 5 -device cuda                                   # VerSe held out (cross-domain)",
              "vertebraformer determine-postprocessing -d 501 -f 0 1 2 3 4               # numbering/lesion constants",
              "vertebraformer predict -i scans/ -o out/ -d 501 -f 0 1 2 3 4",
              "vertebraformer evaluate -ref $nnUNet_raw/Dataset501_MultiSpine -pred out/ --markdown out/report.md",
              "```", "",
              "To evaluate a cross-validation fold as here: predict `imagesTr` with that fold alone "
              "(`-f 0`) and evaluate with `--cases-from-splits 0`.", "",
              "## Running again", "",
              f"`vertebraformer demo -o {out}` again reuses every finished step (markers in "
              f"`{_link(out, demo.markers.folder)}/`); a stopped run continues where it stopped; other options redo "
              "the steps they change and everything after them."]
    return "\n".join(lines) + "\n"


def _skipped(run) -> bool:
    result = run.record.get("result", {})
    return result.get("trained") is False or result.get("ensembled") is False


def _spacing(spacing) -> str:
    return "x".join(f"{float(s):.2g}" for s in spacing) if spacing else "?"


def _device_text(device: str) -> str:
    from .environment import describe_device

    return describe_device(device)


def write_report(demo) -> Path:
    return write_text_atomic(demo.paths.report, build_report(demo))
