#!/bin/bash
# The quick protocol's two VertebraFormer draws of 2026-12-07 (../seed_ensemble_2026-12-07) and their ensemble on the
# same test subjects scanned in their sources' own styles (twins.py: seed 1, --randomise 0), paired with the same
# models on the protocol's test cases (every one randomised beyond the real range in 3-7 groups). Run from the
# repository root with the venv active after ../seed_ensemble_2026-12-07/run.sh; W: the protocol's work folder,
# A and E: the two records' output folders. About 8 minutes on 2 cores.
set -uo pipefail
export nnUNet_compile=f
R=$PWD/benchmarks/results/in_style_test_2026-12-07; W=${W:-/tmp/s36/proto}; A=${A:-/tmp/weight_averaging}
E=${E:-/tmp/seed_ensemble}; O=${O:-/tmp/twins}; D=Dataset590_MultiSpine; M=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
python $R/twins.py $W $O > $O.log 2>&1 || { echo "twins.py failed: $O.log"; exit 1; }
for fold in ${FOLDS:-0 5}; do
  for arm in draw1 draw2; do
    model=$W/nnUNet_results/$D/$M; chk=checkpoint_final_unaveraged.pth
    [ $arm = draw2 ] && model=$E/nnUNet_results/$D/$M && chk=checkpoint_final.pth
    [ -f $O/${arm}_fold$fold/summary.csv ] || vertebraformer predict -i $O/in$fold -o $O/${arm}_fold$fold -m $model \
      -f $fold -chk $chk --save_probabilities --no_preview --disable_progress_bar > $O/${arm}_fold$fold.log 2>&1
  done
  vertebraformer ensemble -i $O/draw1_fold$fold $O/draw2_fold$fold -o $O/ensemble_fold$fold > /dev/null 2>&1
  echo "fold $fold: the same models on the test subjects in their sources' styles (a) and randomised (b)"
  for arm in draw1 draw2 ensemble; do
    vertebraformer evaluate -ref $O/reference_fold$fold -pred $O/${arm}_fold$fold -o $O/${arm}_fold$fold.json --quiet >/dev/null 2>&1
    b=$E/${arm}_fold$fold.json; [ $arm = draw1 ] && b=$A/last_fold$fold.json
    echo "-- $arm"
    python benchmarks/paired_evaluations.py $O/${arm}_fold$fold.json $b --means --name-a "in style" --name-b "randomised" \
      | grep -vE "^lesion AP@0.1"
  done
done | tee $R/results.txt
