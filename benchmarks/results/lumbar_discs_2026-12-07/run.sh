#!/bin/bash
# Do the CT's lumbar discs show where ct_discs does not read them (a pitch over 28 mm, slices over 2.5 mm)? No model:
# the reference masks stand in for the network's instances. The 12 unseen-style (lowdose) phantoms of seed 7, the
# randomisation ablation's and the built-in model's check set, with their complete truth, and the three labelled real
# CT. Run from anywhere (about 2 minutes on 2 cores, most of it drawing the phantoms); W is the work folder.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); MAIN=$(cd "$HERE/../../.." && pwd)
W=${W:-/tmp/lumbar_discs}
export VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-$MAIN/../shared/data/real}
mkdir -p $W
[ -f $W/SIM/ground_truth/index.json ] || vertebraformer phantoms $W/SIM --seed 7 --cases-per-source 12 \
  --extra-style lowdose --extra-cases 12 --quiet
[ -d $W/reference ] || python -c "from vertebraformer_nn.demo.reference import truth_reference; \
print(truth_reference('$W/SIM', 'extra_lowdose', '$W/reference'))"
python $HERE/dark_discs.py $W/SIM $W/reference $HERE/discs.txt $HERE/dark_discs.png
