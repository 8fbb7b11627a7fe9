"""Paired contrasts on the same 12 unseen-style phantoms (``eval_<model>_lowdose_seed0.json`` beside this file): per
case the difference of ``vertebraformer evaluate``'s identification rate, per-vertebra Dice and binary spine Dice, mean
with its patient-level 95 % BCa interval (the protocol's ``protocol_report.paired_difference``). Only the cases are
resampled: the spread between training runs is not in it."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from protocol_report import paired_difference  # noqa: E402


def cases(model):
    return json.loads((HERE / f"eval_{model}_lowdose_seed0.json").read_text())["cases"]


for a, b in (("demo_builtin", "demo_scratch"), ("demo_builtin", "builtin_nocoarse")):
    for task, metric in (("numbering", "id_rate"), ("segmentation", "dice"), ("segmentation", "binary_dice")):
        d = paired_difference(cases(a), cases(b), task, metric, bootstrap=10000, seed=0)
        print(f"{metric}: {a} - {b} {100 * d['value']:.1f} [{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}] points "
              f"({d['method']}), {d['n_cases']} cases")
