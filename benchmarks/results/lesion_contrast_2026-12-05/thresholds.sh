#!/bin/bash
# written-lesion threshold with the CT judging on (the built-in model's 36 unseen phantoms)
O=${O:-/tmp/lesion_contrast}; H=${H:-/tmp/held_out}; T=${T:-/tmp/tta}  # run.sh first (its in_<set> links)
for spec in hs2:$H/hs2_ref ld4:$H/ld4_ref ld0:$T/ld0_ref; do s=${spec%%:*}; ref=${spec#*:}
  for t in 0.5 0.6 0.7 0.9; do
    vertebraformer ensemble -i $O/in_$s -o $O/t${t}_$s --set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=100 \
      --set lesion_threshold=$t > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $O/t${t}_$s -o $O/eval_t${t}_$s.json --quiet > /dev/null 2>&1
  done
done
python $(dirname "$0")/../lesion_extent_2026-12-05/written_f1.py $O 0.5 0.6 0.7 0.9
