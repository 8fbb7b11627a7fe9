#!/bin/bash
# Pieces of one vertebra share its level (shared_level_prior 0.05, shared_level_max_pitch 0.5) against off (0), on the
# built-in model's saved probabilities: no network runs but the first predictions. O holds the rib-bearing record's
# phantoms and predictions (../rib_bearing_2026-12-05/run.sh draws and predicts them: 60 unseen-style phantoms
# pred_s{7,13}_<style> with their references ref_*, the real CT's ten variants rcp/). Run from the repository root
# with the venv active; about 8 minutes on 2 cores once O is there.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/shared_level_2026-12-06; O=${O:-/tmp/rib_bearing}; S=${S:-/tmp/shared_level}
mkdir -p $S
sets=""; for seed in 7 13; do for s in hushift lowdose thickslice; do sets="$sets s${seed}_$s"; done; done
for arm in on off; do
  A=""; [ $arm = off ] && A="--set shared_level_prior=0"
  for k in $sets; do
    vertebraformer ensemble -i $O/pred_$k -o $S/${k}_$arm --no_preview --disable_progress_bar $A > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $S/${k}_$arm -o $S/eval_${k}_$arm.json --quiet > /dev/null
  done
done
j() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(j on $sets) $(j off $sets) --name-a shared --name-b off | tee $R/paired.txt
grep -l "pieces of one vertebra (shared_level_prior)" $S/*_on/*.json | sed "s|$S/||" | tee $R/cases_shared.txt
[ -d $O/rc ] || python benchmarks/real_ct.py --work $O/rc --tag first --results $O --save_probabilities
for arm in on off; do
  A=""; [ $arm = off ] && A="--set shared_level_prior=0"
  python benchmarks/real_ct.py --work $S/rc_$arm --tag shared-$arm --results $R --renumber $O/rc/predictions $A \
    | grep Dice
  python benchmarks/real_ct_perturbed.py --work $S/rcp_$arm --tag shared-$arm --results $R --renumber $O/rcp $A \
    | tail -1
done
