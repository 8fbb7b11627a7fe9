# After the fine-tune: post-processing search, packaging into a candidate folder, evaluation beside the built-in model.
set -e
cd /work/main && . .venv/bin/activate
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=/work/shared/data/real
W=${W:-/tmp/s7}
export nnUNet_raw=$W/ft/nnUNet_raw nnUNet_preprocessed=$W/ft/nnUNet_preprocessed nnUNet_results=$W/ft/nnUNet_results
D=$nnUNet_results/Dataset599_MultiSpine
F=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
L=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres
[ -d $D/$L ] || cp -r vertebraformer_nn/builtin_model/$L $D/
vertebraformer determine-postprocessing -m $D/$F -f 0 2>&1 | tail -5
rm -rf $W/cand && python tools/package_builtin_model.py --model $D/$F -f 0 --into $W/cand
for set in new old; do
  for arm in builtin cand; do
    if [ $arm = builtin ]; then MO=""; else MO="-m $W/cand/$F -f 0"; fi
    rm -rf $W/pred_${set}_$arm
    vertebraformer predict -i $W/ld0_$set/extra_lowdose -o $W/pred_${set}_$arm $MO > /dev/null 2>&1
    vertebraformer evaluate -ref $W/ld0_${set}_ref -pred $W/pred_${set}_$arm -o $W/eval_${set}_$arm.json --bootstrap 2000 | grep overall
  done
done
python benchmarks/real_ct.py --work $W/rc_cand --tag degenerated-discs-candidate -m $W/cand/$F -f 0 --results $W/results 2>&1 | tail -12
python benchmarks/real_ct_perturbed.py --work $W/rcp_cand --tag degenerated-discs-candidate -m $W/cand/$F -f 0 --results $W/results 2>&1 | tail -25
