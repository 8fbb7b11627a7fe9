#!/bin/bash
# A held-out check of the day's three numbering defaults (end drop, fused split, double skip), on 24 phantoms none of
# the choices was made on: 12 of the hushift style (seed 2) and 12 lowdose (seed 4). The network runs once per case;
# each arm renumbers the same probabilities. Run from the repository root with the venv active; ~5 min on 2 cores.
set -euo pipefail
export nnUNet_compile=f
H=${H:-/tmp/held_out}; R=$PWD/benchmarks/results/double_instances_2026-12-04
vertebraformer phantoms $H/s2 --seed 2 --cases-per-source 6 --extra-style hushift --extra-cases 12 --quiet
vertebraformer phantoms $H/s4 --seed 4 --sources verse --extra-style lowdose --extra-cases 12 --quiet
python -c "from vertebraformer_nn.demo.reference import truth_reference as t; t('$H/s2', 'extra_hushift', '$H/hs2_ref'); t('$H/s4', 'extra_lowdose', '$H/ld4_ref')"
vertebraformer predict -i $H/s2/extra_hushift -o $H/hs2 --save_probabilities
vertebraformer predict -i $H/s4/extra_lowdose -o $H/ld4 --save_probabilities
arms=("on" "off:--set end_drop_cost=0 --set split_volume_ratio=0 --set double_volume_ratio=0"
      "nodrop:--set end_drop_cost=0" "nosplit:--set split_volume_ratio=0" "nodouble:--set double_volume_ratio=0"
      "guard1:--set end_drop_max_fraction=1.0")
for arm in "${arms[@]}"; do name=${arm%%:*}; sets=$([ "$name" = "$arm" ] || echo "${arm#*:}")
  for s in hs2 ld4; do
    vertebraformer ensemble -i $H/$s -o $H/${s}_$name $sets > /dev/null
    vertebraformer evaluate -ref $H/${s}_ref -pred $H/${s}_$name -o $H/eval_${s}_$name.json --quiet > /dev/null
  done
done
for name in off nodrop nosplit nodouble guard1; do
  python benchmarks/paired_evaluations.py $H/eval_hs2_on.json,$H/eval_ld4_on.json $H/eval_hs2_$name.json,$H/eval_ld4_$name.json \
    --name-a defaults --name-b $name
done | tee $R/held_out.txt
