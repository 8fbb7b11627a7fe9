#!/bin/bash
# The built-in model's numbering decoder against the per-voxel argmax, and the wide-contact merge switched off
# (merge_contact_ratio 3.0), on the same saved probabilities: phantoms of an unseen seed and style, and the real CT.
# Needs: a finished quick protocol work folder (python benchmarks/multispine_protocol.py --quick --work $Q), the
# 24 unseen-style phantoms with their truth (finer_grid_2026-12-04/run.sh makes them: $T/ld0, $T/ts7, *_ref) and
# $VERTEBRAFORMER_REAL_DATA. Numbering only: the network runs once per case.
set -euo pipefail
Q=${Q:-/tmp/vf_protocol_q6}; T=${T:-/tmp/tta}; W=${W:-/tmp/decoder_vs_argmax}; B=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p $W/seed1_in
# the quick protocol's clean test cases of folds 0 and 5 (35 distinct cases of seed 1; the built-in model saw seed 7)
for f in 0 5; do for x in $Q/inputs/fold$f/*_0000.nii.gz; do
  case $(basename $x) in *__*) ;; *) ln -sf "$(readlink -f $x)" $W/seed1_in/;; esac; done; done
vertebraformer predict -i $W/seed1_in -o $W/seed1_decoder --save_probabilities
vertebraformer predict -i $T/ld0 -o $W/ld0_decoder --save_probabilities
vertebraformer predict -i $T/ts7 -o $W/ts7_decoder --save_probabilities
for s in seed1 ld0 ts7; do
  vertebraformer ensemble -i $W/${s}_decoder -o $W/${s}_argmax --numbering argmax
  vertebraformer ensemble -i $W/${s}_decoder -o $W/${s}_nomerge --set merge_contact_ratio=3.0
done
for v in decoder argmax nomerge; do
  vertebraformer evaluate -ref $Q/reference -pred $W/seed1_$v -o $W/eval_seed1_$v.json --quiet --skip-missing || true
  for s in ld0 ts7; do vertebraformer evaluate -ref $T/${s}_ref -pred $W/${s}_$v -o $W/eval_${s}_$v.json --quiet; done
done
# real CT: the four cases, then the ten test-time variants of the three with a reference
python $B/benchmarks/real_ct.py --work $W/rc --tag builtin-decoder --results $W --save_probabilities
python $B/benchmarks/real_ct.py --work $W/rc_argmax --tag builtin-argmax --results $W --renumber $W/rc/predictions \
  --numbering argmax
python $B/benchmarks/real_ct.py --work $W/rc_nomerge --tag builtin-nomerge --results $W --renumber $W/rc/predictions \
  --set merge_contact_ratio=3.0
python $B/benchmarks/real_ct_perturbed.py --work $W/rcp --tag builtin --results $W --save_probabilities
python $B/benchmarks/real_ct_perturbed.py --work $W/rcp_nomerge --tag builtin-nomerge --results $W --renumber $W/rcp \
  --set merge_contact_ratio=3.0
