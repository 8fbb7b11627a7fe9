#!/bin/bash
# Every true lesion of the two phantom sets the lesion records score (the 36 unseen-style phantoms of the 17th
# sitting and the quick protocol's 35 test cases of seed 1), found by an arm's candidates or not, with its kind and
# contrast (missed_lesions.py --all). One place for the sets' paths, shared by lesion_finetune_2026-12-05/compare.sh,
# retrain24_2026-12-05/run.sh and lesion_stem_2026-12-05/run.sh.
#   found_lesions.sh NAME PREFIX   (the arm's predictions in PREFIX_hs2, PREFIX_ld4, PREFIX_ld0, PREFIX_proto; run
#                                   from the repository root; S18 = where proto_in lies, default /tmp/s18)
set -uo pipefail
NAME=$1; PREFIX=$2
S=${S18:-/tmp/s18}; H=/tmp/held_out; T=/tmp/tta; Q=/tmp/vf_protocol_q7
HERE=$(cd "$(dirname "$0")" && pwd)
LINKS=$(mktemp -d); trap 'rm -rf "$LINKS"' EXIT
for s in hs2 ld4 ld0 proto; do ln -sfn "${PREFIX}_$s" "$LINKS/now_$s"; done
echo "== $NAME, 36 unseen phantoms"
python "$HERE/missed_lesions.py" --all "$LINKS" \
  hs2:$H/s2/extra_hushift:.nii.gz:$H/hs2_ref:$H/s2/ground_truth/index.json \
  ld4:$H/s4/extra_lowdose:.nii.gz:$H/ld4_ref:$H/s4/ground_truth/index.json \
  ld0:$T/ld0/extra_lowdose:.nii.gz:$T/ld0_ref:$T/ld0/ground_truth/index.json
echo "== $NAME, quick protocol test cases"
python "$HERE/missed_lesions.py" --all "$LINKS" \
  proto:$S/proto_in:_0000.nii.gz:$Q/reference:$Q/SIM/ground_truth/index.json
