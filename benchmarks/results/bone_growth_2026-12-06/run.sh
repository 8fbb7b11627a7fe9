#!/bin/bash
# Bright bone joins its vertebra through up to bone_edge_grow_mm of the predicted spine (0 = only the 2 mm band, as
# before), on the built-in model's saved probabilities: no network runs. Run from the repository root with the venv
# active. O holds the rib-bearing record's predictions (../rib_bearing_2026-12-05/run.sh makes them: the 60
# unseen-style phantoms pred_s{7,13}_<style> with their references, the real CT rc/ and its ten variants rcp/);
# DIM holds 36 phantoms of seed 7 drawn with real-like rims (in/, ref/: the disc-evidence record's, drawn by the
# generator of 16e3702), predicted here with the built-in model. About 8 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/bone_growth_2026-12-06; O=${O:-/tmp/rib_bearing}; W=${W:-/tmp/bone_growth}
ARMS=${ARMS:-0 6 8}; DIM=${DIM:-/tmp/dim}
mkdir -p $W
[ -d $W/pred_dim ] || vertebraformer predict -i $DIM/in -o $W/pred_dim --save_probabilities > /dev/null 2>&1
for g in $ARMS; do
  vertebraformer ensemble -i $W/pred_dim -o $W/dim_$g --no_preview --disable_progress_bar \
    --set bone_edge_grow_mm=$g > /dev/null 2>&1
  vertebraformer evaluate -ref $DIM/ref -pred $W/dim_$g -o $W/eval_dim_$g.json --quiet > /dev/null
done
sets=""
for seed in 7 13; do for s in hushift lowdose thickslice; do
  k=s${seed}_$s; sets="$sets $k"
  for g in $ARMS; do
    [ -f $W/eval_${k}_$g.json ] && continue
    vertebraformer ensemble -i $O/pred_$k -o $W/${k}_$g --no_preview --disable_progress_bar \
      --set bone_edge_grow_mm=$g > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $W/${k}_$g -o $W/eval_${k}_$g.json --quiet > /dev/null
  done
done; done
join() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$W/eval_${k}_$v.json"; done; echo ${out#,}; }
for g in $ARMS; do [ $g = 0 ] && continue
  echo "60 unseen-style phantoms (generator's rims)"
  python benchmarks/paired_evaluations.py $(join $g $sets) $(join 0 $sets) --name-a grow-$g --name-b grow-0
  echo "36 unseen-style phantoms (real-like rims)"
  python benchmarks/paired_evaluations.py $W/eval_dim_$g.json $W/eval_dim_0.json --name-a grow-$g --name-b grow-0
done | tee $R/paired.txt
for g in $ARMS; do
  python benchmarks/real_ct.py --work $W/rc_$g --tag grow-$g --results $R --renumber $O/rc/predictions \
    --set bone_edge_grow_mm=$g | grep Dice
  python benchmarks/real_ct_perturbed.py --work $W/rcp_$g --tag grow-$g --results $R --renumber $O/rcp \
    --set bone_edge_grow_mm=$g | tail -1
done
