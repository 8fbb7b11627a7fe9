#!/bin/bash
# The rib-bearing prior (anchor_rib_bearing_strength: every vertebra with a rib is T1-T13) on (8) against off (0, the
# default), on the built-in model's saved probabilities: no network runs but the first predictions. Run from the
# repository root with the venv active; about 15 minutes on 2 cores.
# The phantoms: 36 of unseen styles (seed 7) and 24 more (seed 13), drawn below into $O.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/rib_bearing_2026-12-05; O=${O:-/tmp/rib_bearing}
mkdir -p $O
[ -d $O/p7 ] || vertebraformer phantoms $O/p7 --seed 7 --sources verse --cases-per-source 1 --extra-style lowdose \
  --extra-style thickslice --extra-style hushift --extra-cases 12 --quiet
[ -d $O/p13 ] || vertebraformer phantoms $O/p13 --seed 13 --sources verse --cases-per-source 1 --extra-style lowdose \
  --extra-style thickslice --extra-style hushift --extra-cases 8 --quiet
sets=""
for seed in 7 13; do for s in hushift lowdose thickslice; do
  k=s${seed}_$s; sets="$sets $k"
  [ -d $O/ref_$k ] || python -c "from pathlib import Path; from vertebraformer_nn.demo.reference import truth_reference; \
truth_reference(Path('$O/p$seed'), 'extra_$s', Path('$O/ref_$k'))"
  [ -d $O/pred_$k ] || vertebraformer predict -i $O/p$seed/extra_$s -o $O/pred_$k --save_probabilities > /dev/null 2>&1
  for v in 0 5 8; do
    vertebraformer ensemble -i $O/pred_$k -o $O/${k}_$v --set anchor_rib_bearing_strength=$v > /dev/null 2>&1
    vertebraformer evaluate -ref $O/ref_$k -pred $O/${k}_$v -o $O/eval_${k}_$v.json --quiet > /dev/null
  done
done; done
join() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$O/eval_${k}_$v.json"; done; echo ${out#,}; }
{ python benchmarks/paired_evaluations.py $(join 8 $sets) $(join 0 $sets) --name-a rib-bearing-8 --name-b off
  python benchmarks/paired_evaluations.py $(join 5 $sets) $(join 0 $sets) --name-a rib-bearing-5 --name-b off; } \
  | tee $R/paired.txt
# real CT (saved probabilities of one predict run) and its ten variants
[ -d $O/rc ] || python benchmarks/real_ct.py --work $O/rc --tag rib-bearing-first --results $O --save_probabilities
python benchmarks/real_ct.py --work $O/rc_on --tag rib-bearing --results $R --renumber $O/rc/predictions \
  --set anchor_rib_bearing_strength=8
python benchmarks/real_ct.py --work $O/rc_off --tag rib-bearing-off --results $R --renumber $O/rc/predictions \
  --set anchor_rib_bearing_strength=0
[ -d $O/rcp ] || python benchmarks/real_ct_perturbed.py --work $O/rcp --tag first --results $O --save_probabilities
python benchmarks/real_ct_perturbed.py --work $O/rcp_on --tag rib-bearing --results $R --renumber $O/rcp \
  --set anchor_rib_bearing_strength=8
python benchmarks/real_ct_perturbed.py --work $O/rcp_off --tag rib-bearing-off --results $R --renumber $O/rcp \
  --set anchor_rib_bearing_strength=0
# the pictures the chest was counted on
python $R/chest_count.py $O/rc_on/predictions/chest.nii.gz $R/chest_count.png
