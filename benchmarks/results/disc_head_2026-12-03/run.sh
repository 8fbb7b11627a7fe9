# fine-tune of the shipped fine model with the disc head (thin target: the disc space and touching contacts), 40 epochs
set -e
export nnUNet_compile=f
. /work/main/.venv/bin/activate
export nnUNet_raw=/tmp/bw/raw nnUNet_preprocessed=/tmp/bd/pre nnUNet_results=/tmp/bd2/results
cd /tmp/bd2
date; echo fine-tune fold 0
VERTEBRAFORMER_TRAIN_EPOCHS=40 vertebraformer train 599 0 -tr VertebraFormerTrainer_budget -device cpu -pretrained_weights /work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/fold_0/checkpoint_final.pth > /tmp/bd2/train.log 2>&1
date; echo DONE
