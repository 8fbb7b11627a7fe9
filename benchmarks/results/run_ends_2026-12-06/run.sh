#!/bin/bash
# A run of evenly spaced discs loses the discs at either end that are not dark between bright endplates
# (ct_discs.dark_ended, RUN_END_MIN_CONTRAST_HU 25: "after") against runs kept whole ("before": main at 37d1b21,
# checked out beside as a git worktree and put first on PYTHONPATH), on saved probabilities: no network runs.
# O holds the rib-bearing record's phantoms and predictions (../rib_bearing_2026-12-05/run.sh: 60 unseen-style
# phantoms pred_s{7,13}_<style> with references ref_*, the real CT's predictions rc/ and variants rcp/).
# DEMO: a demo's output folder (`vertebraformer demo -o DEMO`); its model's and the built-in model's probabilities
# on the demo's 12 unseen phantoms are saved here first (predict --save_probabilities, 1 minute).
# Run from the repository root with the venv active; about 8 minutes on 2 cores once O is there.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/run_ends_2026-12-06; O=${O:-/tmp/rib_bearing}; S=${S:-/tmp/run_ends}; DEMO=${DEMO:-/tmp/demo}
mkdir -p $S
[ -d $S/base ] || git worktree add -f --detach $S/base 37d1b21 > /dev/null 2>&1
arm() { if [ $1 = before ]; then echo "env PYTHONPATH=$S/base"; else echo env; fi; }
IN=$DEMO/SIM/extra_lowdose; REF=$DEMO/reference/unseen_lowdose
MODEL=$(ls -d $DEMO/nnUNet_results/Dataset*/*__3d_fullres | head -1)
[ -d $S/demo_model ] || vertebraformer predict -i $IN -o $S/demo_model -m $MODEL --save_probabilities --no_preview \
  > /dev/null 2>&1
[ -d $S/demo_builtin ] || vertebraformer predict -i $IN -o $S/demo_builtin --save_probabilities --no_preview \
  > /dev/null 2>&1
sets=""; for seed in 7 13; do for s in hushift lowdose thickslice; do sets="$sets s${seed}_$s"; done; done
for v in after before; do
  for k in $sets; do
    $(arm $v) vertebraformer ensemble -i $O/pred_$k -o $S/${k}_$v --no_preview \
      --disable_progress_bar > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $S/${k}_$v -o $S/eval_${k}_$v.json --quiet > /dev/null
  done
  for m in demo_model demo_builtin; do
    $(arm $v) vertebraformer ensemble -i $S/$m -o $S/${m}_$v --disable_progress_bar > /dev/null 2>&1
    vertebraformer evaluate -ref $REF -pred $S/${m}_$v -o $S/eval_${m}_$v.json --quiet > /dev/null
  done
  cp $S/demo_model_$v/lowdose_005_preview.png $R/demo_model_lowdose_005_$v.png
done
j() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(j after $sets) $(j before $sets) --name-a after --name-b before \
  | tee $R/paired.txt
for m in demo_model demo_builtin; do
  python benchmarks/paired_evaluations.py $S/eval_${m}_after.json $S/eval_${m}_before.json --name-a after \
    --name-b before | tee $R/paired_$m.txt
  cp $S/eval_${m}_after.md $R/evaluation_${m}_after.md
done
grep -l "evenly spaced run" $S/*_after/*.json | sed "s|$S/||" > $R/cases_with_runs.txt
for v in after before; do
  $(arm $v) python benchmarks/real_ct.py --work $S/rc_$v --tag run-ends-$v --results $R \
    --renumber $O/rc/predictions 2> /dev/null | grep Dice
  $(arm $v) python benchmarks/real_ct_perturbed.py --work $S/rcp_$v --tag run-ends-$v --results $R \
    --renumber $O/rcp 2> /dev/null | tail -1
done
# the real CT's previews are the pitch record's (../ct_disc_pitch_2026-12-06/, ../shared_level_2026-12-06/), and the
# before arm's real-CT reports are the after arm's case by case: stored once
rm -f $R/real_ct_*_run-ends-*_preview.png $R/real_ct_*_run-ends-before.*
git worktree remove --force $S/base
