#!/bin/bash
# The quick protocol's fine models (fold 0 in-domain, fold 5 VerSe held out) trained 16 epochs instead of 6 (the same
# data, plans, start from the built-in model, trainer and coarse models), their clean test cases predicted and paired
# with the 6-epoch models' (renumbered with the same numbering: ../side_by_side_levels_2026-12-07/run.sh). Run from
# the repository root with the venv active; W: the quick protocol's work folder (2026-12-07_quick), S: that record's
# renumbered output. About 25 minutes per fold on 2 cores (78 s per epoch on the 2026-12-07 machine).
set -uo pipefail
export nnUNet_compile=f
R=$PWD/benchmarks/results/quick_16_epochs_2026-12-07; W=${W:-/tmp/s34/protocol}; S=${S:-/tmp/side_by_side/renumbered}
O=${O:-/tmp/quick_16_epochs}; D=Dataset590_MultiSpine; M=VertebraFormerTrainer_budget__VertebraFormerCPUPlans
mkdir -p $O/nnUNet_results/$D
ln -sfn $W/nnUNet_results/$D/${M}__3d_lowres $O/nnUNet_results/$D/  # the same coarse stage
for fold in ${FOLDS:-0 5}; do
  mkdir -p $O/in$fold
  for f in $W/inputs/fold$fold/*_0000.nii.gz; do case $f in *__*) ;; *) ln -sf $f $O/in$fold/;; esac; done
  log=$O/train$( [ $fold = 0 ] || echo _fold$fold ).log
  [ -f $O/nnUNet_results/$D/${M}__3d_fullres/fold_$fold/checkpoint_final.pth ] || \
    nnUNet_raw=$W/nnUNet_raw nnUNet_preprocessed=$W/nnUNet_preprocessed nnUNet_results=$O/nnUNet_results \
    VERTEBRAFORMER_TRAIN_EPOCHS=16 vertebraformer train 590 $fold -tr VertebraFormerTrainer_budget \
    -p VertebraFormerCPUPlans -pretrained_weights builtin -device cpu > $log 2>&1
  out=$O/pred16$( [ $fold = 0 ] || echo _fold$fold ); ev=$O/eval16$( [ $fold = 0 ] || echo _fold$fold ).json
  vertebraformer predict -i $O/in$fold -o $out -m $O/nnUNet_results/$D/${M}__3d_fullres -f $fold \
    --save_probabilities --no_preview --disable_progress_bar > /dev/null 2>&1
  vertebraformer evaluate -ref $W/reference_variants/fold$fold -pred $out -o $ev --quiet > /dev/null 2>&1
  echo "fold $fold"
  python benchmarks/paired_evaluations.py $ev $S/eval_vf_fold${fold}_on.json --means --name-a "16 epochs" \
    --name-b "6 epochs"
  grep -E "Epoch time" $log \
    | awk '{s += $(NF-1); n++} END {printf "training: %d epochs, %.0f s per epoch\n", n, s / n}'
done | tee $R/results.txt
