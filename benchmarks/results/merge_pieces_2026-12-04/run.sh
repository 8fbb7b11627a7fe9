# Pieces far smaller than their neighbours joined to the vertebra they touch (merge_piece_fraction, 0.2 by default)
# against the rule off (merge_piece_fraction=0: such a piece stays an instance, as before), with the built-in model:
# the real CT cases under the ten test-time variants, the original scans with pictures, 12 lowdose phantoms of seed 0
# and 12 thickslice phantoms of seed 7 (the phantoms of even_split_2026-12-04/run.sh, in ${FTR:-/tmp/ftr} and
# ${AB:-/tmp/ab}).
set -e
. .venv/bin/activate  # from the repository root
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
W=${W:-/tmp/merge_pieces}
R=benchmarks/results/merge_pieces_2026-12-04
python benchmarks/real_ct_perturbed.py --work $W/rcp_on --tag merge-pieces --results $R | tail -1
python benchmarks/real_ct_perturbed.py --work $W/rcp_off --tag merge-pieces-off --results $R --set merge_piece_fraction=0 | tail -1
python benchmarks/real_ct.py --work $W/rc_on --tag merge-pieces --results $R | tail -1
python benchmarks/real_ct.py --work $W/rc_off --tag merge-pieces-off --results $R --set merge_piece_fraction=0 | tail -1
for style in lowdose_seed0 thickslice_seed7; do
  case $style in
    lowdose_seed0) IN=${FTR:-/tmp/ftr}/ld0/extra_lowdose; REF=${FTR:-/tmp/ftr}/ld0_ref ;;
    thickslice_seed7) IN=${AB:-/tmp/ab}/P/extra_thickslice; REF=${AB:-/tmp/ab}/ref_thickslice ;;
  esac
  for arm in on off; do
    set_off=""; [ $arm = off ] && set_off="--set merge_piece_fraction=0"
    vertebraformer predict -i $IN -o $W/${style}_$arm $set_off > /dev/null 2>&1
    vertebraformer evaluate -ref $REF -pred $W/${style}_$arm -o $R/eval_${style}_$arm.json --bootstrap 2000 | grep overall | head -2
  done
  grep -h "joined" $W/${style}_on/*.json | wc -l
done
python benchmarks/paired_evaluations.py $R/eval_lowdose_seed0_on.json,$R/eval_thickslice_seed7_on.json \
  $R/eval_lowdose_seed0_off.json,$R/eval_thickslice_seed7_off.json --name-a joined --name-b kept > $R/paired.txt
cat $R/paired.txt
