#!/bin/bash
# the built-in model's saved probabilities of the protocol's 35 cases (evalproto.sh builtin) with lower candidate floors
. /work/main/.venv/bin/activate
export nnUNet_compile=f
cd /tmp/s18 && mkdir -p fl_in && ln -sf /tmp/s18/pred_builtin_proto/*_vfprobs.npz fl_in/
for f in 0.05 0.02 0.01; do
  vertebraformer ensemble -i fl_in -o fl_$f --set lesion_candidate_floor=$f > /dev/null 2>&1
  vertebraformer evaluate -ref /tmp/vf_protocol_q7/reference -pred fl_$f -o eval_fl_$f.json --quiet --skip-missing > /dev/null 2>&1
done
python3 /work/main/benchmarks/results/lesion_finetune_2026-12-05/summ.py eval_fl_*.json
