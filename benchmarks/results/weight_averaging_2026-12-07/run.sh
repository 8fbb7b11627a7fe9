#!/bin/bash
# Weight averaging of the fine-tune (trainers/weight_averaging.py), paired within one training run: the quick
# protocol's VertebraFormer models (fine and coarse, folds 0 and 5) trained once with averaging from half the epochs
# on, each fold's clean test cases predicted with the mean of the weights (checkpoint_final.pth) and with the last
# weights of the same run (checkpoint_final_unaveraged.pth), fine and coarse stage alike, then paired case by case.
# Run at commit 13e0fb4 (the averaging was removed after this measurement), from the repository root with the venv
# active; W: the protocol's work folder, made by
#   VERTEBRAFORMER_WEIGHT_AVERAGE_FROM=0.5 python benchmarks/multispine_protocol.py --quick --methods vf --work $W
# (17 minutes on the 2 cores of 2026-12-07), then this (3 minutes).
set -uo pipefail
export nnUNet_compile=f
R=$PWD/benchmarks/results/weight_averaging_2026-12-07; W=${W:-/tmp/s36/proto}; O=${O:-/tmp/weight_averaging}
M=$(ls -d $W/nnUNet_results/*/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres | head -1)
for fold in ${FOLDS:-0 5}; do
  mkdir -p $O/in$fold
  for f in $W/inputs/fold$fold/*_0000.nii.gz; do case $f in *__*) ;; *) ln -sf $f $O/in$fold/;; esac; done
  for arm in mean last; do
    chk=checkpoint_final.pth; [ $arm = last ] && chk=checkpoint_final_unaveraged.pth
    out=$O/${arm}_fold$fold
    [ -f $out/summary.csv ] || vertebraformer predict -i $O/in$fold -o $out -m $M -f $fold -chk $chk \
      --save_probabilities --no_preview --disable_progress_bar > $O/${arm}_fold$fold.log 2>&1
    vertebraformer evaluate -ref $W/reference_variants/fold$fold -pred $out -o $O/${arm}_fold$fold.json --quiet \
      > /dev/null 2>&1
  done
  echo "fold $fold ($(ls $O/in$fold | wc -l) clean test cases)"
  python benchmarks/paired_evaluations.py $O/mean_fold$fold.json $O/last_fold$fold.json --means \
    --name-a "weights averaged" --name-b "last weights"
done | tee $R/results.txt
