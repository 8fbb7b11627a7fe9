# The built-in model with test-time left-right mirroring (--enable_tta) and without (the CPU default), side by side
# on the same idle 2 CPU cores: unseen-style phantoms (lowdose seed 0, thickslice seed 7; 12 cases each) and the real
# CT cases, original and under the ten test-time variants. Nothing else differs between the arms.
# Run from the repository root with the venv active.
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/tta}
R=$PWD/benchmarks/results/tta_mirroring_2026-12-04
mkdir -p $W
vertebraformer phantoms $W/ld0 --seed 0 --sources verse --extra-style lowdose --extra-cases 12 --quiet
vertebraformer phantoms $W/ts7 --seed 7 --sources verse --extra-style thickslice --extra-cases 12 --quiet
python -c "from vertebraformer_nn.demo.reference import truth_reference as t; t('$W/ld0', 'extra_lowdose', '$W/ld0_ref'); t('$W/ts7', 'extra_thickslice', '$W/ts7_ref')"
for arm in off on; do
  flag=$([ $arm = on ] && echo --enable_tta || true)
  for s in ld0:lowdose ts7:thickslice; do d=${s%%:*}; style=${s##*:}
    /usr/bin/time -f "$arm $style: %e s wall, %M KB peak" vertebraformer predict -i $W/$d/extra_$style -o $W/pred_${d}_$arm $flag > $W/pred_${d}_$arm.log 2>&1
    tail -1 $W/pred_${d}_$arm.log
    vertebraformer evaluate -ref $W/${d}_ref -pred $W/pred_${d}_$arm -o $R/eval_${style}_${arm}.json --bootstrap 2000 | grep overall | head -2
  done
done
for style in lowdose thickslice; do
  python benchmarks/paired_evaluations.py $R/eval_${style}_on.json $R/eval_${style}_off.json --name-a mirroring --name-b off
done | tee $R/paired.txt
python benchmarks/real_ct.py --work $W/rc_on --tag tta-on --results $R --enable_tta 2>&1 | tail -6
python benchmarks/real_ct_perturbed.py --work $W/rcp_on --tag tta-on --results $R --enable_tta 2>&1 | tail -3
python benchmarks/real_ct_perturbed.py --work $W/rcp_off --tag tta-off --results $R 2>&1 | tail -3
