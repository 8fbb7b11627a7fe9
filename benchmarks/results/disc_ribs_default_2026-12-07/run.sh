#!/bin/bash
# ct_disc_rib_bearing_strength 8 (the built-in model's value: where the discs the CT shows were used, a vertebra with
# a rib of its own is thoracic) against 0 (the documented default until now), on the saved probabilities of four
# quick-protocol draws, whose models have no postprocessing.json and so take the defaults; no network runs. Run from
# the repository root with the venv active (about 10 minutes on 2 cores).
# W: quick-protocol work folders whose predictions kept their probabilities (records 2026-12-07_quick_2042 and the
# three runs before it give the commands).
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/disc_ribs_default_2026-12-07; O=${O:-/tmp/disc_ribs}
W=${W:-/tmp/s39/proto /tmp/s38/proto /tmp/s37/proto /tmp/s36/full}
mkdir -p $O
arms() {  # NAME PREDICTIONS REFERENCE
  local s=$O/$1 n x; mkdir -p $s; cp $2/prediction_args.json $s/
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $s/;; esac; done
  for x in 0 8; do
    vertebraformer ensemble -i $s -o ${s}_$x --no_preview --disable_progress_bar \
      --set ct_disc_rib_bearing_strength=$x > /dev/null 2>&1
    vertebraformer evaluate -ref $3 -pred ${s}_$x -o ${s}_$x.json --quiet > /dev/null 2>&1  # exit 1: variants
  done
  echo "== $1"
  python benchmarks/paired_evaluations.py ${s}_8.json ${s}_0.json --means --name-a "$1 8" --name-b "$1 0" | sed -n 1,3p
}
k=0
for w in $W; do k=$((k + 1)); for f in 0 5; do
  arms run${k}_style$f $w/in_style/predictions/vf_fold$f $w/in_style/reference_folds/fold$f
  arms run${k}_randomised$f $w/predictions/vf_fold$f $w/reference_variants/fold$f
done; done > $R/results.txt
# the cases numbered differently, each way
python - "$O" <<'PY' | tee -a $R/results.txt
import glob, json, sys
changed = 0
for on in sorted(glob.glob(f"{sys.argv[1]}/*_8")):
    ev = {x: json.load(open(f"{on[:-2]}_{x}.json"))["cases"] for x in ("0", "8")}
    for case in sorted(ev["8"]):
        a, b = (ev[x][case]["numbering"]["id_rate"] for x in ("8", "0"))
        if a != b:
            changed += 1
            print(f"{on.split('/')[-1][:-2]} {case}: id rate {b:.2f} -> {a:.2f}")
print(f"{changed} case(s) scored differently")
PY
