#!/bin/bash
# double_run_ratio (an instance 1.2 x its neighbours whose voxels' levels run in the spine's order may hold two
# vertebrae) against 0 (off), on saved probabilities: no network runs. Run from the repository root with the venv
# active (13 minutes on 2 cores once the folders exist).
# W: quick-protocol work folders whose predictions kept their probabilities (their records' READMEs give the
# commands: 2026-12-07_quick_2042 and the three runs before it); P: the built-in model's predictions (kept
# probabilities) of 72 phantoms of seeds 13 and 21 and their references, made by thick_slice_discs_2026-12-07/run.sh.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/double_runs_2026-12-07; O=${O:-/tmp/double_runs}; P=${P:-/tmp/thick_discs}
W=${W:-/tmp/s39/proto /tmp/s38/proto /tmp/s37/proto /tmp/s36/full}; VALUE=${VALUE:-1.2}
mkdir -p $O
pair() {  # NAME PREDICTIONS REFERENCE
  local s=$O/$1; mkdir -p $s; cp $2/prediction_args.json $s/
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $s/;; esac; done
  for arm in on off; do
    local value=$VALUE; [ $arm = off ] && value=0
    vertebraformer ensemble -i $s -o ${s}_$arm --no_preview --disable_progress_bar --set double_run_ratio=$value \
      > /dev/null 2>&1
    vertebraformer evaluate -ref $3 -pred ${s}_$arm -o ${s}_$arm.json --quiet > /dev/null 2>&1  # exit 1: variants
  done
  echo "== $1"
  python benchmarks/paired_evaluations.py ${s}_on.json ${s}_off.json --means --name-a "$1 $VALUE" \
    --name-b "$1 off" | sed -n 1,4p
}
k=0
for w in $W; do k=$((k + 1)); for f in 0 5; do
  pair run${k}_style$f $w/in_style/predictions/vf_fold$f $w/in_style/reference_folds/fold$f
  pair run${k}_randomised$f $w/predictions/vf_fold$f $w/reference_variants/fold$f
done; done > $R/results.txt
for seed in 13 21; do for src in verse extra_lowdose extra_hushift; do
  pair builtin_seed${seed}_$src $P/pred${seed}_$src $P/ref${seed}_$src
done; done >> $R/results.txt
# the instances the rule let hold two vertebrae, and whether the decoder used it (a level skipped beside one)
python - "$O" <<'PY' | tee -a $R/results.txt
import glob, json, sys
changed = 0
for on in sorted(glob.glob(f"{sys.argv[1]}/*_on")):
    for f in sorted(glob.glob(f"{on}/*.json")):
        if f.endswith(("_ctd.json", "prediction_args.json")):
            continue
        a, b = json.load(open(f)), json.load(open(f.replace("_on/", "_off/")))
        names = lambda r: [v["name"] for v in r["vertebrae"]]
        if names(a) != names(b):
            changed += 1
            print(f"{on.split('/')[-1][:-3]} {f.split('/')[-1][:-5]}: {' '.join(names(b))} -> {' '.join(names(a))}")
print(f"{changed} case(s) numbered differently")
PY
# the real CT with the built-in model, renumbered from its saved probabilities both ways
for arm in on off; do
  value=$VALUE; [ $arm = off ] && value=0
  echo "== real CT, double_run_ratio $value"
  python benchmarks/real_ct.py --work $O/rc_$arm --tag $arm --results $O --renumber $P/rc/predictions \
    --set double_run_ratio=$value 2>/dev/null | grep Dice
done >> $R/results.txt
