# Fused instances without a neck cut into even parts (split_even_pitch_mm, 30 mm by default) against the rule off
# (split_even_pitch_mm=0: such an instance stays whole, as before), with the built-in model: the real CT cases under
# the ten test-time variants, the original scans with pictures, and 12 unseen-style phantoms.
# The phantoms are those of finetune_rate_2026-12-04 (vertebraformer phantoms ... --seed 0, lowdose) in ${FTR:-/tmp/ftr}.
set -e
. .venv/bin/activate  # from the repository root
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/even_split}
R=benchmarks/results/even_split_2026-12-04
python benchmarks/real_ct_perturbed.py --work $W/rcp_on --tag even-split --results $R | tail -1
python benchmarks/real_ct_perturbed.py --work $W/rcp_off --tag even-split-off --results $R --set split_even_pitch_mm=0 | tail -1
python benchmarks/real_ct.py --work $W/rc_on --tag even-split --results $R | tail -1
for arm in on off; do
  set_off=""; [ $arm = off ] && set_off="--set split_even_pitch_mm=0"
  vertebraformer predict -i ${FTR:-/tmp/ftr}/ld0/extra_lowdose -o $W/ld_$arm $set_off > /dev/null 2>&1
  vertebraformer evaluate -ref ${FTR:-/tmp/ftr}/ld0_ref -pred $W/ld_$arm -o $R/eval_lowdose_seed0_$arm.json --bootstrap 2000 | grep overall
done
python benchmarks/paired_evaluations.py $R/eval_lowdose_seed0_on.json $R/eval_lowdose_seed0_off.json --name-a even --name-b whole > $R/paired.txt
grep -h "equal length" $W/ld_on/*.json | sort | uniq -c || true
# thick slices (3-7 mm) fuse whole columns: the 12 thickslice phantoms of seed 7 and their truth reference, as
# disc_head_ab_2026-12-03/setup.sh makes them
for arm in on off; do
  set_off=""; [ $arm = off ] && set_off="--set split_even_pitch_mm=0"
  vertebraformer predict -i ${AB:-/tmp/ab}/P/extra_thickslice -o $W/ts_$arm $set_off > /dev/null 2>&1
  vertebraformer evaluate -ref ${AB:-/tmp/ab}/ref_thickslice -pred $W/ts_$arm -o $R/eval_thickslice_seed7_$arm.json --bootstrap 2000 | grep overall | head -2
done
python benchmarks/paired_evaluations.py $R/eval_thickslice_seed7_on.json $R/eval_thickslice_seed7_off.json --name-a even --name-b whole > $R/paired_thickslice.txt
grep -h "equal length" $W/ts_on/*.json | sort | uniq -c || true
