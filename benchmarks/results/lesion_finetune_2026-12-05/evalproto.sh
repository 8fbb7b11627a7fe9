#!/bin/bash
# predict the quick protocol's test cases (seed 1: fold 0's and fold 5's, each once) with one arm and score them
set -uo pipefail
. /work/main/.venv/bin/activate
export nnUNet_compile=f
arm=$1; M=Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
model=$([ $arm = builtin ] || echo "-m /tmp/s18/res$arm/$M -f 0")
vertebraformer predict -i /tmp/s18/proto_in -o /tmp/s18/pred_${arm}_proto $model --save_probabilities --no_preview --disable_progress_bar > /tmp/s18/pred_${arm}_proto.log 2>&1
vertebraformer evaluate -ref /tmp/vf_protocol_q7/reference -pred /tmp/s18/pred_${arm}_proto -o /tmp/s18/eval_${arm}_proto.json --quiet --skip-missing > /dev/null 2>&1
