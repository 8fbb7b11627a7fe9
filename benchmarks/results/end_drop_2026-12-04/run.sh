#!/bin/bash
# The numbering decoder leaving out an end instance that fits no place (end_drop_cost 8, end_drop_max_fraction 0.5:
# the defaults since this run) against every instance numbered (end_drop_cost 0), on the built-in model's saved
# probabilities: the quick protocol's 35 clean test phantoms of seed 1 (folds 0 and 5), 12 lowdose phantoms of seed 0,
# 12 thickslice phantoms of seed 7, the real CT and its ten test-time variants. The network runs once per case.
# Run from the repository root with the venv active; about 10 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q6}; T=${T:-/tmp/tta}; W=${W:-/tmp/end_drop}; B=$PWD; R=$B/benchmarks/results/end_drop_2026-12-04
mkdir -p $W/seed1_in $T
# the quick protocol's data, reference and test inputs only (nothing trained)
python - "$Q" <<'PY'
import sys
from dataclasses import asdict
from pathlib import Path
sys.path.insert(0, "benchmarks")
from multispine_protocol import QUICK, Benchmark, Protocol
if __name__ == "__main__":
    b = Benchmark(Protocol(**{**asdict(QUICK), "perturb_cases": 0}), Path(sys.argv[1]), Path(sys.argv[1]) / "out")
    b.step("data", {}, b.do_data)
    b.step("reference", {}, b.do_reference)
    for f in (0, 5):
        b.step(f"inputs_{f}", {}, lambda f=f: b.do_inputs(f))
PY
for x in $Q/inputs/fold0/*_0000.nii.gz $Q/inputs/fold5/*_0000.nii.gz; do ln -sf "$(readlink -f $x)" $W/seed1_in/; done
[ -d $T/ld0 ] || vertebraformer phantoms $T/ld0 --seed 0 --sources verse --extra-style lowdose --extra-cases 12 --quiet
[ -d $T/ts7 ] || vertebraformer phantoms $T/ts7 --seed 7 --sources verse --extra-style thickslice --extra-cases 12 --quiet
python -c "from vertebraformer_nn.demo.reference import truth_reference as t; t('$T/ld0', 'extra_lowdose', '$T/ld0_ref'); t('$T/ts7', 'extra_thickslice', '$T/ts7_ref')"
[ -f $W/seed1/summary.csv ] || vertebraformer predict -i $W/seed1_in -o $W/seed1 --save_probabilities
[ -f $W/ld0/summary.csv ] || vertebraformer predict -i $T/ld0/extra_lowdose -o $W/ld0 --save_probabilities
[ -f $W/ts7/summary.csv ] || vertebraformer predict -i $T/ts7/extra_thickslice -o $W/ts7 --save_probabilities
for s in seed1 ld0 ts7; do
  case $s in seed1) ref=$Q/reference; skip=--skip-missing;; *) ref=$T/${s}_ref; skip=;; esac
  for arm in off:0 on:8; do
    vertebraformer ensemble -i $W/$s -o $W/${s}_${arm%%:*} --set end_drop_cost=${arm##*:}
    # seed 1: the reference's 61 other phantoms are missing predictions, which evaluate reports with a non-zero status
    vertebraformer evaluate -ref $ref -pred $W/${s}_${arm%%:*} -o $W/eval_${s}_${arm%%:*}.json --quiet $skip ||
      [ $s = seed1 ]
  done
done
# the cases predicted only (the reference folder holds all 96 phantoms of seed 1)
python -c "
import json, sys
for arm in ('off', 'on'):
    d = json.load(open('$W/eval_seed1_%s.json' % arm))
    d['cases'] = {k: v for k, v in d['cases'].items() if v.get('status') == 'ok'}
    json.dump(d, open('$W/eval_seed1_%s_predicted.json' % arm, 'w'))"
python benchmarks/paired_evaluations.py $W/eval_seed1_on_predicted.json,$W/eval_ld0_on.json,$W/eval_ts7_on.json \
  $W/eval_seed1_off_predicted.json,$W/eval_ld0_off.json,$W/eval_ts7_off.json --name-a end-drop --name-b off | tee $R/paired.txt
python benchmarks/real_ct.py --work $W/rc --tag end-drop-off --results $W --save_probabilities --set end_drop_cost=0
python benchmarks/real_ct.py --work $W/rc_on --tag end-drop --results $R --renumber $W/rc/predictions
python benchmarks/real_ct_perturbed.py --work $W/rcp --tag end-drop-off --results $R --save_probabilities --set end_drop_cost=0
python benchmarks/real_ct_perturbed.py --work $W/rcp_on --tag end-drop --results $R --renumber $W/rcp
