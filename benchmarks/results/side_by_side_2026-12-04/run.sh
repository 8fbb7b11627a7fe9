# Instances side by side at the same height joined (merge_overlap_fraction, 0.7 by default) against the rule off
# (merge_overlap_fraction=0, as before), with the built-in model: the real CT cases under the ten test-time variants,
# the original scans with pictures, 12 lowdose phantoms of seed 0 and 12 thickslice phantoms of seed 7 (as
# tta_mirroring_2026-12-04/run.sh makes them, in ${TTA:-/tmp/tta}). The network runs once per input
# (--save_probabilities); both arms post-process those saved probabilities again, the same way.
# Run from the repository root with the venv active.
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/side_by_side}
P=${TTA:-/tmp/tta}
R=benchmarks/results/side_by_side_2026-12-04
mkdir -p $W/scratch
python benchmarks/real_ct_perturbed.py --work $W/rcp --tag network --results $W/scratch --save_probabilities | tail -1
python benchmarks/real_ct.py --work $W/rc --tag network --results $W/scratch --save_probabilities | tail -1
for arm in on off; do
  set_arm=$([ $arm = off ] && echo "--set merge_overlap_fraction=0" || true)
  tag=side-by-side$([ $arm = off ] && echo -off || true)
  python benchmarks/real_ct_perturbed.py --work $W/rcp_$arm --tag $tag --results $R --renumber $W/rcp $set_arm | tail -1
  python benchmarks/real_ct.py --work $W/rc_$arm --tag $tag --results $R --renumber $W/rc/predictions $set_arm | tail -5
done
for s in ld0:lowdose ts7:thickslice; do d=${s%%:*}; style=${s##*:}
  vertebraformer predict -i $P/$d/extra_$style -o $W/$d --save_probabilities > /dev/null 2>&1
  for arm in on off; do
    set_arm=$([ $arm = off ] && echo "--set merge_overlap_fraction=0" || true)
    vertebraformer ensemble -i $W/$d $W/$d -o $W/${d}_$arm $set_arm > /dev/null 2>&1
    vertebraformer evaluate -ref $P/${d}_ref -pred $W/${d}_$arm -o $R/eval_${style}_$arm.json --bootstrap 2000 | grep overall | head -2
  done
  echo "$style: the rule joined instances in $(grep -l 'same height' $W/${d}_on/*.json | wc -l) of 12 cases"
done
python benchmarks/paired_evaluations.py $R/eval_lowdose_on.json,$R/eval_thickslice_on.json \
  $R/eval_lowdose_off.json,$R/eval_thickslice_off.json --name-a side-by-side-joined --name-b kept > $R/paired.txt
cat $R/paired.txt
