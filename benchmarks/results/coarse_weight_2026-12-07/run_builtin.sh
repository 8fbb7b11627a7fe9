#!/bin/bash
# The same three weights (coarse_level_weight 0 / 0.5 / 1) on the built-in model: its saved probabilities (fine and
# coarse stage) of 72 unseen phantoms (seeds 13 and 21 x VerSe style / lowdose / hushift) and of the four real CT
# cases, renumbered; no network runs. Run from the repository root with the venv active (about 8 minutes).
# P: the built-in model's predictions and references made by thick_slice_discs_2026-12-07/run.sh (pred*, ref*, and
# rc/predictions from benchmarks/real_ct.py --save_probabilities).
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/coarse_weight_2026-12-07; O=${O:-/tmp/coarse_weight_builtin}; P=${P:-/tmp/thick_discs}
mkdir -p $O
source $R/arms.sh
for seed in 13 21; do for src in verse extra_lowdose extra_hushift; do
  arms builtin_seed${seed}_$src $P/pred${seed}_$src $P/ref${seed}_$src
done; done > $R/results_builtin.txt
for x in 0 0.5 1; do
  echo "== real CT, coarse_level_weight $x"
  python benchmarks/real_ct.py --work $O/rc_$x --tag w$x --results $O --renumber $P/rc/predictions \
    --set coarse_level_weight=$x 2>/dev/null | grep -E "Dice|right|T1"
done >> $R/results_builtin.txt
