# the built-in recipe's fine model with and without the disc head, the same fixed number of epochs, one after the other
set -e  # EPOCHS=60 bash run.sh
export nnUNet_compile=f
. /work/main/.venv/bin/activate
D=/tmp/ab/demo
export nnUNet_raw=$D/nnUNet_raw nnUNet_preprocessed=$D/nnUNet_preprocessed nnUNet_results=/tmp/ab/results
export VERTEBRAFORMER_TRAIN_EPOCHS=${EPOCHS:-40}
cd /tmp/ab
for plans in VertebraFormerCPUPlans_nohead VertebraFormerCPUPlans; do
  date; echo train $plans
  vertebraformer train 599 0 -tr VertebraFormerTrainer_budget -p $plans -device cpu > /tmp/ab/train_$plans.log 2>&1
done
date; echo DONE
