#!/bin/bash
set -uo pipefail
. /work/main/.venv/bin/activate
export nnUNet_compile=f nnUNet_raw=/tmp/s18/raw nnUNet_preprocessed=/tmp/s18/pre VERTEBRAFORMER_TRAIN_BUDGET_S=1200 nnUNet_results=/tmp/s18/resC
M=Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
B=/work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans
date; python train_c.py train 599 0 -tr VertebraFormerTrainer_budget -device cpu -pretrained_weights builtin > train_C.log 2>&1; echo "rc $?"; date
rm -rf /tmp/s18/resC/${M}__3d_lowres; cp -r ${B}__3d_lowres /tmp/s18/resC/${M}__3d_lowres
cp ${B}__3d_fullres/postprocessing.json /tmp/s18/resC/${M}__3d_fullres/
./evalarm.sh C; date
