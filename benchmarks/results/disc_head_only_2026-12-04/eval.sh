# candidate: the built-in model plus a disc head trained alone (trunk frozen); measured as the merge_pieces run measured the built-in
set -e
cd /work/main; . .venv/bin/activate; export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=/work/shared/data/real
M=${M:-/tmp/s11/results/Dataset599_MultiSpine/VertebraFormerTrainer_budget_newHeads__VertebraFormerCPUPlans__3d_fullres}
TAG=${TAG:-disc-head-only}
W=${W:-/tmp/s11/w}; R=${R:-/tmp/s11/res}; mkdir -p $W $R
cp vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/postprocessing.json $M/
ln -sfn /work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres $(dirname $M)/$(basename $M | sed 's/3d_fullres$/3d_lowres/')
date
python benchmarks/real_ct_perturbed.py --work $W/rcp --tag $TAG --results $R -m $M -f 0 --save_probabilities | tail -2
date
python benchmarks/real_ct.py --work $W/rc --tag $TAG --results $R -m $M -f 0 --save_probabilities | tail -5
date
for style in lowdose_seed0 thickslice_seed7; do
  case $style in
    lowdose_seed0) IN=/tmp/ftr/ld0/extra_lowdose; REF=/tmp/ftr/ld0_ref ;;
    thickslice_seed7) IN=/tmp/ab/P/extra_thickslice; REF=/tmp/ab/ref_thickslice ;;
  esac
  vertebraformer predict -i $IN -o $W/$style -m $M -f 0 --save_probabilities > $W/$style.log 2>&1
  vertebraformer evaluate -ref $REF -pred $W/$style -o $R/eval_${style}.json --bootstrap 2000 | grep overall | head -2
done
date
