"""Paired differences per case (band 2 and 3 mm against 0) of binary and per-vertebra Dice and the id rate, with a
percentile bootstrap over cases, from run.sh's evaluations: python paired.py OUT"""
import json
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
for s in ("proto", "hs2", "ld4", "ld0"):
    base = json.loads((out / f"eval_0_{s}.json").read_text())["cases"]
    for band in ("2", "3"):
        arm = json.loads((out / f"eval_{band}_{s}.json").read_text())["cases"]
        cases = [c for c in base if base[c]["status"] == "ok" and arm.get(c, {}).get("status") == "ok"]
        for key in ("binary_dice", "dice"):
            d = np.array([arm[c]["segmentation"][key] - base[c]["segmentation"][key] for c in cases])
            rng = np.random.default_rng(0)
            boot = [rng.choice(d, d.size).mean() for _ in range(4000)]
            print(f"{s:5s} band {band} mm {key:11s} n={d.size:2d} {100 * d.mean():+.2f} "
                  f"[{100 * np.percentile(boot, 2.5):+.2f}, {100 * np.percentile(boot, 97.5):+.2f}] "
                  f"better {(d > 1e-4).sum():2d} worse {(d < -1e-4).sum():2d}")
        ids = [arm[c]["numbering"]["id_rate"] - base[c]["numbering"]["id_rate"] for c in cases
               if arm[c]["numbering"].get("id_rate") is not None and base[c]["numbering"].get("id_rate") is not None]
        print(f"{s:5s} band {band} mm id rate changed in {sum(abs(x) > 1e-9 for x in ids)} of {len(ids)} cases")
