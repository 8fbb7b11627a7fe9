#!/bin/bash
# Issue 16: is the built-in model's lead on real CT its phantoms? Today's recipe (VertebraFormerTrainer_budget, every
# randomisation group, CPU preset plans, fold 0, exactly 91 epochs) trained on phantoms of the generator the built-in
# model was trained on (revision 316db8a, 2026-12-02: no degenerated discs, coarser trabecular texture; same seed 7,
# 12 cases per source), converted, planned and preprocessed by today's code. Its pair is the randomisation ablation's
# all91 (the same recipe on today's phantoms, ../randomisation_ablation_2026-12-06/run.sh step 6). Measured as there:
# the fine model alone with the built-in model's postprocessing.json on the four real CT and their ten variants, and on
# the 12 unseen-style phantoms of both generators. Run from anywhere, alone on the 2 cores (~2 h 15 min); W is the
# work folder (about 3 GB), ABL the ablation's (for today's phantoms and all91's predictions).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); MAIN=$(cd "$HERE/../../.." && pwd)
W=${W:-/tmp/s33/gen}; A=$W/abl; R=$HERE; ABL=${ABL:-/tmp/s30/abl}; OLD=${OLD:-/tmp/s33/gen316}
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-$MAIN/../shared/data/real}
export nnUNet_raw=$A/nnUNet_raw nnUNet_preprocessed=$A/nnUNet_preprocessed nnUNet_results=$A/nnUNet_results
mkdir -p $A
# 1. the phantoms with the generator of 316db8a (a git worktree; its package imported ahead of the installed one)
[ -d $OLD ] || git -C $MAIN worktree add -f $OLD 316db8a
[ -f $A/SIM/ground_truth/index.json ] || PYTHONPATH=$OLD python -m vertebraformer_nn phantoms $A/SIM --seed 7 \
  --cases-per-source 12 --extra-style lowdose --extra-cases 12 --quiet
# 2. today's conversion, plans and preprocessing (the demo's steps, as commands)
if [ ! -d $nnUNet_preprocessed/Dataset599_MultiSpine ]; then
  vertebraformer convert verse $A/SIM/verse -d 599 --quiet
  for s in ctspine1k spineweb dicom; do vertebraformer convert $s $A/SIM/$s -d 599 --append --quiet; done
  vertebraformer convert finalize -d 599
  vertebraformer plan-and-preprocess -d 599 --preset cpu
fi
# 3. training, alone: exactly the built-in model's 91 epochs
TR=VertebraFormerTrainer_budget; M=$nnUNet_results/Dataset599_MultiSpine/${TR}__VertebraFormerCPUPlans__3d_fullres
[ -f $M/fold_0/checkpoint_final.pth ] || VERTEBRAFORMER_TRAIN_EPOCHS=91 vertebraformer train 599 0 -tr $TR \
  > $W/train_gen1202.log 2>&1
# 4. prediction and scoring, as the ablation's `measure`
B=$MAIN/vertebraformer_nn/builtin_model/${TR}__VertebraFormerCPUPlans__3d_fullres
cp $B/postprocessing.json $M/postprocessing.json
P=$A/pred_gen1202; mkdir -p $P
python $MAIN/benchmarks/real_ct.py --work $P/rc --tag gen1202 --results $R -m $M -f 0 --no-coarse > $P/rc.log 2>&1
python $MAIN/benchmarks/real_ct_perturbed.py --work $P/rcp --tag gen1202 --results $R -m $M -f 0 --no-coarse \
  > $P/rcp.log 2>&1
[ -d $A/reference_unseen ] || python -c "from vertebraformer_nn.demo.reference import truth_reference; \
print(truth_reference('$A/SIM', 'extra_lowdose', '$A/reference_unseen'))"
unseen() {  # unseen NAME MODEL SIM REFERENCE: a model's fine stage on a set of unseen-style phantoms, scored
  local O=$A/unseen_$1; mkdir -p $O
  [ -f $O/eval.json ] || { vertebraformer predict -i $3/extra_lowdose -o $O/pred -m $2 -f 0 --no-coarse --no_preview \
    --disable_progress_bar > $O/log 2>&1 && vertebraformer evaluate -ref $4 -pred $O/pred -o $O/eval.json --quiet >> $O/log 2>&1; }
}
unseen gen1202_on_old $M $A/SIM $A/reference_unseen
unseen gen1202_on_today $M $ABL/SIM $ABL/reference_unseen
unseen all91_on_old $ABL/nnUNet_results_all91/Dataset599_MultiSpine/${TR}__VertebraFormerCPUPlans__3d_fullres \
  $A/SIM $A/reference_unseen
unseen builtin_on_old $B $A/SIM $A/reference_unseen
# 5. paired contrasts (the ablation's all91 and builtin predictions of today's phantoms are in $ABL/pred_*)
{ python $MAIN/benchmarks/paired_evaluations.py $A/unseen_gen1202_on_old/eval.json $A/unseen_all91_on_old/eval.json \
    --name-a gen1202 --name-b all91
  python $MAIN/benchmarks/paired_evaluations.py $A/unseen_gen1202_on_today/eval.json $ABL/pred_all91/unseen_eval.json \
    --name-a gen1202 --name-b all91
  python $MAIN/benchmarks/paired_evaluations.py $A/unseen_builtin_on_old/eval.json $A/unseen_gen1202_on_old/eval.json \
    --name-a builtin --name-b gen1202
} > $R/paired.txt
# 6. the pictures: gen1202 and all91's real-CT previews (a row each; the ablation's montage, its work folder linked),
#    and the same subjects drawn by both generators beside verse014
ln -sfn $ABL/pred_all91 $A/pred_all91
W=$W python $MAIN/benchmarks/results/randomisation_ablation_2026-12-06/montage.py $R/gen1202_all91.png gen1202 all91
python $HERE/generators_side_by_side.py $R/generators_side_by_side.png $A/SIM $ABL/SIM
