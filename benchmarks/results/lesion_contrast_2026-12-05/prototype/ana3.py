# Prototype of the 21st sitting, kept as run (how lesion_contrast.py's values were chosen; README 'How the values
# were chosen'). Reads ../lesion_extent_2026-12-05/run.sh's arm "now" in /tmp/lesion_extent; sys.path /tmp/s21 = this folder.
import json, sys, math, numpy as np
sys.path.insert(0, __import__("os").path.dirname(__file__))
from ana import nref_total, ap
rows = json.load(open(sys.argv[1]))
def fac(r, k, none):
    if not (r["sd"] == r["sd"] and r["sd"] > 0): return none
    return min(1, abs(r["contrast"]) / (k * r["sd"]))
for g, ss in {"unseen36": ["hs2", "ld4", "ld0"], "fold0": ["fold0"], "fold5": ["fold5"]}.items():
    R = [r for r in rows if r["set"] in ss]; n = sum(nref_total(s) for s in ss)
    out = []
    for k in (0.5, 1, 2, 3):
        for none in (0, 0.5, 1):
            items = [(r["score"] * fac(r, k, none), (r["set"], r["case"]), r["ref"], r["iou"]) for r in R]
            out.append(f"k{k}/n{none}: {100*ap(items, n, 0.1):.1f} {100*ap(items, n, 0.3):.1f}")
    print(g, n, " | ".join(out))
