#!/bin/bash
# The coarse whole-field stage's weight in the decoder (coarse_level_weight: 0 = off, 0.5, 1 = the default), on the
# saved probabilities of four quick-protocol draws (their fine and coarse models' predictions, kept by the protocol):
# no network runs. Run from the repository root with the venv active (about 15 minutes on 2 cores).
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/coarse_weight_2026-12-07; O=${O:-/tmp/coarse_weight}
W=${W:-/tmp/s39/proto /tmp/s38/proto /tmp/s37/proto /tmp/s36/full}
mkdir -p $O $R
arms() {  # NAME PREDICTIONS REFERENCE
  local s=$O/$1; mkdir -p $s; cp $2/prediction_args.json $s/
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $s/;; esac; done
  local x
  for x in 0 0.5 1; do
    vertebraformer ensemble -i $s -o ${s}_$x --no_preview --disable_progress_bar --set coarse_level_weight=$x \
      > /dev/null 2>&1
    vertebraformer evaluate -ref $3 -pred ${s}_$x -o ${s}_$x.json --quiet > /dev/null 2>&1  # exit 1: variants
  done
  echo "== $1"
  for x in 0 0.5; do
    python benchmarks/paired_evaluations.py ${s}_$x.json ${s}_1.json --means --name-a "$1 $x" --name-b "$1 1" \
      | sed -n 1,3p
  done
}
k=0
for w in $W; do k=$((k + 1)); for f in 0 5; do
  arms run${k}_style$f $w/in_style/predictions/vf_fold$f $w/in_style/reference_folds/fold$f
  arms run${k}_randomised$f $w/predictions/vf_fold$f $w/reference_variants/fold$f
done; done > $R/results.txt
