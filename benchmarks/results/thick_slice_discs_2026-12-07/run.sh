#!/bin/bash
# Discs read from 3 mm slices of a quiet CT (ct_discs.MAX_SPACING_MM 3.0, THICK_MAX_NOISE_HU 28) against 2.5 mm as
# before, on saved probabilities: no network runs but the built-in model's predictions of the phantoms. Run from the
# repository root with the venv active (about 20 minutes on 2 cores once the protocol folders exist).
# W: quick-protocol work folders whose predictions kept their probabilities (2026-12-07_quick_1520 and the 12:19 run
# before it, their READMEs' command); O: 72 phantoms of seeds 13 and 21 (12 VerSe-style, 12 lowdose, 12 hushift
# each), predicted here by the built-in model.
set -uo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
R=$PWD/benchmarks/results/thick_slice_discs_2026-12-07; W=${W:-/tmp/s37/proto /tmp/s36/full}; O=${O:-/tmp/thick_discs}
mkdir -p $O
# the same renumbering with the old gate: slices over 2.5 mm never read
old() { python -c "import sys; import vertebraformer_nn.inference.ct_discs as C; C.MAX_SPACING_MM = 2.5
from vertebraformer_nn.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
pair() {  # NAME PREDICTIONS REFERENCE
  local s=$O/$1; mkdir -p $s; cp $2/prediction_args.json $s/
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $s/;; esac; done
  vertebraformer ensemble -i $s -o ${s}_new --no_preview --disable_progress_bar > /dev/null 2>&1
  old ensemble -i $s -o ${s}_old --no_preview --disable_progress_bar > /dev/null 2>&1
  for arm in new old; do
    vertebraformer evaluate -ref $3 -pred ${s}_$arm -o ${s}_$arm.json --quiet > /dev/null 2>&1  # exit 1: variants
  done
  echo "== $1"
  python benchmarks/paired_evaluations.py ${s}_new.json ${s}_old.json --means --name-a "$1 new" --name-b "$1 old" \
    | sed -n 1,4p
}
k=0
for w in $W; do k=$((k + 1)); for f in 0 5; do
  pair run${k}_style$f $w/in_style/predictions/vf_fold$f $w/in_style/reference_folds/fold$f
  pair run${k}_randomised$f $w/predictions/vf_fold$f $w/reference_variants/fold$f
done; done > $R/results.txt
for seed in 13 21; do
  p=$O/p$seed
  [ -d $p ] || vertebraformer phantoms $p --seed $seed --sources verse --cases-per-source 12 --randomise 0 \
    --extra-style lowdose --extra-style hushift --extra-cases 12 --quiet
  mkdir -p $p/verse_flat; find $p/verse -path "*rawdata*" -name "*_ct.nii.gz" -exec ln -sf {} $p/verse_flat/ \;
  for src in verse extra_lowdose extra_hushift; do
    in=$src; [ $src = verse ] && in=verse_flat
    [ -d $O/ref${seed}_$src ] || python -c "from pathlib import Path; from vertebraformer_nn.demo.reference import \
truth_reference; truth_reference(Path('$p'), '$src', Path('$O/ref${seed}_$src'))"
    [ -d $O/pred${seed}_$src ] || vertebraformer predict -i $p/$in -o $O/pred${seed}_$src --save_probabilities \
      --no_preview --disable_progress_bar > /dev/null 2>&1
    pair builtin_seed${seed}_$src $O/pred${seed}_$src $O/ref${seed}_$src
  done
done >> $R/results.txt
# which cases the gate reads now: 3 mm slices, read (quiet) or left for their noise
python - "$O" <<'PY' | tee -a $R/results.txt
import glob, json, sys
for new in sorted(glob.glob(f"{sys.argv[1]}/*_new")):
    read = noisy = 0
    for f in glob.glob(f"{new}/*.json"):
        if f.endswith(("_ctd.json", "prediction_args.json")):
            continue
        if any("more than 2.5)" in n for n in json.load(open(f.replace("_new/", "_old/")))["notes"]):
            left = any("noise" in n for n in json.load(open(f))["notes"])
            noisy, read = noisy + left, read + (not left)
    print(f"{new.split('/')[-1][:-4]}: 3 mm slices read now {read}, left for their noise {noisy}")
PY
# the real CT with the built-in model: the same levels and Dice (example_ct's 3 mm slices are now read: 2 discs)
[ -d $O/rc ] || python benchmarks/real_ct.py --work $O/rc --tag first --results $O --save_probabilities > /dev/null
python benchmarks/real_ct.py --work $O/rc_new --tag new --results $O --renumber $O/rc/predictions 2>/dev/null \
  | grep Dice | tee -a $R/results.txt
