#!/bin/bash
# Fused vertebrae cut without a neck (split_volume_ratio: 2.5, the default since this run) against off (0), and
# 1.7 / 2.0 beside them, on the built-in model's saved probabilities: no network runs. Needs the work folder of
# ../end_drop_2026-12-04/run.sh ($W: the probabilities of 35 + 12 + 12 phantoms, the real CT and its variants).
# Run from the repository root with the venv active; about 6 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q6}; T=${T:-/tmp/tta}; W=${W:-/tmp/end_drop}; R=$PWD/benchmarks/results/fused_split_2026-12-04
for s in seed1 ld0 ts7; do
  case $s in seed1) ref=$Q/reference; skip=--skip-missing;; *) ref=$T/${s}_ref; skip=;; esac
  for v in 0 1.7 2.0 2.5; do
    vertebraformer ensemble -i $W/$s -o $W/${s}_fs$v --set split_volume_ratio=$v > /dev/null
    # seed 1: the reference's 61 other phantoms are missing predictions, which evaluate reports with a non-zero status
    vertebraformer evaluate -ref $ref -pred $W/${s}_fs$v -o $W/eval_${s}_fs$v.json --quiet $skip > /dev/null ||
      [ $s = seed1 ]
  done
done
python -c "
import json
for v in ('0', '1.7', '2.0', '2.5'):
    d = json.load(open('$W/eval_seed1_fs%s.json' % v))
    d['cases'] = {k: c for k, c in d['cases'].items() if c.get('status') == 'ok'}
    json.dump(d, open('$W/eval_seed1_fs%s_predicted.json' % v, 'w'))"
for v in 1.7 2.0 2.5; do
  python benchmarks/paired_evaluations.py $W/eval_seed1_fs${v}_predicted.json,$W/eval_ld0_fs$v.json,$W/eval_ts7_fs$v.json \
    $W/eval_seed1_fs0_predicted.json,$W/eval_ld0_fs0.json,$W/eval_ts7_fs0.json --name-a split-$v --name-b off
done | tee $R/paired.txt
python benchmarks/real_ct.py --work $W/rc_fs --tag fused-split --results $R --renumber $W/rc/predictions
python benchmarks/real_ct_perturbed.py --work $W/rcp_fs --tag fused-split --results $R --renumber $W/rcp
python benchmarks/real_ct_perturbed.py --work $W/rcp_fs0 --tag fused-split-off --results $R --renumber $W/rcp \
  --set split_volume_ratio=0
