#!/bin/bash
# Pieces side by side at one height share a level (shared_level_max_height 0.25) against off (0), on saved
# probabilities: no network runs but the first predictions. Run from the repository root with the venv active.
# W: the quick protocol's work folder, whose predictions kept their probabilities (2026-12-07_quick: its README's
# command); O: 60 unseen-style phantoms and the real CT with its ten variants, predicted here by the built-in model
# once (about 8 minutes on 2 cores); the renumbering and evaluation then take about 8 minutes.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/side_by_side_levels_2026-12-07; W=${W:-/tmp/s34/protocol}; O=${O:-/tmp/side_by_side}
S=${S:-$O/renumbered}; mkdir -p $O $S
off="--set shared_level_max_height=0"
# the quick protocol: every VertebraFormer arm, its clean test cases (the perturbed variants left out)
for m in vf vf_nocoarse vf_nomod; do for f in 0 5; do
  [ -d $W/predictions/${m}_fold$f ] || continue
  src=$S/probs_${m}_fold$f; mkdir -p $src; cp $W/predictions/${m}_fold$f/prediction_args.json $src/
  for n in $W/predictions/${m}_fold$f/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $n $src/;; esac; done
  for arm in on off; do
    A=""; [ $arm = off ] && A=$off
    vertebraformer ensemble -i $src -o $S/${m}_fold${f}_$arm --no_preview --disable_progress_bar $A > /dev/null 2>&1
    vertebraformer evaluate -ref $W/reference_variants/fold$f -pred $S/${m}_fold${f}_$arm --quiet \
      -o $S/eval_${m}_fold${f}_$arm.json > /dev/null 2>&1  # exit 1: the perturbed variants are not predicted
  done
done; done
for m in vf vf_nocoarse vf_nomod; do for f in 0 5; do
  [ -f $S/eval_${m}_fold${f}_on.json ] || continue
  python benchmarks/paired_evaluations.py $S/eval_${m}_fold${f}_on.json $S/eval_${m}_fold${f}_off.json --means \
    --name-a "${m} fold $f on" --name-b "${m} fold $f off" | head -4
done; done | tee $R/protocol.txt
# 60 unseen-style phantoms (seeds 7 and 13) and the real CT, the built-in model
for seed in 7 13; do
  [ -d $O/p$seed ] || vertebraformer phantoms $O/p$seed --seed $seed --sources verse --cases-per-source 1 \
    --extra-style lowdose --extra-style thickslice --extra-style hushift --extra-cases $((seed == 7 ? 12 : 8)) --quiet
done
sets=""
for seed in 7 13; do for s in hushift lowdose thickslice; do
  k=s${seed}_$s; sets="$sets $k"
  [ -d $O/ref_$k ] || python -c "from pathlib import Path; from vertebraformer_nn.demo.reference import \
truth_reference; truth_reference(Path('$O/p$seed'), 'extra_$s', Path('$O/ref_$k'))"
  [ -d $O/pred_$k ] || vertebraformer predict -i $O/p$seed/extra_$s -o $O/pred_$k --save_probabilities > /dev/null 2>&1
  for arm in on off; do
    A=""; [ $arm = off ] && A=$off
    vertebraformer ensemble -i $O/pred_$k -o $S/${k}_$arm --no_preview --disable_progress_bar $A > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $S/${k}_$arm -o $S/eval_${k}_$arm.json --quiet > /dev/null
  done
done; done
j() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(j on $sets) $(j off $sets) --name-a side-by-side --name-b off \
  | tee $R/phantoms.txt
grep -ho "instances [0-9]* mm apart ([0-9]* mm in height) both numbered [A-Z0-9]*" $S/*_on/*.json | sort | uniq -c \
  | tee $R/shared_by_height.txt
[ -d $O/rc ] || python benchmarks/real_ct.py --work $O/rc --tag first --results $O --save_probabilities > /dev/null
[ -d $O/rcp ] || python benchmarks/real_ct_perturbed.py --work $O/rcp --tag first --results $O --save_probabilities \
  > /dev/null
for arm in on off; do
  A=""; [ $arm = off ] && A=$off
  python benchmarks/real_ct.py --work $S/rc_$arm --tag side-by-side-$arm --results $R --renumber $O/rc/predictions $A \
    2>/dev/null | grep Dice
  python benchmarks/real_ct_perturbed.py --work $S/rcp_$arm --tag side-by-side-$arm --results $R --renumber $O/rcp $A \
    2>/dev/null | tail -1
done
# the case that showed it: C1's ring in two halves (the quick protocol's spineweb_case01, fold 0), both pictures
for arm in on off; do
  A=""; [ $arm = off ] && A=$off
  mkdir -p $S/case01_$arm; cp $S/probs_vf_fold0/prediction_args.json $S/case01_$arm/
  ln -sf $(readlink -f $S/probs_vf_fold0/spineweb_case01_vfprobs.npz) $S/case01_$arm/
  vertebraformer ensemble -i $S/case01_$arm -o $S/case01_${arm}_out --disable_progress_bar $A > /dev/null 2>&1
  cp $S/case01_${arm}_out/spineweb_case01_preview.png $R/spineweb_case01_$arm.png
done
