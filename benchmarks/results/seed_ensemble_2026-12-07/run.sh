#!/bin/bash
# Two draws of the quick protocol's VertebraFormer (fine model 6 epochs and coarse stage 3 epochs, both from the
# built-in model), same data, code, start and machine, and their ensemble: how far apart two trainings land, and what
# averaging their probabilities buys. Draw 1 is the last weights of the weight_averaging_2026-12-07 run (its predictions,
# with probabilities, in $A); draw 2 is trained here the protocol's way (its `_train` child: no final validation).
# Run from the repository root with the venv active; W: that run's protocol work folder. About 25 minutes on 2 cores.
set -uo pipefail
export nnUNet_compile=f
R=$PWD/benchmarks/results/seed_ensemble_2026-12-07; W=${W:-/tmp/s36/proto}; A=${A:-/tmp/weight_averaging}
O=${O:-/tmp/seed_ensemble}; D=Dataset590_MultiSpine; T=VertebraFormerTrainer_budget; P=VertebraFormerCPUPlans
mkdir -p $O/nnUNet_results
export nnUNet_raw=$W/nnUNet_raw nnUNet_preprocessed=$W/nnUNet_preprocessed nnUNet_results=$O/nnUNet_results
for fold in ${FOLDS:-0 5}; do
  for c in 3d_fullres 3d_lowres; do
    epochs=6; [ $c = 3d_lowres ] && epochs=3
    [ -f $O/nnUNet_results/$D/${T}__${P}__$c/fold_$fold/checkpoint_final.pth ] || \
      VERTEBRAFORMER_TRAIN_EPOCHS=$epochs python benchmarks/multispine_protocol.py _train 590 $fold $T $P cpu $c builtin \
      > $O/train_${c}_fold$fold.log 2>&1
  done
  out=$O/draw2_fold$fold
  [ -f $out/summary.csv ] || vertebraformer predict -i $A/in$fold -o $out -m $O/nnUNet_results/$D/${T}__${P}__3d_fullres \
    -f $fold --save_probabilities --no_preview --disable_progress_bar > $O/draw2_fold$fold.log 2>&1
  vertebraformer ensemble -i $A/last_fold$fold $out -o $O/ensemble_fold$fold > $O/ensemble_fold$fold.log 2>&1
  for arm in draw2 ensemble; do
    vertebraformer evaluate -ref $W/reference_variants/fold$fold -pred $O/${arm}_fold$fold -o $O/${arm}_fold$fold.json \
      --quiet > /dev/null 2>&1
  done
  echo "fold $fold"
  python benchmarks/paired_evaluations.py $A/last_fold$fold.json $O/draw2_fold$fold.json --means --name-a "draw 1" \
    --name-b "draw 2"
  for d in 1 2; do
    b=$A/last_fold$fold.json; [ $d = 2 ] && b=$O/draw2_fold$fold.json
    python benchmarks/paired_evaluations.py $O/ensemble_fold$fold.json $b --name-a "ensemble" --name-b "draw $d" \
      | grep -E "^(id_rate|dice|binary_dice|lesion)"
  done
done | tee $R/results.txt
