"""The written lesions' precision, recall and F1 at IoU 0.1 and 0.3, pooled over the 36 unseen phantoms (sets hs2,
ld4, ld0), for each threshold arm. Usage: written_f1.py OUT_DIR THRESHOLD... (reads
OUT_DIR/eval_t<THRESHOLD>_<set>.json, written by run.sh here and by ../lesion_contrast_2026-12-05/thresholds.sh)."""
import json
import sys

out, thresholds = sys.argv[1], sys.argv[2:]
for t in thresholds:
    parts = []
    for iou in ("0.1", "0.3"):
        tp = fp = fn = 0
        for s in ("hs2", "ld4", "ld0"):
            for c in json.load(open(f"{out}/eval_t{t}_{s}.json"))["cases"].values():
                if c.get("status") == "ok" and c.get("lesions"):
                    at = c["lesions"]["thresholds"][iou]
                    tp, fp, fn = tp + at["tp"], fp + at["fp"], fn + at["fn"]
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        parts.append(f"IoU {iou}: TP {tp}, precision {p:.2f}, recall {r:.2f}, F1 {2 * p * r / max(p + r, 1e-9):.2f}")
    print(f"threshold {t}: {tp + fp} written lesions; " + "; ".join(parts))
