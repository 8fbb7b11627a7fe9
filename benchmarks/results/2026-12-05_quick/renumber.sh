#!/bin/bash
# The quick protocol's VertebraFormer predictions (fold 0 and fold 5, with the coarse stage; saved with their
# probabilities by this run, `--work /tmp/vf_protocol_q7`) numbered again without the network: the numbering of the
# 2026-12-04 report (no end drop, no fused split, no double skip), that of main at this run (fd4d146), and with the level runs (1.2) and the double split, alone and together.
# Clean test cases only (the report's accuracy table). Run from the repository root with the venv active; ~5 min.
set -euo pipefail
export nnUNet_compile=f
Q=${Q:-/tmp/vf_protocol_q7}; O=${O:-/tmp/q7_renumber}; R=$PWD/benchmarks/results/2026-12-05_quick
arms=("dec04:--set end_drop_cost=0 --set split_volume_ratio=0 --set double_volume_ratio=0 --set level_run_height_ratio=0 --set double_split=0"
      "run:--set level_run_height_ratio=0 --set double_split=0"
      "runs:--set level_run_height_ratio=1.2 --set double_split=0" "split:--set level_run_height_ratio=0 --set double_split=1"
      "both:--set level_run_height_ratio=1.2 --set double_split=1")
for fold in 0 5; do
  mkdir -p $O/in_$fold
  for f in $Q/predictions/vf_fold$fold/*_vfprobs.npz; do
    case $(basename $f) in *__*) ;; *) ln -sf $f $O/in_$fold/;; esac  # perturbed variants (<case>__<kind><n>) left out
  done
  for arm in "${arms[@]}"; do name=${arm%%:*}; sets=${arm#*:}
    vertebraformer ensemble -i $O/in_$fold -o $O/${name}_$fold $sets > /dev/null 2>&1
    vertebraformer evaluate -ref $Q/reference -pred $O/${name}_$fold -o $O/eval_${name}_$fold.json --quiet \
      --skip-missing > /dev/null 2>&1 || true  # the reference's other phantoms have no prediction here
    python - $O/eval_${name}_$fold.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d['cases'] = {k: c for k, c in d['cases'].items() if c.get('status') == 'ok'}
json.dump(d, open(sys.argv[1], 'w'))
PY
  done
done
for fold in 0 5; do
  python benchmarks/paired_evaluations.py $O/eval_run_$fold.json $O/eval_dec04_$fold.json --name-a "fold $fold, numbering at this run" --name-b "2026-12-04 report's numbering"
  for arm in runs split both; do
    python benchmarks/paired_evaluations.py $O/eval_${arm}_$fold.json $O/eval_run_$fold.json --name-a "fold $fold, $arm" --name-b "numbering at this run"
  done
done | tee $R/renumber.txt
