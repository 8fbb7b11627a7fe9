"""The report of ``multispine_protocol.py``: markdown tables, matplotlib plots and the raw record (results.json)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from protocol_plan import ITERATIONS_PER_EPOCH, format_plan, step_kind
from protocol_setup import BASELINE_SHARES, CONTRASTS, CV_FOLD, METHODS, MODELS, machine, without_coarse_stage

#: the per-case metrics of the contrasts: (evaluation task, key, column title)
CONTRAST_METRICS = (("numbering", "id_rate", "id rate"), ("numbering", "all_correct", "all correct"),
                    ("segmentation", "dice", "Dice"), ("segmentation", "binary_dice", "binary Dice"))


def _est(summary: Optional[dict], *path: str, percent: bool = False, digits: int = 1) -> str:
    """``value [low, high]`` of a summarised metric (evaluation/evaluate.py ``summarise``), or "-"."""
    node = summary
    for key in path:
        node = (node or {}).get(key)
    if not node or node.get("value") is None:
        return "-"
    scale = 100.0 if percent else 1.0
    text = f"{node['value'] * scale:.{digits}f}"
    if node.get("ci"):
        low, high = node["ci"]
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def _mean(summary: Optional[dict], *path: str) -> Optional[float]:
    node = summary
    for key in path:
        node = (node or {}).get(key)
    return None if not node or node.get("value") is None else float(node["value"])


#: the columns of the accuracy tables (the run's test cases, and the same subjects in their sources' styles)
ACCURACY_COLUMNS = ["test set", "method", "Dice %", "binary Dice %", "HD95 mm", "id rate %", "localisation mm",
                    "all correct %", "lesion AP@0.1 %", "lesion AP@0.3 %", "cases"]


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _fold_title(fold: int, splits: list) -> str:
    held = splits[fold].get("held_out_domain")
    return f"fold {fold}: cross-domain ({held} held out)" if held else f"fold {fold}: in-domain (cross-validation)"


def headline_rows(bench, step: str = "evaluate", methods=None) -> List[List[str]]:
    """A row per fold and method of its ``step`` (``evaluate``: the run's test cases; ``evaluate_style``: the same
    subjects in their sources' styles), for ``methods(fold)`` (default: every method of the fold)."""
    rows = []
    splits = bench.splits()
    for fold in bench.p.folds:
        for key in (methods or bench.methods_for)(fold):
            clean = bench.record[f"{step}_{key}_fold{fold}"]["result"]["clean"]
            rows.append([_fold_title(fold, splits), METHODS[key].title,
                         _est(clean, "segmentation", "dice", percent=True),
                         _est(clean, "segmentation", "binary_dice", percent=True),
                         _est(clean, "segmentation", "hd95_mm"),
                         _est(clean, "numbering", "id_rate", percent=True),
                         _est(clean, "numbering", "localisation_mm"),
                         _est(clean, "numbering", "all_correct", percent=True, digits=0),
                         _est(clean, "lesions", "0.1", "ap", percent=True),
                         _est(clean, "lesions", "0.3", "ap", percent=True),
                         str((clean or {}).get("n_cases", 0))])
    return rows


def training_rows(bench) -> List[List[str]]:
    rows = []
    for fold in bench.p.folds:
        for key in bench.models(fold):
            r = bench.record[f"train_{key}_fold{fold}"]["result"]
            rows.append([str(fold), key, MODELS[key].trainer, f"{r['train_seconds']:.0f}", str(r["epochs"]),
                         str(r["iterations"]), f"{r['batch_size']} x {'x'.join(map(str, r['patch_size']))}",
                         "built-in model" if r.get("pretrained") else "random",
                         f"{r['initial_lr']:g}" if r.get("initial_lr") else "-",
                         f"{r['peak_rss_gb']:.2f}" if r.get("peak_rss_gb") else "-"])
    return rows


def clean_cases(bench, key: str, fold: int, step: str = "evaluate") -> dict:
    """{case: evaluation record} of the method's clean test cases (perturbed variants left out) in ``step``'s
    evaluation."""
    from vertebraformer_nn.evaluation.perturbations import parse_variant

    report = json.loads((bench.out / bench.record[f"{step}_{key}_fold{fold}"]["result"]["json"]).read_text())
    return {name: r for name, r in report["cases"].items() if parse_variant(name)[1] is None}


def paired_difference(a: dict, b: dict, task: str, metric: str, bootstrap: int, seed: int) -> Optional[dict]:
    """Mean over the cases both evaluated of (a - b), with its patient-level BCa interval (the two methods'
    cases resampled together, so what they share cancels)."""
    from vertebraformer_nn.evaluation.bootstrap import mean_interval

    values, units = [], []
    for case in sorted(set(a) & set(b)):
        x, y = a[case][task].get(metric), b[case][task].get(metric)
        values.append(None if x is None or y is None else float(x) - float(y))
        units.append(a[case]["subject"])
    if not values:
        return None
    return mean_interval(values, units, n_resamples=bootstrap, seed=seed)


def contrast_rows(bench) -> List[List[str]]:
    """Each contrast on each fold where both its methods ran: paired differences in points, with intervals; a
    contrast the run cannot make (the coarse stage was not planned) says so."""
    rows = []
    splits = bench.splits()
    for contrast in CONTRASTS:
        a, b = (without_coarse_stage(k, bench.coarse) for k in (contrast.a, contrast.b))
        if a == b:
            rows.append(["-", contrast.title, "skipped: `plan-and-preprocess` wrote no 3d_lowres configuration, so "
                         "there is no coarse stage to compare", *[""] * (len(CONTRAST_METRICS) - 1), "-"])
            continue
        for fold in bench.p.folds:
            if a not in bench.methods_for(fold) or b not in bench.methods_for(fold):
                continue
            title = contrast.title if (a, b) == (contrast.a, contrast.b) else f"{contrast.title} ({a} - {b})"
            rows.append([_fold_title(fold, splits), title,
                         *paired_cells(bench, clean_cases(bench, a, fold), clean_cases(bench, b, fold))])
    return rows


def paired_cells(bench, cases_a: dict, cases_b: dict) -> List[str]:
    """The cells of a paired row: (a - b) of each of :data:`CONTRAST_METRICS` with its interval, then the number
    of cases both evaluated."""
    cells = [_est({"d": paired_difference(cases_a, cases_b, task, metric, bench.p.bootstrap, bench.p.seed)}, "d",
                  percent=True) for task, metric, _ in CONTRAST_METRICS]
    return cells + [str(len(set(cases_a) & set(cases_b)))]


def style_rows(bench) -> List[List[str]]:
    """Per fold and method scored in style: (in style - the run's test cases) of the same subjects, paired."""
    rows = []
    splits = bench.splits()
    for fold in bench.p.folds:
        for key in bench.style_methods(fold):
            rows.append([_fold_title(fold, splits), METHODS[key].title,
                         *paired_cells(bench, clean_cases(bench, key, fold, "evaluate_style"),
                                       clean_cases(bench, key, fold))])
    return rows


def style_section(bench) -> List[str]:
    """The methods on the test subjects scanned in their sources' own styles, and what the randomised scans of
    the run's test cases cost them; nothing when no method was scored so."""
    if not any(bench.style_methods(fold) for fold in bench.p.folds):
        return []
    return ["## The same test subjects in their sources' own styles", "",
            "The run's phantoms are drawn with the generator's domain randomisation (`--randomise 0.5`: each group "
            "of scan parameters drawn far beyond the real range with probability 0.5), its test cases included. "
            "Here the same subjects (same seed and plan: same anatomy and lesions; where the randomised field of view "
            "or slices changed which vertebrae were in view, those of the source's style) are scanned without it, "
            "each in its source's own style, the scans the paper's test sets stand for; VertebraFormer's methods "
            "predict them with the same models (nnU-Net's separate models are scored on the run's test cases "
            "only).", "",
            *_table(ACCURACY_COLUMNS, headline_rows(bench, "evaluate_style", bench.style_methods)), "",
            "In style - the run's test cases (same subjects, same model; differences in points, paired):", "",
            *_table(["test set", "method", *[title for _, _, title in CONTRAST_METRICS], "cases"], style_rows(bench)),
            ""]


def budget_sentence(p) -> str:
    """How long every model trained, as the protocol set it."""
    if p.epochs is None:
        return f"Every model trained for the same wall-clock budget of **{p.budget_s / 60:g} min**."
    shares = ", ".join(f"{m} {share:.0%}" for m, share in BASELINE_SHARES.items())
    start = ("" if p.pretrained_of("vf") is None else
             " VertebraFormer's models started from the built-in model's weights of their configuration and "
             "fine-tuned them (`train -pretrained_weights builtin`, at the trainer's fine-tuning rate, the Training "
             "table's lr); nnU-Net's started from random weights, as nnU-Net has no such model, so the "
             "VertebraFormer - nnU-Net rows compare what a user gets in the same minutes, not the two methods. "
             "The built-in model was trained on other phantoms (seed 7) of every source, VerSe's included: fold 5 "
             "holds VerSe out of the fine-tuning only.")
    return (f"VertebraFormer's models trained **{p.epochs_of('vf')} epochs of {ITERATIONS_PER_EPOCH} iterations** "
            f"whatever the machine took for them (the coarse stage {p.epochs_of('vf_coarse')}); nnU-Net's separate "
            f"networks shared the seconds VertebraFormer's fine model took on the same fold ({shares}): the same "
            "budget in time, so their iterations depend on their step time (the Training table)." + start)


def coarse_sentence(bench) -> str:
    plans = bench.record["plan_ours"]["result"]
    if not bench.coarse:
        return ("Coarse whole-field stage: **not run** (`plan-and-preprocess` wrote no 3d_lowres configuration): "
                "\"VertebraFormer\" is the model without it, the row \"- coarse whole-field stage\" and its "
                "contrast are skipped.")
    return (f"Coarse whole-field stage: the same trainer on the plans' 3d_lowres configuration (spacing "
            f"{plans.get('coarse_spacing')} mm, patch {plans.get('coarse_patch_size')}), trained for "
            + (f"{bench.p.budget_of('vf_coarse') / 60:g} min" if bench.p.epochs is None else
               f"{bench.p.epochs_of('vf_coarse')} epochs") + " per fold; `predict` finds it beside the fine model "
            "(\"VertebraFormer\"), `--no-coarse` leaves it out (every other VertebraFormer row). VertebraFormer with "
            "it has had the coarse model's training on top of the common budget.")


def time_rows(bench) -> List[List[str]]:
    """Planned against measured minutes per kind of step."""
    planned, measured = {}, {}
    for step, seconds in bench.plan():
        kind = step_kind(step)
        planned[kind] = planned.get(kind, 0.0) + seconds
        if step in bench.record:
            measured[kind] = measured.get(kind, 0.0) + bench.record[step]["seconds"]
    return [[kind, f"{planned[kind] / 60:.1f}", f"{measured[kind] / 60:.1f}" if kind in measured else "-"]
            for kind in planned]


def efficiency_rows(bench) -> List[List[str]]:
    eff = bench.record["efficiency"]["result"]
    rows = []
    for key in bench.methods_run():
        method = METHODS[key]
        network = "vf" if key == "vf" else ("nnunet_seg" if key.startswith("nnunet") else None)
        lat = eff.get(network, {}) if network else {}
        runs = [bench.record[f"predict_{key}_fold{f}"]["result"]
                for f in bench.p.folds if key in bench.methods_for(f)]
        per_ct = [r["seconds_total"] for r in runs if r.get("seconds_total")]
        peak = max((r.get("peak_rss_gb") or 0) for r in runs)
        params = lat.get("parameters_m")
        coarse = eff.get("vf_coarse") if key == "vf" and bench.coarse else None
        if params is not None and coarse:
            params_text = f"{params:.2f} + {coarse['parameters_m']:.2f} (coarse stage)"
        elif params is not None and len([m for m in method.models if not MODELS[m].coarse]) == 2:
            params_text = f"{params:.2f} x 2 networks"
        else:
            params_text = f"{params:.2f}" if params is not None else "same network"
        rows.append([method.title, params_text,
                     "x".join(map(str, lat["patch_size"])) if lat else "-",
                     f"{lat['forward_ms']:.0f}" if lat else "-",
                     f"{sum(per_ct) / len(per_ct):.1f}" if per_ct else "-", f"{peak:.2f}"])
    return rows


def perturbation_table(bench):
    """(methods, rows, curves): the methods of the perturbed fold; curves[method][kind] = [(strength, dice,
    id_rate, binary_dice), ...] starting with the clean cases."""
    from vertebraformer_nn.evaluation.perturbations import PERTURBATIONS, UNITS

    rows, curves = [], {}
    fold = CV_FOLD if CV_FOLD in bench.p.folds else bench.p.folds[0]
    methods = bench.methods_for(fold)

    def point(strength: float, summary: Optional[dict]) -> tuple:
        return (strength, _mean(summary, "segmentation", "dice"), _mean(summary, "numbering", "id_rate"),
                _mean(summary, "segmentation", "binary_dice"))

    for key in methods:
        result = bench.record[f"evaluate_{key}_fold{fold}"]["result"]
        curves[key] = {}
        for kind, strengths in PERTURBATIONS.items():
            curves[key][kind] = [point(0.0, result["clean_perturbed_cases"])] + [
                point(strength, result["perturbed"].get(f"{kind}{level}"))
                for level, strength in enumerate(strengths, 1)]
    for kind, strengths in PERTURBATIONS.items():
        for level, strength in enumerate([0.0, *strengths]):
            row = [kind if level else f"{kind} (clean)", f"{strength:g} {UNITS[kind]}" if level else "-"]
            for key in methods:
                _, dice, id_rate, binary = curves[key][kind][level]
                row.append("-" if dice is None else
                           f"{100 * dice:.1f} / {100 * (binary or 0):.1f} / {100 * (id_rate or 0):.1f}")
            rows.append(row)
    return methods, rows, curves


def plot_perturbations(curves: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vertebraformer_nn.evaluation.perturbations import PERTURBATIONS, UNITS

    kinds = list(PERTURBATIONS)
    fig, axes = plt.subplots(3, len(kinds), figsize=(4 * len(kinds), 10), squeeze=False)
    for col, kind in enumerate(kinds):
        for row, (index, metric) in enumerate(((1, "Dice (%)"), (3, "binary Dice (%)"),
                                               (2, "identification rate (%)"))):
            ax = axes[row][col]
            for key, per_kind in curves.items():
                pts = [(p[0], p[index]) for p in per_kind[kind] if p[index] is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=METHODS[key].title)
            ax.set_xlabel(f"{kind} ({UNITS[kind]})")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cost(bench, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key in bench.methods_run():
        for fold, marker in zip(bench.p.folds, "os^v<>pPX"):
            if key not in bench.methods_for(fold):
                continue
            pred = bench.record[f"predict_{key}_fold{fold}"]["result"]
            dice = _mean(bench.record[f"evaluate_{key}_fold{fold}"]["result"]["clean"], "segmentation", "dice")
            if dice is not None and pred.get("seconds_total"):
                ax.scatter(pred["seconds_total"], 100 * dice, marker=marker,
                           label=f"{METHODS[key].title}, fold {fold}")
    ax.set_xlabel("seconds per CT (predict, mean over the test cases)")
    ax.set_ylabel("Dice (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(bench, seconds: float) -> Path:
    out = bench.out
    out.mkdir(parents=True, exist_ok=True)
    p = bench.p
    pert_methods, pert_rows, curves = perturbation_table(bench)
    plot_perturbations(curves, out / "perturbations.png")
    plot_cost(bench, out / "accuracy_vs_cost.png")
    info = machine()
    steps_s = sum(r["seconds"] for r in bench.record.values())
    ablations = (f"; the ablations on fold {', '.join(map(str, p.ablation_folds))} only"
                 if p.ablation_folds is not None and any(METHODS[k].ablation for k in bench.methods_run()) else "")
    lines = [f"# VertebraFormer-nn benchmark on MultiSpine-Sim: {p.name} protocol", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M')} on {info['cpu']} ({info['cores']} cores"
             f"{', GPU ' + info['gpu'] if info['gpu'] else ''}), device `{p.device}`, Python {info['python']}, "
             f"torch {info['torch']}; load average at the end {', '.join(f'{x:.1f}' for x in info['load_average'])}. "
             f"The steps took {steps_s / 60:.0f} min in all, {seconds / 60:.0f} min of them in this invocation "
             "(the others were reused from an earlier invocation with the same settings; `results.json` has "
             "each step's seconds).", "",
             "```", f"python benchmarks/multispine_protocol.py {' '.join(sys.argv[1:])}", "```", "",
             f"Data: MultiSpine-Sim, {p.cases_per_source} phantoms per source (seed {p.seed}), converted into one "
             "nnU-Net raw dataset; folds from its `splits_final.json`. Reference: the phantoms' complete ground truth "
             "(every vertebra, every lesion, body centroids; vertebrae cut by the field of view removed, as in "
             "training), whatever each source annotates. " + budget_sentence(p) + f" On `{p.device}`, at the same "
             f"preprocessing spacing ({bench.record['plan_ours']['result']['spacing']} mm){ablations}. nnU-Net: its "
             "default trainer and planner (3D U-Net, SGD, its augmentation), epochs of 10 iterations (ours: 50) so "
             "that a time budget can be fitted; "
             "fp32 training on the CPU as nnU-Net does (ours trains in bf16 autocast where the CPU has bf16). "
             "Prediction: both through `vertebraformer predict` (nnU-Net's sliding window and Gaussian weighting, "
             "no test-time mirroring on the CPU, bf16 autocast on a bf16 CPU for both), so every method's files "
             "are written and evaluated the same way. Means over test cases with 95 % BCa bootstrap intervals "
             f"({p.bootstrap} resamples, case level).", "",
             coarse_sentence(bench), "",
             "## Accuracy", "",
             *_table(ACCURACY_COLUMNS, headline_rows(bench)), "",
             "Dice: mean over the vertebrae present in reference or prediction, per case; binary: all vertebrae as "
             "one structure; id rate: VerSe identification rate (closest predicted centroid of the same label "
             "within 20 mm); lesion AP: instance average precision at 3D IoU 0.1 / 0.3, pooled over cases.", "",
             "## Contrasts (paired, same test cases; differences in points)", "",
             *_table(["test set", "contrast", *[title for _, _, title in CONTRAST_METRICS], "cases"],
                     contrast_rows(bench)), "",
             "Each difference is the mean over the clean test cases of (first - second), with a 95 % BCa interval "
             "of the cases resampled by patient, both methods together; an interval that excludes 0 ranks the two.",
             "",
             *style_section(bench),
             "## Training", "",
             *_table(["fold", "model", "trainer", "seconds", "epochs", "iterations", "batch x patch", "weights from",
                      "peak lr", "peak RSS GB"], training_rows(bench)), "",
             "## Efficiency", "",
             *_table(["method", "parameters (M)", "patch", "forward ms / patch (batch 1)", "s per CT",
                      "peak RSS GB (predict)"], efficiency_rows(bench)), "",
             "Seconds per CT: `predict`'s own per-case total (read, preprocess, network, numbering, export; for "
             "nnU-Net both networks), the mean over every predicted case (perturbed variants included).", "",
             "## Perturbations (in-domain test cases; Dice % / binary Dice % / identification rate %)", "",
             *_table(["perturbation", "strength", *[METHODS[k].title for k in pert_methods]], pert_rows), "",
             "![perturbation curves](perturbations.png)", "", "![accuracy against cost](accuracy_vs_cost.png)", "",
             "## Time", "",
             "```", format_plan(p, bench.plan(), bench.counts, bench.coarse, bench.measured()), "```", "",
             *_table(["step", "planned min", "measured min"], time_rows(bench)), "",
             "Every evaluation's full JSON (per case, per vertebra, per lesion) is in `evaluations/`; `results.json` "
             "holds every step's record.", ""]
    (out / "REPORT.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"machine": info, "protocol": vars(p), "steps": bench.record},
                                                  indent=1, default=str))
    return out / "REPORT.md"
