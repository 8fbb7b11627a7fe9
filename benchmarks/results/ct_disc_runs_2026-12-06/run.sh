#!/bin/bash
# The CT's discs read where they are not all evenly spaced: only evenly spaced runs of dark discs
# (ct_discs.regular_runs, disc_contrast). No network runs: the built-in model's saved probabilities of the 76
# unseen-style phantoms (2-3 mm slices) and the real CT, renumbered with this code, against the ct_discs record's arm
# 20 (the same settings, the code before: S of ../ct_discs_2026-12-06/run.sh); and the demo's unseen phantoms,
# predicted once by a demo's model (D: a `vertebraformer demo -o D` folder) with --save_probabilities, renumbered,
# against that demo's own evaluation.
# Run from the repository root with the venv active, after ../ct_discs_2026-12-06/run.sh. About 5 minutes on 2 cores.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/ct_disc_runs_2026-12-06; O=${O:-/tmp/rib_bearing}; W=${W:-/tmp/bone_growth}
S0=${S0:-/tmp/ct_discs}; DIM=${DIM:-/tmp/dim}; S=${S:-/tmp/ct_disc_runs}; D=${D:-/tmp/s26/demo}
mkdir -p $S
A="--set ct_disc_min_score=20 --set ct_disc_rib_bearing_strength=8"
sets="dim"; for seed in 7 13; do for s in hushift lowdose; do sets="$sets s${seed}_$s"; done; done
for k in $sets; do
  if [ $k = dim ]; then pred=$W/pred_dim; ref=$DIM/ref; else pred=$O/pred_$k; ref=$O/ref_$k; fi
  vertebraformer ensemble -i $pred -o $S/$k --no_preview --disable_progress_bar $A > /dev/null 2>&1
  vertebraformer evaluate -ref $ref -pred $S/$k -o $S/eval_$k.json --quiet > /dev/null
done
j() { local d=$1 e=$2; shift 2; local out=""; for k in "$@"; do out="$out,$d/eval_${k}$e.json"; done; echo ${out#,}; }
python benchmarks/paired_evaluations.py $(j $S "" $sets) $(j $S0 _20 $sets) --name-a runs --name-b whole \
  | tee $R/paired.txt
grep -l "evenly spaced run" $S/*/*.json | sed "s|$S/||" | tee $R/cases_read.txt
python benchmarks/real_ct.py --work $S/rc --tag runs --results $S/res --renumber $O/rc/predictions $A | grep Dice
python benchmarks/real_ct_perturbed.py --work $S/rcp --tag runs --results $S/res --renumber $O/rcp $A | tail -1
model=$(ls -d $D/nnUNet_results/Dataset599_MultiSpine/*__3d_fullres)
vertebraformer predict -i $D/SIM/extra_lowdose -o $S/demo_pred -m $model -f 0 --save_probabilities --no_preview \
  --disable_progress_bar > /dev/null 2>&1
vertebraformer ensemble -i $S/demo_pred -o $S/demo --no_preview --disable_progress_bar > /dev/null 2>&1
vertebraformer evaluate -ref $D/reference/unseen_lowdose -pred $S/demo -o $S/eval_demo.json --quiet > /dev/null
python - $D/evaluation/unseen_lowdose_fold0.json $S/eval_demo.json <<'PY' | tee $R/demo.txt
import json, sys
rows = [json.load(open(f)) for f in sys.argv[1:]]
print("case         demo's own  renumbered (id rate)")
for case in rows[0]["cases"]:
    print(f"{case:12s} " + "  ".join(f"{r['cases'][case]['numbering']['id_rate']:10.2f}" for r in rows))
for name, r in zip(("demo's own", "renumbered"), rows):
    o = r["summary"]["overall"]
    n = o["numbering"]
    print(f"{name}: id rate {n['id_rate']['value']:.3f} {[round(x, 3) for x in n['id_rate']['ci']]}, "
          f"all right {n['all_correct']['value']:.3f}, Dice {o['segmentation']['dice']['value']:.3f}, "
          f"binary Dice {o['segmentation']['binary_dice']['value']:.3f}")
PY
