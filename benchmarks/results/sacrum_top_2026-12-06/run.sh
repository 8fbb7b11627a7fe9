#!/bin/bash
# A last instance named L6 with the field of view ending within 10 mm below it and no sacrum found is left out as the
# sacrum's first segment (cut_l6_is_sacrum 1, the default) against kept as L6 (0), on the built-in model's saved
# probabilities (with its postprocessing.json: bone_edge_grow_mm 6): no network runs. Run from the repository root
# with the venv active, after ../bone_growth_2026-12-06/run.sh (its work folder W holds the 36 real-like-rim
# phantoms' predictions, O the rib-bearing record's). About 6 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/sacrum_top_2026-12-06; O=${O:-/tmp/rib_bearing}; W=${W:-/tmp/bone_growth}
S=${S:-/tmp/sacrum_top}; DIM=${DIM:-/tmp/dim}
mkdir -p $S
sets="dim"
for seed in 7 13; do for s in hushift lowdose thickslice; do sets="$sets s${seed}_$s"; done; done
for k in $sets; do
  if [ $k = dim ]; then pred=$W/pred_dim; ref=$DIM/ref; else pred=$O/pred_$k; ref=$O/ref_$k; fi
  for v in 0 1; do
    vertebraformer ensemble -i $pred -o $S/${k}_$v --no_preview --disable_progress_bar \
      --set cut_l6_is_sacrum=$v > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $S/${k}_$v -o $S/eval_${k}_$v.json --quiet > /dev/null
  done
done
join() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(join 1 $sets) $(join 0 $sets) --name-a sacrum-top --name-b L6 \
  | tee $R/paired.txt
grep -l "left out as the sacrum's first segment" $S/*_1/*.json | sed "s|$S/||" | tee $R/cases_left_out.txt
for v in 0 1; do
  python benchmarks/real_ct.py --work $S/rc_$v --tag sacrum-top-$v --results $R --renumber $O/rc/predictions \
    --set cut_l6_is_sacrum=$v | grep Dice
  python benchmarks/real_ct_perturbed.py --work $S/rcp_$v --tag sacrum-top-$v --results $R --renumber $O/rcp \
    --set cut_l6_is_sacrum=$v | tail -1
done
