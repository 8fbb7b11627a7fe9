#!/bin/bash
# The head-most instance cut off the vertebra the field of view cut above it (instance_repair.split_top_fused,
# top_fused_ratio 1.3: "on") against off (0), with 1.2 and 1.4 beside, on saved probabilities: no network runs.
# O holds the rib-bearing record's phantoms and predictions (../rib_bearing_2026-12-05/run.sh: 60 unseen-style
# phantoms pred_s{7,13}_<style> with references ref_*, the real CT's predictions rc/ and variants rcp/); D holds the
# demo's 12 unseen phantoms' saved probabilities of a demo model (demo_model/) and of the built-in model
# (demo_builtin/), as ../run_ends_2026-12-06/run.sh makes them in its S; DEMO is that demo's output folder.
# Run from the repository root with the venv active; about 12 minutes on 2 cores once O and D are there.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/top_fused_2026-12-06; O=${O:-/tmp/rib_bearing}; D=${D:-/tmp/run_ends}
REF=${DEMO:-/tmp/demo}/reference/unseen_lowdose
S=${S:-/tmp/top_fused}
mkdir -p $S
sets=""; for seed in 7 13; do for s in hushift lowdose thickslice; do sets="$sets s${seed}_$s"; done; done
for v in 1.3 0 1.2 1.4; do
  for k in $sets; do
    vertebraformer ensemble -i $O/pred_$k -o $S/${k}_$v --no_preview --disable_progress_bar \
      --set top_fused_ratio=$v > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $S/${k}_$v -o $S/eval_${k}_$v.json --quiet > /dev/null
  done
  for m in demo_model demo_builtin; do
    vertebraformer ensemble -i $D/$m -o $S/${m}_$v --no_preview --disable_progress_bar --set top_fused_ratio=$v \
      > /dev/null 2>&1
    vertebraformer evaluate -ref $REF -pred $S/${m}_$v -o $S/eval_${m}_$v.json --quiet > /dev/null
  done
done
j() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
for v in 1.3 1.2 1.4; do
  echo "== top_fused_ratio $v against 0 =="
  python benchmarks/paired_evaluations.py $(j $v $sets) $(j 0 $sets) --name-a $v --name-b off
  for m in demo_model demo_builtin; do
    echo "-- $m"; python benchmarks/paired_evaluations.py $S/eval_${m}_$v.json $S/eval_${m}_0.json --name-a $v \
      --name-b off
  done
done | tee $R/paired.txt
grep -l "the field of view cut above it" $S/*_1.3/*.json | sed "s|$S/||" | tee $R/cases_cut.txt
for v in 1.3 0; do
  python benchmarks/real_ct.py --work $S/rc_$v --tag top-fused-$v --results $R --renumber $O/rc/predictions \
    --set top_fused_ratio=$v 2> /dev/null | grep Dice
  python benchmarks/real_ct_perturbed.py --work $S/rcp_$v --tag top-fused-$v --results $R --renumber $O/rcp \
    --set top_fused_ratio=$v 2> /dev/null | tail -1
done
# pictures of two phantoms the cut changes, before and after (the numbering's own previews)
for c in s13_hushift/hushift_002 s13_hushift/hushift_006; do
  k=${c%/*}; n=${c#*/}; mkdir -p $S/one_$n; cp $O/pred_$k/${n}_vfprobs.npz $S/one_$n/
  for v in 1.3 0; do
    vertebraformer ensemble -i $S/one_$n -o $S/one_${n}_$v --disable_progress_bar --set top_fused_ratio=$v \
      > /dev/null 2>&1
    cp $S/one_${n}_$v/${n}_preview.png $R/${k}_${n}_top_fused_$v.png
  done
done
rm -f $R/real_ct_*_top-fused-*_preview.png  # unchanged real CT: the pitch record's previews
