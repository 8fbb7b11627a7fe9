#!/bin/bash
# The discs' pitch read at the first strong peak of the endplate score's autocorrelation (ct_discs.pitch_mm,
# HARMONIC_FRACTION 0.8: "after", 37d1b21) against its highest value in 12-45 mm ("before": 1137d79), on the
# built-in model's saved probabilities: no network runs.
# O holds the rib-bearing record's phantoms and predictions (../rib_bearing_2026-12-05/run.sh draws and predicts
# them: 60 unseen-style phantoms pred_s{7,13}_<style> with their references ref_*, the real CT's predictions rc/ and
# its ten variants rcp/). Optional: DEMO=<folder of a demo model's saved probabilities on the demo's 12 unseen
# phantoms> and DEMO_REF=<their reference> adds them. Run from the repository root with the venv active; about 6
# minutes on 2 cores once O is there.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/ct_disc_pitch_2026-12-06; O=${O:-/tmp/rib_bearing}; S=${S:-/tmp/ct_disc_pitch}
mkdir -p $S
# both arms from their commits (37d1b21 brought the change), each checked out beside and put first on PYTHONPATH
[ -d $S/base ] || git worktree add -f --detach $S/base 1137d79 > /dev/null 2>&1
[ -d $S/after ] || git worktree add -f --detach $S/after 37d1b21 > /dev/null 2>&1
arm() { if [ $1 = before ]; then echo "env PYTHONPATH=$S/base"; else echo "env PYTHONPATH=$S/after"; fi; }
sets=""; for seed in 7 13; do for s in hushift lowdose thickslice; do sets="$sets s${seed}_$s"; done; done
for v in after before; do
  for k in $sets; do
    $(arm $v) vertebraformer ensemble -i $O/pred_$k -o $S/${k}_$v --no_preview \
      --disable_progress_bar > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $S/${k}_$v -o $S/eval_${k}_$v.json --quiet > /dev/null
  done
  if [ -n "${DEMO:-}" ]; then
    $(arm $v) vertebraformer ensemble -i $DEMO -o $S/demo_$v --no_preview --disable_progress_bar \
      > /dev/null 2>&1
    vertebraformer evaluate -ref $DEMO_REF -pred $S/demo_$v -o $S/eval_demo_$v.json --quiet > /dev/null
  fi
done
j() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(j after $sets) $(j before $sets) --name-a after --name-b before \
  | tee $R/paired.txt
[ -n "${DEMO:-}" ] && python benchmarks/paired_evaluations.py $S/eval_demo_after.json $S/eval_demo_before.json \
  --name-a after --name-b before | tee $R/paired_demo.txt
for v in after before; do
  $(arm $v) python benchmarks/real_ct.py --work $S/rc_$v --tag pitch-$v --results $R --renumber $O/rc/predictions \
    | grep Dice
  $(arm $v) python benchmarks/real_ct_perturbed.py --work $S/rcp_$v --tag pitch-$v --results $R --renumber $O/rcp \
    | tail -1
done
$(arm after) python $R/chest_pitch.py $O/rc/predictions $S/rc_before/predictions/chest.nii.gz \
  $S/rc_after/predictions/chest.nii.gz $R/chest_pitch.png > /dev/null 2>&1
# what is the same in both arms is stored once: the variants' tables (the after arm's), the previews of the three
# cases whose slices are not read or whose pitch is lumbar, and the chest's before preview (both are the
# shared-level record's, ../shared_level_2026-12-06/)
for c in example_ct tptbox verse014; do rm -f $R/real_ct_*_pitch-*_${c}_preview.png; done
rm -f $R/real_ct_perturbed_*_pitch-before.* $R/real_ct_*_pitch-before_chest_preview.png
git worktree remove --force $S/base; git worktree remove --force $S/after
