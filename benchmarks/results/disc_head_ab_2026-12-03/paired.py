"""Paired contrast of the two arms on the same unseen-style phantoms: per case (head - no head) of the identification
rate and the per-vertebra Dice from ``vertebraformer evaluate``'s JSON, mean with a 95 % percentile bootstrap over the
cases (10,000 resamples, seed 0). Only the cases are resampled: the spread between training runs is not in it."""
import json

import numpy as np


def per_case(arm, style, section, key):
    cases = json.load(open(f"/tmp/ab/eval_{arm}_{style}.json"))["cases"]
    return {name: case[section][key] for name, case in cases.items()}


rng = np.random.default_rng(0)
for section, key in (("numbering", "id_rate"), ("segmentation", "dice")):
    for styles in (("lowdose",), ("thickslice",), ("lowdose", "thickslice")):
        diffs = []
        for style in styles:
            head, nohead = per_case("head", style, section, key), per_case("nohead", style, section, key)
            diffs += [head[c] - nohead[c] for c in head if head[c] is not None and nohead[c] is not None]
        diffs = np.array(diffs)
        means = [rng.choice(diffs, len(diffs)).mean() for _ in range(10000)]
        print(f"{key} {'+'.join(styles)}: head - no head {100 * diffs.mean():.1f} "
              f"[{100 * np.percentile(means, 2.5):.1f}, {100 * np.percentile(means, 97.5):.1f}] points, {len(diffs)} "
              f"cases, worse in {(diffs < 0).sum()}, better in {(diffs > 0).sum()}")
