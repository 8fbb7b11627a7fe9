#!/bin/bash
# The built-in model's recipe trained again from random weights on twice its phantoms (seed 7, 24 per source: 19
# lesion-annotated DICOM-cohort cases in fold 0's training instead of 9), then packaged as a candidate and measured
# beside the built-in model: real CT first, then the quick protocol's 35 test cases (seed 1), then the 36 unseen-style
# phantoms of the 17th sitting. Run from the repository root with the venv active, alone on the 2 cores (the fine
# stage's budget is wall-clock time). W holds the work; the built-in model's own predictions of the two phantom sets
# were made by lesion_finetune_2026-12-05/evalproto.sh and evalarm.sh (in /tmp/s18) with the same prediction code.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/s19}; S=${S18:-/tmp/s18}; H=/tmp/held_out; T=/tmp/tta; Q=/tmp/vf_protocol_q7
R=benchmarks/results/retrain24_2026-12-05
F=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
L=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres
# 1. the fine stage, the model card's way with 24 cases per source (90 minutes: the steps before training take longer)
[ -f $W/demo/nnUNet_results/Dataset599_MultiSpine/$F/fold_0/checkpoint_final.pth ] ||
  vertebraformer demo -o $W/demo --minutes 90 --cases-per-source 24 --max-folds 1 --seed 7 --start scratch > $W/demo.log 2>&1
export nnUNet_raw=$W/demo/nnUNet_raw nnUNet_preprocessed=$W/demo/nnUNet_preprocessed nnUNet_results=$W/demo/nnUNet_results
D=$nnUNet_results/Dataset599_MultiSpine
# 2. the coarse stage (480 s) and the post-processing search on fold 0's validation cases; 3. the package
[ -f $D/$L/fold_0/checkpoint_final.pth ] ||
  VERTEBRAFORMER_TRAIN_BUDGET_S=480 vertebraformer train 599 0 -c 3d_lowres -tr VertebraFormerTrainer_budget -device cpu > $W/coarse.log 2>&1
[ -f $D/$F/postprocessing.json ] || vertebraformer determine-postprocessing -m $D/$F -f 0 > $W/pp.log 2>&1
[ -d $W/cand/$F ] || python tools/package_builtin_model.py --model $D/$F -f 0 --into $W/cand > $W/package.log 2>&1
echo "fine: $(grep -c 'Epoch time' $D/$F/fold_0/training_log_*.txt) epochs; coarse: $(grep -c 'Epoch time' $D/$L/fold_0/training_log_*.txt) epochs"
M="-m $W/cand/$F -f 0"
# 4. real CT, originals with pictures
python benchmarks/real_ct.py --work $W/rc --tag retrain24 --results $R $M 2>&1 | tail -8
# 5. the quick protocol's 35 test cases and 6. the 36 unseen-style phantoms, paired against the built-in model
vertebraformer predict -i $S/proto_in -o $W/pred_proto $M --save_probabilities --no_preview --disable_progress_bar > $W/pred_proto.log 2>&1
vertebraformer evaluate -ref $Q/reference -pred $W/pred_proto -o $W/eval_proto.json --quiet --skip-missing > /dev/null 2>&1
for spec in hs2:$H/s2/extra_hushift:$H/hs2_ref ld4:$H/s4/extra_lowdose:$H/ld4_ref ld0:$T/ld0/extra_lowdose:$T/ld0_ref; do
  s=${spec%%:*}; rest=${spec#*:}; in=${rest%%:*}; ref=${rest#*:}
  vertebraformer predict -i $in -o $W/pred_$s $M --save_probabilities --no_preview --disable_progress_bar > $W/pred_$s.log 2>&1
  vertebraformer evaluate -ref $ref -pred $W/pred_$s -o $W/eval_$s.json --quiet > /dev/null 2>&1
done
python benchmarks/paired_evaluations.py $W/eval_proto.json $S/eval_builtin_proto.json --name-a "protocol cases, retrain24" --name-b builtin > $R/paired.txt
python benchmarks/paired_evaluations.py $W/eval_hs2.json,$W/eval_ld4.json,$W/eval_ld0.json \
  $S/eval_builtin_hs2.json,$S/eval_builtin_ld4.json,$S/eval_builtin_ld0.json --name-a "36 unseen, retrain24" --name-b builtin >> $R/paired.txt
cat $R/paired.txt
# 7. which lesions its candidates find (kind, contrast), as lesion_finetune_2026-12-05/compare.sh counts them
S18=$S bash benchmarks/results/lesion_extent_2026-12-05/found_lesions.sh retrain24 $W/pred > $R/lesions.txt
# 8. the real CT under the ten test-time variants (the training lesions' contrast: python $R/lytic_train.py $nnUNet_raw/Dataset599_MultiSpine $W/demo/SIM/ground_truth/index.json)
python benchmarks/real_ct_perturbed.py --work $W/rcp --tag retrain24 --results $R $M 2>&1 | tail -3
