#!/bin/bash
# The coarse whole-field stage with a patch that holds the median scan (as planned until 2026-12-07: 40x32x32 at
# 7 mm, 28 cm head-foot) against one that holds the long scans too (this commit's planner: 96x32x32, the 90th
# percentile of the scans' head-foot extent, 67 cm), each under the same fine models, on the same test cases.
# Baseline: the quick protocol's run ../2026-12-07_quick_1219, its work folder W kept (models, inputs, predictions
# with their probabilities). Run from the repository root with the venv active; ~12 minutes on 2 cores.
set -uo pipefail
export nnUNet_compile=f
R=$PWD/benchmarks/results/coarse_field_2026-12-07; W=${W:-/tmp/s36/full}; O=${O:-/tmp/coarse_field}
D=Dataset590_MultiSpine; P=VertebraFormerCPUPlans; FINE=VertebraFormerTrainer_budget__${P}__3d_fullres
mkdir -p $O/pre/$D $O/res/$D $O/clean0 $O/ref0
# 1. the run's dataset planned by this planner (its fingerprint and splits reused); the 7 mm data preprocessed again
cp $W/nnUNet_preprocessed/$D/{dataset_fingerprint.json,splits_final.json} $O/pre/$D/
ln -sfn $W/nnUNet_results/$D/$FINE $O/res/$D/$FINE  # the run's fine models, unchanged
export nnUNet_raw=$W/nnUNet_raw nnUNet_preprocessed=$O/pre nnUNet_results=$O/res
[ -f $O/plan.done ] || { vertebraformer plan-and-preprocess -d 590 --preset cpu -c 3d_lowres > $O/plan.log 2>&1 && touch $O/plan.done; }
grep "3d_lowres spacing" $O/plan.log
# 2. the coarse model of each fold as the protocol trains it: 3 epochs from the built-in coarse model
for fold in 0 5; do
  [ -f $O/res/$D/VertebraFormerTrainer_budget__${P}__3d_lowres/fold_$fold/training_summary.json ] || \
    VERTEBRAFORMER_TRAIN_EPOCHS=3 python benchmarks/multispine_protocol.py _train 590 $fold VertebraFormerTrainer_budget \
      $P cpu 3d_lowres builtin > $O/train_fold$fold.log 2>&1
done
# 3. the run's clean test inputs (fold 0 also has perturbed variants, not compared here) and their references
for f in $W/inputs/fold0/*; do case $(basename $f) in *__*) ;; *) ln -sfn $(readlink -f $f) $O/clean0/;; esac; done
for f in $W/reference_variants/fold0/*; do case $(basename $f) in *__*) ;; *) ln -sfn $(readlink -f $f) $O/ref0/;; esac; done
declare -A IN=([rand0]=$O/clean0 [rand5]=$W/inputs/fold5 [style0]=$W/in_style/inputs/fold0 [style5]=$W/in_style/inputs/fold5)
declare -A REF=([rand0]=$O/ref0 [rand5]=$W/reference_variants/fold5 [style0]=$W/in_style/reference_folds/fold0
                [style5]=$W/in_style/reference_folds/fold5)
declare -A OLD=([rand0]=$W/predictions/vf_fold0 [rand5]=$W/predictions/vf_fold5 [style0]=$W/in_style/predictions/vf_fold0
                [style5]=$W/in_style/predictions/vf_fold5)
declare -A NONE=([rand0]=$W/predictions/vf_nocoarse_fold0 [rand5]=$W/predictions/vf_nocoarse_fold5
                 [style0]=$W/in_style/predictions/vf_nocoarse_fold0 [style5]=$W/in_style/predictions/vf_nocoarse_fold5)
for set in style0 style5 rand0 rand5; do
  fold=${set: -1}
  [ -f $O/$set/summary.csv ] || vertebraformer predict -i ${IN[$set]} -o $O/$set -m $O/res/$D/$FINE -f $fold \
    -device cpu --save_probabilities --no_preview --disable_progress_bar > $O/$set.log 2>&1
  for arm in whole median none; do
    pred=$O/$set; [ $arm = median ] && pred=${OLD[$set]}; [ $arm = none ] && pred=${NONE[$set]}
    vertebraformer evaluate -ref ${REF[$set]} -pred $pred -o $O/${set}_$arm.json --quiet > /dev/null 2>&1
  done
done
{
for set in style0 style5 rand0 rand5; do
  echo "== $set (style: the test subjects in their sources' styles; rand: the run's randomised test cases; 0/5: fold)"
  python benchmarks/paired_evaluations.py $O/${set}_whole.json $O/${set}_median.json --means \
    --name-a "whole-field patch" --name-b "median patch" | grep -vE "^lesion AP@0.1"
  python benchmarks/paired_evaluations.py $O/${set}_whole.json $O/${set}_none.json --means \
    --name-a "whole-field patch" --name-b "no coarse stage" | grep -E "^no coarse|^id_rate"
done
} | tee $R/results.txt
