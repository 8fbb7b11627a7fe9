#!/bin/bash
# The decoder may skip a level beside an instance that may hold two vertebrae (double_volume_ratio: 1.5, the default
# since this run) against off (0), with 1.3 / 1.7 / 2.0 beside them, on the built-in model's saved probabilities: no
# network runs. Needs the work folder of ../end_drop_2026-12-04/run.sh ($W). Run from the repository root with the
# venv active; about 6 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q6}; T=${T:-/tmp/tta}; W=${W:-/tmp/end_drop}; R=$PWD/benchmarks/results/double_instances_2026-12-04
for s in seed1 ld0 ts7; do
  case $s in seed1) ref=$Q/reference; skip=--skip-missing;; *) ref=$T/${s}_ref; skip=;; esac
  for v in 0 1.3 1.5 1.7 2.0; do
    vertebraformer ensemble -i $W/$s -o $W/${s}_dv$v --set double_volume_ratio=$v > /dev/null 2>&1
    # seed 1: the reference's 61 other phantoms are missing predictions, which evaluate reports with a non-zero status
    vertebraformer evaluate -ref $ref -pred $W/${s}_dv$v -o $W/eval_${s}_dv$v.json --quiet $skip > /dev/null ||
      [ $s = seed1 ]
  done
done
python -c "
import json
for v in ('0', '1.3', '1.5', '1.7', '2.0'):
    d = json.load(open('$W/eval_seed1_dv%s.json' % v))
    d['cases'] = {k: c for k, c in d['cases'].items() if c.get('status') == 'ok'}
    json.dump(d, open('$W/eval_seed1_dv%s_predicted.json' % v, 'w'))"
for v in 1.3 1.5 1.7 2.0; do
  python benchmarks/paired_evaluations.py $W/eval_seed1_dv${v}_predicted.json,$W/eval_ld0_dv$v.json,$W/eval_ts7_dv$v.json \
    $W/eval_seed1_dv0_predicted.json,$W/eval_ld0_dv0.json,$W/eval_ts7_dv0.json --name-a double-$v --name-b off
done | tee $R/paired.txt
python benchmarks/real_ct.py --work $W/rc_dv --tag double-instances --results $R --renumber $W/rc/predictions
python benchmarks/real_ct_perturbed.py --work $W/rcp_dv --tag double-instances --results $R --renumber $W/rcp
