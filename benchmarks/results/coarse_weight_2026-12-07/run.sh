#!/bin/bash
# The coarse whole-field stage's weight in the decoder (coarse_level_weight: 0 = off, 0.5, 1 = the default), on the
# saved probabilities of four quick-protocol draws (their fine and coarse models' predictions, kept by the protocol):
# no network runs. Run from the repository root with the venv active (about 15 minutes on 2 cores).
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/coarse_weight_2026-12-07; O=${O:-/tmp/coarse_weight}
W=${W:-/tmp/s39/proto /tmp/s38/proto /tmp/s37/proto /tmp/s36/full}
mkdir -p $O $R
source $R/arms.sh
k=0
for w in $W; do k=$((k + 1)); for f in 0 5; do
  arms run${k}_style$f $w/in_style/predictions/vf_fold$f $w/in_style/reference_folds/fold$f
  arms run${k}_randomised$f $w/predictions/vf_fold$f $w/reference_variants/fold$f
done; done > $R/results.txt
