#!/bin/bash
# Instances cut and joined at the discs the input CT shows, with ribs as anchors where those discs show a thoracic
# pitch (arm 20: ct_disc_min_score 20, ct_disc_rib_bearing_strength 8, the built-in model's postprocessing.json)
# against neither (arm 0), on the built-in model's saved probabilities: no network runs. Run from the repository
# root with the venv active, after ../bone_growth_2026-12-06/run.sh (its work folder W holds the 36 real-like-rim
# phantoms' predictions, O the rib-bearing record's: 60 unseen-style phantoms of seeds 7 and 13, and the real CT's).
# The thickslice phantoms (5 mm slices: never read) are left out. About 12 minutes on 2 cores.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/ct_discs_2026-12-06; O=${O:-/tmp/rib_bearing}; W=${W:-/tmp/bone_growth}
S=${S:-/tmp/ct_discs}; DIM=${DIM:-/tmp/dim}
mkdir -p $S
arm() { if [ $1 = 0 ]; then echo "--set ct_disc_min_score=0 --set ct_disc_rib_bearing_strength=0"; else
  echo "--set ct_disc_min_score=20 --set ct_disc_rib_bearing_strength=8"; fi; }
sets="dim"
for seed in 7 13; do for s in hushift lowdose; do sets="$sets s${seed}_$s"; done; done
for k in $sets; do
  if [ $k = dim ]; then pred=$W/pred_dim; ref=$DIM/ref; else pred=$O/pred_$k; ref=$O/ref_$k; fi
  for v in 0 20; do
    vertebraformer ensemble -i $pred -o $S/${k}_$v --no_preview --disable_progress_bar $(arm $v) > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $S/${k}_$v -o $S/eval_${k}_$v.json --quiet > /dev/null
  done
done
join() { local v=$1; shift; local out=""; for k in "$@"; do out="$out,$S/eval_${k}_$v.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(join 20 $sets) $(join 0 $sets) --name-a ct-discs --name-b off \
  | tee $R/paired.txt
grep -l "discs the CT shows" $S/*_20/*.json | sed "s|$S/||" | tee $R/cases_read.txt
for v in 0 20; do
  python benchmarks/real_ct.py --work $S/rc_$v --tag ct-discs-$v --results $R --renumber $O/rc/predictions \
    $(arm $v) | grep Dice
  python benchmarks/real_ct_perturbed.py --work $S/rcp_$v --tag ct-discs-$v --results $R --renumber $O/rcp \
    $(arm $v) | tail -1
done
python $R/chest_discs.py $S/rc_0/predictions/chest.nii.gz $S/rc_20/predictions/chest.nii.gz $R/chest_discs.png
python $R/chest_first_rib.py $S/rc_20/predictions/chest.nii.gz $R/chest_first_rib.png
# what is byte for byte the sacrum record's (the real CT with the reading off, the previews of the three cases it
# does not read) is not stored twice
rm -f $R/real_ct_2*_ct-discs-0.* $R/real_ct_2*_ct-discs-0_*
for c in example_ct tptbox verse014; do
  rm -f $R/real_ct_*_ct-discs-20_${c}_preview.png
  same=../sacrum_top_2026-12-06/real_ct_2026-12-06_sacrum-top-1_${c}_preview.png
  sed -i -E "s#\(real_ct_[0-9-]+_ct-discs-20_${c}_preview.png\)#($same)#" $R/real_ct_*_ct-discs-20.md
done
