"""Pooled lesion AP@0.1 / @0.3 (every candidate ranked, as `evaluate` pools it) and the written lesions' precision,
recall and F1 at IoU 0.3, per arm and set. Usage: ap_table.py OUT_DIR (run.sh's $O)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from paired_evaluations import pooled_cases  # noqa: E402
from vertebraformer_nn.evaluation import lesion_metrics  # noqa: E402

GROUPS = {"36 unseen phantoms (hs2, ld4, ld0)": ("hs2", "ld4", "ld0"), "protocol fold 0": ("fold0",),
          "protocol fold 5": ("fold5",)}
out = Path(sys.argv[1])
print("| arm | set | AP@0.1 | AP@0.3 | written lesions | precision / recall / F1 at IoU 0.3 |")
print("|---|---|---|---|---|---|")
for group, sets in GROUPS.items():
    for arm in ("off", "weight", "band", "on"):
        cases = pooled_cases(",".join(str(out / f"eval_{arm}_{s}.json") for s in sets))
        lesions = [c["lesions"] for c in cases.values() if "lesions" in c]
        aps = []
        for t in (0.1, 0.3):
            tp, owner, n_ref = lesion_metrics.pooled_inputs(lesions, t, ranking=True)
            ap = lesion_metrics.pooled_detection(tp, owner, n_ref, np.ones((1, len(n_ref))))["ap"]
            aps.append(float(np.ravel(ap)[0]))
        tp = fp = fn = 0
        for les in lesions:
            at = les["thresholds"]["0.3"]
            tp, fp, fn = tp + at["tp"], fp + at["fp"], fn + at["fn"]
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        print(f"| {arm} | {group} | {100 * aps[0]:.1f} | {100 * aps[1]:.1f} | {tp + fp} | "
              f"{p:.2f} / {r:.2f} / {2 * p * r / max(p + r, 1e-9):.2f} |")
