"""Paired contrasts of two models' ``vertebraformer evaluate`` JSONs on the same cases: per case (a - b) of the
identification rate, per-vertebra Dice and binary spine Dice, the mean with its patient-level 95 % BCa interval
(``protocol_report.paired_difference``), and in how many cases a is worse or better; then the lesion AP at each IoU
(pooled over the cases, as the evaluation reports it), a - b with the interval of the same patients resampled for
both. Only the cases are resampled: the spread between training runs is not in it. Cases the evaluation could not
score (``status`` other than ok, e.g. a reference case without a prediction) are left out.

    python benchmarks/paired_evaluations.py eval_a.json eval_b.json [--name-a A --name-b B] [--means]

A side may list several JSONs joined by commas (their cases pooled, e.g. two unseen styles)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, as the protocol scripts import each other
from protocol_report import paired_difference  # noqa: E402
from vertebraformer_nn.evaluation import bootstrap, lesion_metrics  # noqa: E402

METRICS = (("numbering", "id_rate"), ("segmentation", "dice"), ("segmentation", "binary_dice"))


def pooled_cases(paths: str) -> dict:
    """The scored cases of one side; with several JSONs, names and subjects carry the JSON's position in the list
    (two phantom sets of different seeds both hold a ``lowdose_001``: other patients)."""
    cases, files = {}, paths.split(",")
    for k, path in enumerate(files):
        for name, c in json.loads(Path(path).read_text())["cases"].items():
            if c.get("status") == "ok":
                tag = f"{k}/" if len(files) > 1 else ""
                cases[tag + name] = {**c, "subject": tag + str(c["subject"])}
    return cases


def lesion_ap_difference(a: dict, b: dict, threshold: float, bootstrap_n: int, seed: int) -> dict:
    """Pooled lesion AP (over every candidate, as the evaluation ranks them) of a minus that of b on the cases both
    scored, with the patient-level interval of the difference (one resample of patients for both)."""
    names = sorted(c for c in set(a) & set(b) if "lesions" in a[c] and "lesions" in b[c])
    unit_of_case, n_units = bootstrap.unit_index([a[c]["subject"] for c in names])
    sides = [lesion_metrics.pooled_inputs([side[c]["lesions"] for c in names], threshold, ranking=True)
             for side in (a, b)]

    def statistic(w):
        (tp_a, own_a, ref_a), (tp_b, own_b, ref_b) = sides
        return (lesion_metrics.pooled_detection(tp_a, own_a, ref_a, w[:, unit_of_case])["ap"]
                - lesion_metrics.pooled_detection(tp_b, own_b, ref_b, w[:, unit_of_case])["ap"])
    out = bootstrap.bootstrap_interval(statistic, n_units, n_resamples=bootstrap_n, seed=seed,
                                       size_hint=max(len(sides[0][0]), len(sides[1][0])))
    return {**out, "n_cases": len(names), "n_reference": int(sides[0][2].sum())}


def mean_line(cases: dict, name: str) -> str:
    """One side's means over its scored cases (the evaluation's own means count an unpredicted case as empty)."""
    c = list(cases.values())
    means = [100 * sum(f(x) for x in c) / len(c) for f in (
        lambda x: x["numbering"]["id_rate"], lambda x: x["numbering"]["all_correct"],
        lambda x: x["segmentation"]["dice"], lambda x: x["segmentation"]["binary_dice"])]
    return (f"{name}: {len(c)} cases: id rate {means[0]:.1f}, every vertebra right {means[1]:.0f} %, per-vertebra "
            f"Dice {means[2]:.1f}, binary Dice {means[3]:.1f}")


def contrast_lines(a: dict, b: dict, name_a: str, name_b: str, bootstrap: int = 10000, seed: int = 0):
    for task, metric in METRICS:
        d = paired_difference(a, b, task, metric, bootstrap=bootstrap, seed=seed)
        diffs = [a[c][task][metric] - b[c][task][metric] for c in a
                 if c in b and a[c][task][metric] is not None and b[c][task][metric] is not None]
        yield (f"{metric}: {name_a} - {name_b} {100 * d['value']:.1f} [{100 * d['ci'][0]:.1f}, "
               f"{100 * d['ci'][1]:.1f}] points ({d['method']}), {d['n_cases']} cases, worse in "
               f"{sum(x < 0 for x in diffs)}, better in {sum(x > 0 for x in diffs)}")
    for threshold in lesion_metrics.DEFAULT_THRESHOLDS:
        d = lesion_ap_difference(a, b, threshold, bootstrap, seed)
        if d["value"] is None or not d["n_reference"]:
            continue
        ci = "" if d["ci"] is None else f" [{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}]"
        yield (f"lesion AP@{threshold:g}: {name_a} - {name_b} {100 * d['value']:.1f}{ci} points ({d['method']}), "
               f"{d['n_cases']} cases, {d['n_reference']} reference lesions")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="evaluate JSON(s) of model a, comma-separated")
    p.add_argument("b", help="evaluate JSON(s) of model b, comma-separated")
    p.add_argument("--name-a", default="a")
    p.add_argument("--name-b", default="b")
    p.add_argument("--means", action="store_true", help="first each side's means over its scored cases")
    args = p.parse_args(argv)
    a, b = pooled_cases(args.a), pooled_cases(args.b)
    if args.means:
        print(mean_line(a, args.name_a))
        print(mean_line(b, args.name_b))
    for line in contrast_lines(a, b, args.name_a, args.name_b):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
