"""Paired contrast of the two arms on the same unseen-style phantoms: per case (head - no head) of the identification
rate and the per-vertebra Dice of ``vertebraformer evaluate``'s JSON (``eval_<arm>_<style>.json`` beside this file),
mean with its patient-level 95 % BCa interval: the protocol's own ``protocol_report.paired_difference``. Only the
cases are resampled: the spread between training runs is not in it."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from protocol_report import paired_difference  # noqa: E402


def cases(arm, styles):
    out = {}
    for style in styles:
        out.update(json.loads((HERE / f"eval_{arm}_{style}.json").read_text())["cases"])
    return out


for task, metric in (("numbering", "id_rate"), ("segmentation", "dice")):
    for styles in (("lowdose",), ("thickslice",), ("lowdose", "thickslice")):
        head, nohead = cases("head", styles), cases("nohead", styles)
        d = paired_difference(head, nohead, task, metric, bootstrap=10000, seed=0)
        diffs = [head[c][task][metric] - nohead[c][task][metric] for c in head
                 if head[c][task][metric] is not None and nohead[c][task][metric] is not None]
        print(f"{metric} {'+'.join(styles)}: head - no head {100 * d['value']:.1f} "
              f"[{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}] points ({d['method']}), {d['n_cases']} cases, "
              f"worse in {sum(x < 0 for x in diffs)}, better in {sum(x > 0 for x in diffs)}")
