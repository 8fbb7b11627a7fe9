#!/bin/bash
# arms against the built-in model: paired over the 36 unseen phantoms and over the quick protocol's 35 test cases
# (seed 1), then which lesions each arm's candidates find (lesion_extent_2026-12-05/found_lesions.sh)
. /work/main/.venv/bin/activate
cd /work/main
S=/tmp/s18
ev() { echo $S/eval_$1_hs2.json,$S/eval_$1_ld4.json,$S/eval_$1_ld0.json; }
for pair in "A builtin" "B builtin" "C builtin" "B A"; do set -- $pair
  python benchmarks/paired_evaluations.py $(ev $1) $(ev $2) --name-a "36 unseen, $1" --name-b $2
  python benchmarks/paired_evaluations.py $S/eval_$1_proto.json $S/eval_$2_proto.json --name-a "protocol cases, $1" --name-b $2
done > $S/paired.txt
for arm in builtin A B C; do S18=$S bash benchmarks/results/lesion_extent_2026-12-05/found_lesions.sh $arm $S/pred_$arm; done > $S/lesions.txt
