# The demo both ways, one after the other on the same 2 idle CPU cores, then every model on 12 unseen-style phantoms
# of seed 0 and on the real CT cases. Run from the repository root with the venv active.
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp}
R=benchmarks/results/demo_start_2026-12-03
vertebraformer demo -o $W/demo_ft --start builtin          # the CPU default since this measurement
vertebraformer demo -o $W/demo_sc --start scratch
vertebraformer phantoms $W/ld0 --seed 0 --sources verse --extra-style lowdose --extra-cases 12 --quiet
python -c "from vertebraformer_nn.demo.reference import truth_reference as t; t('$W/ld0', 'extra_lowdose', '$W/ld0_ref')"
M=nnUNet_results/Dataset599_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/ld0_pred                       # the built-in model
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/ld0_pred_nc --no-coarse        # ... without its coarse stage
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/ld0_pred_ft -m $W/demo_ft/$M -f 0
vertebraformer predict -i $W/ld0/extra_lowdose -o $W/ld0_pred_sc -m $W/demo_sc/$M -f 0
for p in ":builtin" "_nc:builtin_nocoarse" "_ft:demo_builtin" "_sc:demo_scratch"; do
  vertebraformer evaluate -ref $W/ld0_ref -pred $W/ld0_pred${p%%:*} -o $R/eval_${p##*:}_lowdose_seed0.json --bootstrap 2000
done
for pair in demo_builtin:demo_scratch demo_builtin:builtin_nocoarse; do a=${pair%%:*}; b=${pair##*:}
  python benchmarks/paired_evaluations.py $R/eval_${a}_lowdose_seed0.json $R/eval_${b}_lowdose_seed0.json --name-a $a --name-b $b
done > $R/paired.txt
python benchmarks/real_ct.py --work $W/rc2_demo_ft --tag demo-start-builtin -m $W/demo_ft/$M -f 0
python benchmarks/real_ct.py --work $W/rc2_demo_sc --tag demo-start-scratch -m $W/demo_sc/$M -f 0
cp $W/demo_ft/evaluation/unseen_lowdose_fold0.json $R/demo_builtin_unseen_lowdose_fold0.json
cp $W/demo_sc/evaluation/unseen_lowdose_fold0.json $R/demo_scratch_unseen_lowdose_fold0.json
