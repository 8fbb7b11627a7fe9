#!/bin/bash
# A tall instance cut where its voxel-wise levels change in the spine's order (level_run_height_ratio) against off (0),
# at 1.2 / 1.3 / 1.4 / 1.7 (double split on in all), on the built-in model's saved probabilities: no network runs. Needs the work folders of
# ../end_drop_2026-12-04/run.sh ($W: 59 phantoms and the real CT) and ../double_instances_2026-12-04/held_out.sh ($H:
# 24 held-out phantoms). Run from the repository root with the venv active; about 20 minutes on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q6}; T=${T:-/tmp/tta}; W=${W:-/tmp/end_drop}; H=${H:-/tmp/held_out}
R=$PWD/benchmarks/results/level_runs_2026-12-05; O=${O:-/tmp/level_runs}
mkdir -p $O
for s in seed1 ld0 ts7 hs2 ld4; do
  case $s in seed1) in=$W/$s; ref=$Q/reference;; ld0|ts7) in=$W/$s; ref=$T/${s}_ref;; *) in=$H/$s; ref=$H/${s}_ref;; esac
  for v in 0 1.2 1.3 1.4 1.7; do
    vertebraformer ensemble -i $in -o $O/${s}_$v --set level_run_height_ratio=$v > /dev/null 2>&1
    # seed 1: the reference's 61 other phantoms have no prediction, which evaluate reports with a non-zero status
    vertebraformer evaluate -ref $ref -pred $O/${s}_$v -o $O/eval_${s}_$v.json --quiet \
      $([ $s = seed1 ] && echo --skip-missing) > /dev/null || [ $s = seed1 ]
  done
done
python - $O <<'PY'
import json, sys
for v in ('0', '1.2', '1.3', '1.4', '1.7'):
    path = f'{sys.argv[1]}/eval_seed1_{v}.json'
    d = json.load(open(path))
    d['cases'] = {k: c for k, c in d['cases'].items() if c.get('status') == 'ok'}
    json.dump(d, open(path.replace('.json', '_predicted.json'), 'w'))
PY
for v in 1.2 1.3 1.4 1.7; do
  python benchmarks/paired_evaluations.py $O/eval_seed1_${v}_predicted.json,$O/eval_ld0_$v.json,$O/eval_ts7_$v.json \
    $O/eval_seed1_0_predicted.json,$O/eval_ld0_0.json,$O/eval_ts7_0.json --name-a level-runs-$v --name-b off
  python benchmarks/paired_evaluations.py $O/eval_hs2_$v.json,$O/eval_ld4_$v.json $O/eval_hs2_0.json,$O/eval_ld4_0.json \
    --name-a "held-out level-runs-$v" --name-b off
done | tee $R/paired.txt
# the double split (double_split, on in every arm above) against off, level runs off in both
for s in seed1 ld0 ts7 hs2 ld4; do
  case $s in seed1) in=$W/$s; ref=$Q/reference;; ld0|ts7) in=$W/$s; ref=$T/${s}_ref;; *) in=$H/$s; ref=$H/${s}_ref;; esac
  vertebraformer ensemble -i $in -o $O/${s}_ds0 --set level_run_height_ratio=0 --set double_split=0 > /dev/null 2>&1
  vertebraformer evaluate -ref $ref -pred $O/${s}_ds0 -o $O/eval_${s}_ds0.json --quiet \
    $([ $s = seed1 ] && echo --skip-missing) > /dev/null || [ $s = seed1 ]
done
python - $O <<'PY'
import json, sys
path = f'{sys.argv[1]}/eval_seed1_ds0.json'
d = json.load(open(path))
d['cases'] = {k: c for k, c in d['cases'].items() if c.get('status') == 'ok'}
json.dump(d, open(path.replace('.json', '_predicted.json'), 'w'))
PY
{ python benchmarks/paired_evaluations.py $O/eval_seed1_0_predicted.json,$O/eval_ld0_0.json,$O/eval_ts7_0.json \
    $O/eval_seed1_ds0_predicted.json,$O/eval_ld0_ds0.json,$O/eval_ts7_ds0.json --name-a double-split --name-b off
  python benchmarks/paired_evaluations.py $O/eval_hs2_0.json,$O/eval_ld4_0.json $O/eval_hs2_ds0.json,$O/eval_ld4_ds0.json \
    --name-a "held-out double-split" --name-b off; } | tee $R/paired_double_split.txt
# real CT and its ten variants: level runs at 1.2 and the double split against both off
python benchmarks/real_ct.py --work $O/rc --tag level-runs --results $R --renumber $W/rc/predictions \
  --set level_run_height_ratio=1.2 --set double_split=1
python benchmarks/real_ct.py --work $O/rc_off --tag level-runs-off --results $R --renumber $W/rc/predictions \
  --set level_run_height_ratio=0 --set double_split=0
python benchmarks/real_ct_perturbed.py --work $O/rcp --tag level-runs --results $R --renumber $W/rcp \
  --set level_run_height_ratio=1.2 --set double_split=1
python benchmarks/real_ct_perturbed.py --work $O/rcp_off --tag level-runs-off --results $R --renumber $W/rcp \
  --set level_run_height_ratio=0 --set double_split=0
