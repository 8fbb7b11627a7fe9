#!/bin/bash
# Issue 16 part 2: what each family of training-time domain randomisation buys on real CT, at a short budget,
# then at the built-in model's 91 epochs (steps 5 and 6).
# Five arms, each trained from random weights on the same preprocessed phantoms (the built-in model's recipe: seed 7,
# 12 cases per source, CPU preset plans, fold 0) for 900 s, one after another, alone on the 2 cores (each ~15 min);
# then each arm's fine model alone (--no-coarse) with one fixed post-processing (the built-in model's
# postprocessing.json) on the four real CT, their ten test-time variants and the 12 unseen-style phantoms (~4 min
# per arm). Step 5, added later: the arm without any randomisation for the built-in model's 91 epochs (2 hours
# here), against the built-in model; step 6, a session later: every group the same way. Run from anywhere; W is
# the work folder (about 3 GB).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); MAIN=$(cd "$HERE/../../.." && pwd)
W=${W:-/tmp/s30}; A=$W/abl; R=$W/results; mkdir -p $R
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-$MAIN/../shared/data/real}
# 1. the phantoms, the raw dataset, plans and preprocessed data (the demo's own steps; its tiny training is not used:
#    stop it once "train fold 0" starts, or let it finish)
[ -d $A/nnUNet_preprocessed ] || vertebraformer demo -o $A --start scratch --minutes 10 --cases-per-source 12 \
  --max-folds 1 --seed 7 -tr VertebraFormerTrainer_tiny
export nnUNet_raw=$A/nnUNet_raw nnUNet_preprocessed=$A/nnUNet_preprocessed nnUNet_results=$A/nnUNet_results
export VERTEBRAFORMER_TRAIN_BUDGET_S=900
declare -A TR=([all]=VertebraFormerTrainer_budget [none]=VertebraFormerTrainer_budget_noRandomisation
  [noIntensity]=VertebraFormerTrainer_budget_noIntensityRandomisation
  [noAcquisition]=VertebraFormerTrainer_budget_noAcquisitionRandomisation
  [noContent]=VertebraFormerTrainer_budget_noContentRandomisation)
ARMS="all none noIntensity noAcquisition noContent"
model() { echo $1/Dataset599_MultiSpine/$2__VertebraFormerCPUPlans__3d_fullres; }  # model RESULTS_FOLDER TRAINER
train_once() {  # train_once RESULTS_FOLDER TRAINER LOG [EPOCHS]: fold 0 into that folder (an epoch budget if given)
  [ -f $(model $1 $2)/fold_0/checkpoint_final.pth ] || nnUNet_results=$1 VERTEBRAFORMER_TRAIN_EPOCHS=${4:-} \
    vertebraformer train 599 0 -tr $2 > $3 2>&1
}
# 2. training, alone
for arm in $ARMS; do train_once $nnUNet_results ${TR[$arm]} $W/train_${TR[$arm]}.log; done
# 3. prediction and scoring: a model's fine stage alone, the built-in model's post-processing
B=$MAIN/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
[ -d $A/reference_unseen ] || python -c "from vertebraformer_nn.demo.reference import truth_reference; \
print(truth_reference('$A/SIM', 'extra_lowdose', '$A/reference_unseen'))"
measure() {  # measure ARM MODEL_FOLDER
  local arm=$1 M=$2 P=$A/pred_$1; mkdir -p $P
  [ "$M" = "$B" ] || cp $B/postprocessing.json $M/postprocessing.json
  python $MAIN/benchmarks/real_ct.py --work $P/rc --tag abl-$arm --results $R -m $M -f 0 --no-coarse > $P/rc.log 2>&1
  python $MAIN/benchmarks/real_ct_perturbed.py --work $P/rcp --tag abl-$arm --results $R -m $M -f 0 --no-coarse \
    > $P/rcp.log 2>&1
  vertebraformer predict -i $A/SIM/extra_lowdose -o $P/unseen -m $M -f 0 --no-coarse --no_preview \
    --disable_progress_bar > $P/unseen.log 2>&1
  vertebraformer evaluate -ref $A/reference_unseen -pred $P/unseen -o $P/unseen_eval.json --quiet >> $P/unseen.log 2>&1
}
for arm in $ARMS; do measure $arm $(model $nnUNet_results ${TR[$arm]}); done
# 4. the `all` arm a second time (same data and budget, its own results folder): the spread between two runs
RES2=$A/nnUNet_results_rep; train_once $RES2 ${TR[all]} $W/train_rep.log
measure all2 $(model $RES2 ${TR[all]})
# 5 (added after the first four had run). At the built-in model's schedule: the recipe without any randomisation for exactly
#    the built-in model's 91 epochs (an epoch budget, so what it learns does not depend on this machine's speed; 78 s
#    per epoch here, 2 h 2 min, alone), against the built-in model's fine stage, both measured as above
RES3=$A/nnUNet_results_full; train_once $RES3 ${TR[none]} $W/train_none91.log 91
M=$(model $RES3 ${TR[none]}); measure none91 $M
measure builtin $B
# and as a user runs it: with the built-in model's coarse whole-field stage beside it (the real CT only)
cp -r ${B%3d_fullres}3d_lowres ${M%3d_fullres}3d_lowres
python $MAIN/benchmarks/real_ct.py --work $A/pred_none91/rc_coarse --tag abl-none91-with-builtin-coarse --results $R \
  -m $M -f 0 > $A/pred_none91/rc_coarse.log 2>&1
# 6 (added a session later). Every group for the same 91 epochs on the same phantoms as step 5: the pair none91 / all91
#    differs only in the randomisation (the built-in model was trained on an earlier generator's phantoms)
RES4=$A/nnUNet_results_all91; train_once $RES4 ${TR[all]} $W/train_all91.log 91
measure all91 $(model $RES4 ${TR[all]})
# 7. the tables, the pictures, the paired contrasts on the phantoms
python $HERE/summarise.py $R
python $HERE/montage.py $R/ablation_real_ct.png all all2 none noIntensity noAcquisition noContent
python $HERE/montage.py $R/ablation_91_epochs.png none91 builtin
python $HERE/montage.py $R/ablation_all91.png all91
for b in all2 none noIntensity noAcquisition noContent; do
  python $MAIN/benchmarks/paired_evaluations.py $A/pred_$b/unseen_eval.json $A/pred_all/unseen_eval.json --name-a $b --name-b all
done > $R/paired.txt
python $MAIN/benchmarks/paired_evaluations.py $A/pred_none91/unseen_eval.json $A/pred_builtin/unseen_eval.json \
  --name-a none91 --name-b builtin > $R/paired_91_epochs.txt
for b in none91 builtin; do
  python $MAIN/benchmarks/paired_evaluations.py $A/pred_$b/unseen_eval.json $A/pred_all91/unseen_eval.json --name-a $b --name-b all91
done > $R/paired_all91.txt
