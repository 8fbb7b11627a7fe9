#!/bin/bash
# The built-in model's predictions post-processed again (no network: `vertebraformer ensemble -i` on one folder of
# saved probabilities) with the boundary band off (0), at its default (2 mm) and at 3 mm, then scored:
#   real CT:  benchmarks/real_ct.py --renumber (binary spine Dice, levels)
#   phantoms: vertebraformer evaluate on four sets of 71 phantoms, paired by benchmarks/paired_evaluations.py (predicted with --save_probabilities earlier:
#             the quick protocol's 35 test cases of seed 1 and 36 unseen-style phantoms, by
#             ../lesion_finetune_2026-12-05/evalarm.sh and evalproto.sh with the arm "builtin")
# usage: run.sh OUT   (PRED = folder holding pred_builtin_<set>, REAL = real-CT prediction folder of real_ct.py
#                      run with --save_probabilities)
set -uo pipefail
OUT=$1; PRED=${PRED:-/tmp/s18}; REAL=${REAL:-/tmp/s20/rc_builtin/predictions}
H=/tmp/held_out; T=/tmp/tta; HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$HERE/../../..
export nnUNet_compile=f
mkdir -p "$OUT"
for band in 0 2 3; do
  python "$ROOT/benchmarks/real_ct.py" --work "$OUT/real_$band" --tag "bone-edge-$band" --results "$OUT/reports" \
    --renumber "$REAL" --set bone_edge_band_mm=$band > "$OUT/real_$band.log" 2>&1
  for spec in proto:/tmp/vf_protocol_q7/reference hs2:$H/hs2_ref ld4:$H/ld4_ref ld0:$T/ld0_ref; do
    s=${spec%%:*}; ref=${spec#*:}
    vertebraformer ensemble -i "$PRED/pred_builtin_$s" -o "$OUT/pred_${band}_$s" --no_preview --disable_progress_bar \
      --set bone_edge_band_mm=$band > "$OUT/pred_${band}_$s.log" 2>&1
    vertebraformer evaluate -ref "$ref" -pred "$OUT/pred_${band}_$s" -o "$OUT/eval_${band}_$s.json" --quiet \
      --skip-missing > /dev/null 2>&1
  done
done
for s in proto hs2 ld4 ld0; do for band in 2 3; do
  python "$ROOT/benchmarks/paired_evaluations.py" "$OUT/eval_${band}_$s.json" "$OUT/eval_0_$s.json" \
    --name-a "$s, band $band mm" --name-b "band 0"
done; done > "$OUT/paired.txt"
