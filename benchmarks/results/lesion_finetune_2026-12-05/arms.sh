#!/bin/bash
# fine-tune the built-in model on seed-13 phantoms, two arms, 1200 s each; then predict the 36 unseen phantoms
set -uo pipefail
. /work/main/.venv/bin/activate
export nnUNet_compile=f nnUNet_raw=/tmp/s18/raw nnUNet_preprocessed=/tmp/s18/pre VERTEBRAFORMER_TRAIN_BUDGET_S=${BUDGET:-1200}
M=Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
B=/work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
for arm in A B; do
  export nnUNet_results=/tmp/s18/res$arm
  date; echo "train $arm"
  if [ $arm = A ]; then vertebraformer train 599 0 -tr VertebraFormerTrainer_budget -device cpu -pretrained_weights builtin > train_$arm.log 2>&1
  else python train_b.py train 599 0 -tr VertebraFormerTrainer_budget -device cpu -pretrained_weights builtin > train_$arm.log 2>&1; fi
  echo "rc $?"; date
  # the built-in coarse stage and post-processing beside the fine-tuned fine model, as the built-in pair
  rm -rf /tmp/s18/res$arm/${M}__3d_lowres; cp -r ${B}__3d_lowres /tmp/s18/res$arm/${M}__3d_lowres
  cp ${B}__3d_fullres/postprocessing.json /tmp/s18/res$arm/${M}__3d_fullres/
done
