#!/bin/bash
# Arm D: arm A of lesion_finetune_2026-12-05 (the built-in model fine-tuned 1200 s on the seed-13 phantoms, the model
# card's way) with the full-resolution lesion path of lesion_stem.py; then predicted and scored as that record's arms
# were (the quick protocol's 35 test cases, the 36 unseen-style phantoms, which lesions are found, real CT).
# Run from the repository root with the venv active, alone on the 2 cores; S18 holds that record's data and arms.
# Arm D2: W=/tmp/s19/d2 R=/tmp/s19/d2 LESION_LOCAL_GAIN=10 bash $0, then copy its txt, md and json into d2/ (the path's output times 10, see lesion_stem.py).
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/s19}; S=${S18:-/tmp/s18}; H=/tmp/held_out; T=/tmp/tta; Q=/tmp/vf_protocol_q7
P=benchmarks/results/lesion_stem_2026-12-05; R=${R:-$P}; X="python $P/lesion_stem.py"  # R: where the results go
M=Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
B=vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
export nnUNet_raw=$S/raw nnUNet_preprocessed=$S/pre nnUNet_results=$W/resD
[ -f $W/resD/${M}__3d_fullres/fold_0/checkpoint_final.pth ] ||
  VERTEBRAFORMER_TRAIN_BUDGET_S=1200 $X train 599 0 -tr VertebraFormerTrainer_budget -device cpu -pretrained_weights builtin > $W/train_D.log 2>&1
echo "D: $(grep -c 'Epoch time' $W/resD/${M}__3d_fullres/fold_0/training_log_*.txt) epochs"
# the built-in coarse stage beside it, with the (zero) lesion path's weights added so that the patched network loads it
rm -rf $W/resD/${M}__3d_lowres; cp -r ${B}__3d_lowres $W/resD/${M}__3d_lowres
python - $W/resD/${M}__3d_lowres/fold_0/checkpoint_final.pth <<'PY'
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
fine = torch.load(sys.argv[1].replace("3d_lowres", "3d_fullres"), map_location="cpu", weights_only=False)["network_weights"]
ck["network_weights"].update({k: torch.zeros_like(v) if k.startswith("lesion_local.6") else v
                              for k, v in fine.items() if k.startswith("lesion_local.")})
torch.save(ck, sys.argv[1])
PY
cp ${B}__3d_fullres/postprocessing.json $W/resD/${M}__3d_fullres/
MO="-m $W/resD/${M}__3d_fullres -f 0"
$X predict -i $S/proto_in -o $W/pred_D_proto $MO --save_probabilities --no_preview --disable_progress_bar > $W/pred_D_proto.log 2>&1
vertebraformer evaluate -ref $Q/reference -pred $W/pred_D_proto -o $W/eval_D_proto.json --quiet --skip-missing > /dev/null 2>&1
for spec in hs2:$H/s2/extra_hushift:$H/hs2_ref ld4:$H/s4/extra_lowdose:$H/ld4_ref ld0:$T/ld0/extra_lowdose:$T/ld0_ref; do
  s=${spec%%:*}; rest=${spec#*:}; in=${rest%%:*}; ref=${rest#*:}
  $X predict -i $in -o $W/pred_D_$s $MO --save_probabilities --no_preview --disable_progress_bar > $W/pred_D_$s.log 2>&1
  vertebraformer evaluate -ref $ref -pred $W/pred_D_$s -o $W/eval_D_$s.json --quiet > /dev/null 2>&1
done
ev() { echo $1/eval_$2_hs2.json,$1/eval_$2_ld4.json,$1/eval_$2_ld0.json; }
for b in A builtin; do
  python benchmarks/paired_evaluations.py $W/eval_D_proto.json $S/eval_${b}_proto.json --name-a "protocol cases, D" --name-b $b
  python benchmarks/paired_evaluations.py $(ev $W D) $(ev $S $b) --name-a "36 unseen, D" --name-b $b
done > $R/paired.txt
cat $R/paired.txt
S18=$S bash benchmarks/results/lesion_extent_2026-12-05/found_lesions.sh D $W/pred_D > $R/lesions.txt
grep "^==\|^lytic\|^blastic" $R/lesions.txt
$X --script benchmarks/real_ct.py --work $W/rcD --tag lesion-stem --results $R $MO 2>&1 | tail -6
