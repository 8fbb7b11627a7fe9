#!/bin/bash
# Reproduces table.md: python 3.11 venv of the README, 2 CPU cores, about 5 minutes. WORK is deleted first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../../.." && pwd)
WORK=${1:-/tmp/disc_evidence}; DATA=${VERTEBRAFORMER_REAL_DATA:-$REPO/../shared/data/real}
export nnUNet_compile=f
rm -rf "$WORK"; mkdir -p "$WORK/in"; cd "$WORK"
# 36 phantoms of the three scanner styles the built-in model never saw (seed 7)
vertebraformer phantoms sim --seed 7 --sources verse --cases-per-source 1 --extra-style lowdose \
  --extra-style thickslice --extra-style hushift --extra-cases 12 --quiet
for st in lowdose thickslice hushift; do ln -s "$WORK"/sim/extra_$st/*.nii.gz in/; done
python -c "
from pathlib import Path
from vertebraformer_nn.demo.reference import truth_reference
truth_reference(Path('sim'), ['extra_lowdose', 'extra_thickslice', 'extra_hushift'], Path('ref'))"
vertebraformer predict -i in -o pred -device cpu --disable_progress_bar --no_preview > predict.log 2>&1
vertebraformer evaluate -ref ref -pred pred -o eval.json --quiet
python "$REPO/benchmarks/real_ct.py" --work real --tag disc-evidence --cases verse014 tptbox --results real \
  -device cpu > real.log 2>&1
python "$HERE/disc_evidence.py" --cases in --pred pred --ref ref \
  --real "$DATA/verse_sub-verse014/sub-verse014_ct.nii.gz" real/predictions/verse014.nii.gz \
         "$DATA/verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz" \
  --real "$DATA/tptbox_sample_ct/sub-ct_label-22_ct.nii.gz" real/predictions/tptbox.nii.gz \
         "$DATA/tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz" 2>/dev/null | tee "$HERE/table.md"
