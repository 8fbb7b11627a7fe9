#!/bin/bash
# coarse_transitional 1 (the coarse stage's T13 and L6 evidence that of the level beside each) against the numbering
# before it (coarse_transitional did not exist: the coarse stage's own), on saved probabilities; no network runs.
# Run from the repository root with the venv active (about 10 minutes on 2 cores).
# BASE: renumberings of the same probabilities by the code before (double_runs_2026-12-07/run.sh's O at 297e43e:
# <set> with the links and prediction_args.json, <set>_on its outputs, <set>_on.json its evaluation: four protocol
# draws and the built-in model's 72 phantoms); NINTH: the ninth protocol draw's work folder (record
# 2026-12-08_quick_0018), whose own predictions and evaluations are its baseline; P: the built-in model's real-CT
# predictions with kept probabilities.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/coarse_transitional_2026-12-08; O=${O:-/tmp/coarse_transitional}
BASE=${BASE:-/tmp/double_runs}; NINTH=${NINTH:-/tmp/s40/proto}; P=${P:-/tmp/thick_discs}
mkdir -p $O
one() {  # NAME LINKS_FOLDER REFERENCE BASELINE_EVALUATION
  vertebraformer ensemble -i $2 -o $O/$1 --no_preview --disable_progress_bar > /dev/null 2>&1
  vertebraformer evaluate -ref $3 -pred $O/$1 -o $O/$1.json --quiet > /dev/null 2>&1  # exit 1: variants
  echo "== $1"
  python benchmarks/paired_evaluations.py $O/$1.json $4 --means --name-a "$1 new" --name-b "$1 before" | sed -n 1,3p
}
links() {  # FOLDER PREDICTIONS: the clean cases' kept probabilities linked, with their prediction_args.json
  local n; mkdir -p $1; cp $2/prediction_args.json $1/
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $1/;; esac; done
}
for j in $(ls $BASE/*_on.json | grep -v real_ct | sort); do
  s=${j%_on.json}
  one $(basename $s) $s $(python -c "import json,sys; print(json.load(open(sys.argv[1]))['settings']['reference'])" $j) $j
done > $R/results.txt
for f in 0 5; do
  links $O/ninth_style${f}_in $NINTH/in_style/predictions/vf_fold$f
  one ninth_style$f $O/ninth_style${f}_in $NINTH/in_style/reference_folds/fold$f $NINTH/evaluations/vf_fold${f}_in_style.json
  links $O/ninth_randomised${f}_in $NINTH/predictions/vf_fold$f
  one ninth_randomised$f $O/ninth_randomised${f}_in $NINTH/reference_variants/fold$f $NINTH/evaluations/vf_fold$f.json
done >> $R/results.txt
echo "== real CT" >> $R/results.txt
python benchmarks/real_ct.py --work $O/rc --tag transitional --results $O --renumber $P/rc/predictions 2>/dev/null \
  | grep Dice >> $R/results.txt
