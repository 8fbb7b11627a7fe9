# The demo's fine-tuning from the built-in model at a tenth of the budget trainer's peak rate (PRETRAINED_LR_FACTOR
# 0.1, this commit) and at the full rate (the factor set to 1 for that run, as before this commit), one after the
# other on the same 2 idle CPU cores; then both and the built-in model on 12 unseen-style phantoms of seed 0 and on
# the real CT cases.
# Run from the repository root with the venv active.
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/ftr}
R=$PWD/benchmarks/results/finetune_rate_2026-12-04
M=nnUNet_results/Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
mkdir -p $W
vertebraformer demo -o $W/demo_lr01 > $W/demo_lr01.log 2>&1                      # the defaults: 10 minutes, seed 0
# the full rate (the run of 2026-12-04 set the trainer's PRETRAINED_LR_FACTOR to 1.0 in its source for this; the
# variable, added since, does the same)
VERTEBRAFORMER_PRETRAINED_LR_FACTOR=1 vertebraformer demo -o $W/demo_lr1 > $W/demo_lr1.log 2>&1
grep -h "fine-tuning at\|Current learning rate" $W/demo_lr01/$M/fold_0/training_log_*.txt | head -3
vertebraformer phantoms $W/ld0 --seed 0 --sources verse --extra-style lowdose --extra-cases 12 --quiet
python -c "from vertebraformer_nn.demo.reference import truth_reference as t; t('$W/ld0', 'extra_lowdose', '$W/ld0_ref')"
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/pred_builtin > /dev/null 2>&1
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/pred_lr01 -m $W/demo_lr01/$M -f 0 > /dev/null 2>&1
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/pred_lr1 -m $W/demo_lr1/$M -f 0 > /dev/null 2>&1
for m in builtin lr01 lr1; do
  vertebraformer evaluate -ref $W/ld0_ref -pred $W/pred_$m -o $R/eval_${m}_lowdose_seed0.json --bootstrap 2000 | grep overall
done
for pair in lr01:lr1 lr01:builtin lr1:builtin; do a=${pair%%:*}; b=${pair##*:}
  python benchmarks/paired_evaluations.py $R/eval_${a}_lowdose_seed0.json $R/eval_${b}_lowdose_seed0.json --name-a $a --name-b $b
done | tee $R/paired.txt
for m in lr01 lr1; do
  python benchmarks/real_ct.py --work $W/rc_$m --tag finetune-$m -m $W/demo_$m/$M -f 0 --results $R 2>&1 | tail -5
  cp $W/demo_$m/evaluation/unseen_lowdose_fold0.json $R/demo_${m}_unseen_lowdose_fold0.json
done
python benchmarks/real_ct_perturbed.py --work $W/rcp_lr01 --tag finetune-lr01 -m $W/demo_lr01/$M -f 0 --results $R 2>&1 | tail -5
