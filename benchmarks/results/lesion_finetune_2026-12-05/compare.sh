#!/bin/bash
# arms against the built-in model: paired over the 36 unseen phantoms and over the quick protocol's 35 test cases
# (seed 1), then which lesions each arm's candidates find (missed_lesions.py --all of lesion_extent_2026-12-05)
. /work/main/.venv/bin/activate
cd /work/main
S=/tmp/s18; H=/tmp/held_out; T=/tmp/tta; Q=/tmp/vf_protocol_q7
ev() { echo $S/eval_$1_hs2.json,$S/eval_$1_ld4.json,$S/eval_$1_ld0.json; }
for pair in "A builtin" "B builtin" "C builtin" "B A"; do set -- $pair
  python benchmarks/paired_evaluations.py $(ev $1) $(ev $2) --name-a "36 unseen, $1" --name-b $2
  python benchmarks/paired_evaluations.py $S/eval_$1_proto.json $S/eval_$2_proto.json --name-a "protocol cases, $1" --name-b $2
done > $S/paired.txt
for arm in builtin A B C; do mkdir -p $S/m_$arm
  for s in hs2 ld4 ld0 proto; do ln -sfn $S/pred_${arm}_$s $S/m_$arm/now_$s; done
  echo "== $arm, 36 unseen phantoms"
  python benchmarks/results/lesion_extent_2026-12-05/missed_lesions.py --all $S/m_$arm \
    hs2:$H/s2/extra_hushift:.nii.gz:$H/hs2_ref:$H/s2/ground_truth/index.json \
    ld4:$H/s4/extra_lowdose:.nii.gz:$H/ld4_ref:$H/s4/ground_truth/index.json \
    ld0:$T/ld0/extra_lowdose:.nii.gz:$T/ld0_ref:$T/ld0/ground_truth/index.json
  echo "== $arm, quick protocol test cases"
  python benchmarks/results/lesion_extent_2026-12-05/missed_lesions.py --all $S/m_$arm \
    proto:$S/proto_in:_0000.nii.gz:$Q/reference:$Q/SIM/ground_truth/index.json
done > $S/lesions.txt
