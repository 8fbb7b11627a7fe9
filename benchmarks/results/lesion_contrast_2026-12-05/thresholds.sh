#!/bin/bash
# written-lesion threshold with the CT judging on (the built-in model's 36 unseen phantoms)
O=${O:-/tmp/lesion_contrast}; H=${H:-/tmp/held_out}; T=${T:-/tmp/tta}  # run.sh first (its in_<set> links)
for spec in hs2:$H/hs2_ref ld4:$H/ld4_ref ld0:$T/ld0_ref; do s=${spec%%:*}; ref=${spec#*:}
  for t in 0.5 0.6 0.7 0.9; do
    vertebraformer ensemble -i $O/in_$s -o $O/t${t}_$s --set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=100 \
      --set lesion_threshold=$t > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $O/t${t}_$s -o $O/eval_t${t}_$s.json --quiet > /dev/null 2>&1
  done
done
python - $O <<'PY'
import json, sys
for t in ("0.5", "0.6", "0.7", "0.9"):
    parts = []
    for iou in ("0.1", "0.3"):
        tp = fp = fn = 0
        for s in ("hs2", "ld4", "ld0"):
            for c in json.load(open(f"{sys.argv[1]}/eval_t{t}_{s}.json"))["cases"].values():
                if c.get("status") == "ok" and c.get("lesions"):
                    tp, fp, fn = (x + c["lesions"]["thresholds"][iou][k] for x, k in zip((tp, fp, fn), ("tp", "fp", "fn")))
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        parts.append(f"IoU {iou}: TP {tp}, precision {p:.2f}, recall {r:.2f}, F1 {2 * p * r / max(p + r, 1e-9):.2f}")
    print(f"threshold {t}: {tp + fp} written lesions; " + "; ".join(parts))
PY
