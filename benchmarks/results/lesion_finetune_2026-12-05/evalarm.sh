#!/bin/bash
# predict the 36 unseen phantoms with one arm (builtin, A, B) and score them against their complete truth
set -uo pipefail
. /work/main/.venv/bin/activate
export nnUNet_compile=f
arm=$1; M=Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
model=$([ $arm = builtin ] || echo "-m /tmp/s18/res$arm/$M -f 0")
H=/tmp/held_out; T=/tmp/tta
for spec in hs2:$H/s2/extra_hushift:$H/hs2_ref ld4:$H/s4/extra_lowdose:$H/ld4_ref ld0:$T/ld0/extra_lowdose:$T/ld0_ref; do
  s=${spec%%:*}; rest=${spec#*:}; in=${rest%%:*}; ref=${rest#*:}
  vertebraformer predict -i $in -o /tmp/s18/pred_${arm}_$s $model --save_probabilities --no_preview --disable_progress_bar > /tmp/s18/pred_${arm}_$s.log 2>&1
  vertebraformer evaluate -ref $ref -pred /tmp/s18/pred_${arm}_$s -o /tmp/s18/eval_${arm}_$s.json --quiet > /dev/null 2>&1
done
