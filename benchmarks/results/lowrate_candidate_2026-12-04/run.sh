# The built-in model fine-tuned at a tenth of the rate on the recipe's phantoms (seed 7, 12 per source; generator with
# degenerated discs and mottled texture), 40 minutes; then beside the built-in model on the 12 lowdose phantoms of
# ${FTR:-/tmp/ftr}/ld0 and on the real CT variants. The built-in coarse stage is put beside it (predict finds the sibling).
set -e
. .venv/bin/activate  # from the repository root
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/s8_cand}
vertebraformer demo -o $W/ft --minutes 40 --cases-per-source 12 --max-folds 1 --seed 7 --start builtin > $W/demo.log 2>&1
D=$W/ft/nnUNet_results/Dataset599_MultiSpine
F=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
L=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres
[ -d $D/$L ] || cp -r vertebraformer_nn/builtin_model/$L $D/
grep -c "Epoch time" $D/$F/fold_0/training_log_*.txt
vertebraformer predict -i ${FTR:-/tmp/ftr}/ld0/extra_lowdose -o $W/pred_cand -m $D/$F -f 0 > /dev/null 2>&1
vertebraformer evaluate -ref ${FTR:-/tmp/ftr}/ld0_ref -pred $W/pred_cand -o benchmarks/results/lowrate_candidate_2026-12-04/eval_cand_lowdose_seed0.json --bootstrap 2000 | grep overall
python benchmarks/paired_evaluations.py benchmarks/results/lowrate_candidate_2026-12-04/eval_cand_lowdose_seed0.json benchmarks/results/finetune_rate_2026-12-04/eval_builtin_lowdose_seed0.json --name-a cand --name-b builtin
python benchmarks/real_ct_perturbed.py --work $W/rcp --tag lowrate-candidate -m $D/$F -f 0 --results benchmarks/results/lowrate_candidate_2026-12-04 2>&1 | tail -3
