"""Paired contrasts of two models' ``vertebraformer evaluate`` JSONs on the same cases: per case (a - b) of the
identification rate, per-vertebra Dice and binary spine Dice, the mean with its patient-level 95 % BCa interval
(``protocol_report.paired_difference``), and in how many cases a is worse or better. Only the cases are resampled:
the spread between training runs is not in it.

    python benchmarks/paired_evaluations.py eval_a.json eval_b.json [--name-a A --name-b B]

A side may list several JSONs joined by commas (their cases pooled, e.g. two unseen styles)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, as the protocol scripts import each other
from protocol_report import paired_difference  # noqa: E402

METRICS = (("numbering", "id_rate"), ("segmentation", "dice"), ("segmentation", "binary_dice"))


def pooled_cases(paths: str) -> dict:
    cases = {}
    for path in paths.split(","):
        cases.update(json.loads(Path(path).read_text())["cases"])
    return cases


def contrast_lines(a: dict, b: dict, name_a: str, name_b: str, bootstrap: int = 10000, seed: int = 0):
    for task, metric in METRICS:
        d = paired_difference(a, b, task, metric, bootstrap=bootstrap, seed=seed)
        diffs = [a[c][task][metric] - b[c][task][metric] for c in a
                 if c in b and a[c][task][metric] is not None and b[c][task][metric] is not None]
        yield (f"{metric}: {name_a} - {name_b} {100 * d['value']:.1f} [{100 * d['ci'][0]:.1f}, "
               f"{100 * d['ci'][1]:.1f}] points ({d['method']}), {d['n_cases']} cases, worse in "
               f"{sum(x < 0 for x in diffs)}, better in {sum(x > 0 for x in diffs)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="evaluate JSON(s) of model a, comma-separated")
    p.add_argument("b", help="evaluate JSON(s) of model b, comma-separated")
    p.add_argument("--name-a", default="a")
    p.add_argument("--name-b", default="b")
    args = p.parse_args(argv)
    for line in contrast_lines(pooled_cases(args.a), pooled_cases(args.b), args.name_a, args.name_b):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
