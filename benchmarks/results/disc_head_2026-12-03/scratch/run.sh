# the built-in recipe trained from scratch with the disc head (same data, split, budget as the shipped fine model)
set -e
export nnUNet_compile=f
. /work/main/.venv/bin/activate
export nnUNet_raw=/tmp/bw/raw nnUNet_preprocessed=/tmp/bd/pre nnUNet_results=/tmp/bd3/results
cd /tmp/bd3
date; echo train fold 0
VERTEBRAFORMER_TRAIN_BUDGET_S=4815 vertebraformer train 599 0 -tr VertebraFormerTrainer_budget -device cpu > /tmp/bd3/train.log 2>&1
date; echo DONE
