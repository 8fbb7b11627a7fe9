# The built-in model fine-tuned on the recipe's phantoms (seed 7, 12 per source, fold 0, 0.1 x the peak rate, 52 epochs
# of 50 iterations: the low-rate candidate's schedule, fixed in epochs) once on the CPU preset's 3.5 mm grid and once
# on a 2.5 mm grid, then both beside the built-in model on 12 lowdose phantoms of seed 0, 12 thickslice phantoms of
# seed 7 (as tta_mirroring_2026-12-04/run.sh makes them, in ${TTA:-/tmp/tta}) and the real CT (originals with
# pictures, ten test-time variants). The 2.5 mm grid is set by finer_demo.py (the planner's CPU_SPACING_MM before
# planning; not a product option). The built-in coarse stage (7 mm) is put beside both (predict finds the sibling).
# Run from the repository root with the venv active; the two trainings took 48 and 54 minutes on 2 cores.
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
export VERTEBRAFORMER_TRAIN_EPOCHS=52
W=${W:-/tmp/s13}
P=${TTA:-/tmp/tta}
R=benchmarks/results/finer_grid_2026-12-04
F=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
L=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres
for S in 2.5 3.5; do
  [ -f $W/arm_$S/nnUNet_results/Dataset599_MultiSpine/$F/fold_0/checkpoint_final.pth ] ||
    (cd $W && python $OLDPWD/$R/finer_demo.py $S $W/arm_$S > $W/arm_$S.log 2>&1)
done
for S in 2.5 3.5; do
  tag=grid${S/./}
  D=$W/arm_$S/nnUNet_results/Dataset599_MultiSpine
  [ -d $D/$L ] || cp -r vertebraformer_nn/builtin_model/$L $D/
  echo "grid $S mm: $(grep -c 'Epoch time' $D/$F/fold_0/training_log_*.txt) epochs"
  for s in ld0:lowdose ts7:thickslice; do d=${s%%:*}; style=${s##*:}
    vertebraformer predict -i $P/$d/extra_$style -o $W/pred_${d}_$S -m $D/$F -f 0 > /dev/null 2>&1
    vertebraformer evaluate -ref $P/${d}_ref -pred $W/pred_${d}_$S -o $R/eval_${style}_$tag.json --bootstrap 2000 | grep overall | head -2
  done
  python benchmarks/real_ct.py --work $W/rc_$S --tag $tag --results $R -m $D/$F -f 0 | tail -5
  python benchmarks/real_ct_perturbed.py --work $W/rcp_$S --tag $tag --results $R -m $D/$F -f 0 | tail -1
done
B=benchmarks/results/side_by_side_2026-12-04  # the built-in model with the numbering of main
python benchmarks/paired_evaluations.py $R/eval_lowdose_grid25.json,$R/eval_thickslice_grid25.json \
  $R/eval_lowdose_grid35.json,$R/eval_thickslice_grid35.json --name-a grid-2.5mm --name-b grid-3.5mm > $R/paired.txt
python benchmarks/paired_evaluations.py $R/eval_lowdose_grid25.json,$R/eval_thickslice_grid25.json \
  $B/eval_lowdose_on.json,$B/eval_thickslice_on.json --name-a grid-2.5mm --name-b builtin >> $R/paired.txt
python benchmarks/paired_evaluations.py $R/eval_lowdose_grid35.json,$R/eval_thickslice_grid35.json \
  $B/eval_lowdose_on.json,$B/eval_thickslice_on.json --name-a grid-3.5mm --name-b builtin >> $R/paired.txt
cat $R/paired.txt
