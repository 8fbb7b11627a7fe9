# The disc head trained alone on the built-in model (every other weight frozen): the built-in recipe's 31 phantoms
# of seed 7 (the demo folder of disc_head_ab_2026-12-03, /tmp/ab/demo), preprocessed with the built-in model's own
# plans plus use_boundary_head (prep.py), 1200 s of training on 2 CPU cores, then eval.sh.
set -e
. /work/main/.venv/bin/activate
export nnUNet_compile=f nnUNet_raw=/tmp/ab/demo/nnUNet_raw nnUNet_preprocessed=/tmp/s11/pre nnUNet_results=/tmp/s11/results
python prep.py
VERTEBRAFORMER_TRAIN_BUDGET_S=1200 vertebraformer train 599 0 -tr VertebraFormerTrainer_budget_newHeads -device cpu -pretrained_weights builtin
bash eval.sh
