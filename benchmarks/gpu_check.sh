#!/bin/bash
# The checks only a GPU can make, in one run of about 8 minutes. Training on CUDA ran once on an H100 (README,
# Limits); what follows had not run on a GPU by 2026-12-05:
#   1. the built-in model on the real CT cases with -device cuda: the GPU default (test-time mirroring on),
#      then --disable_tta, each scored as on the CPU (benchmarks/real_ct.py; the chest series is left out);
#   2. a DICOM series with --dicom-seg on CUDA;
#   3. the README's demo on the GPU (-device auto: GPU preset plans, training from random weights);
#   4. network speed on the GPU, our base preset against nnU-Net's default U-Net at the same 128^3 input.
# Needs the package installed (README) and a CUDA GPU; results go to OUT (logs, reports, predictions as tarballs).
#     bash benchmarks/gpu_check.sh OUT [DEMO_MINUTES]
set -u
OUT=$(mkdir -p "${1:?usage: gpu_check.sh OUT [DEMO_MINUTES]}" && cd "$1" && pwd)
MINUTES=${2:-4}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${VERTEBRAFORMER_REAL_DATA:-$REPO/../shared/data/real}
WORK=$(mktemp -d)
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
exec > >(tee -a "$OUT/log.txt") 2>&1
export nnUNet_compile=${nnUNet_compile:-f} PYTHONUNBUFFERED=1
cd "$WORK" || exit 2  # never the repository root: python -m must find the installed package
el "work folder $WORK"
nvidia-smi -L
python3 -c "import timm, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__)"
for tag in gpu-default gpu-notta; do
  extra=(); [ $tag = gpu-notta ] && extra=(--disable_tta)
  timeout 150 python3 "$REPO/benchmarks/real_ct.py" --work "$WORK/rc_$tag" --tag $tag --data "$DATA" \
    --cases verse014 tptbox example_ct --results "$WORK/reports" -device cuda "${extra[@]}" 2>&1 | grep -v "cases: "
  el "real CT $tag"
done
timeout 90 python3 -m vertebraformer_nn predict -i "$DATA/totalsegmentator/example_ct_dicom" -o "$WORK/dicom" \
  -device cuda --dicom-seg --disable_progress_bar 2>&1 | tail -4
el "DICOM series"
tar czf "$OUT/realct.tar.gz" reports rc_gpu-default/predictions rc_gpu-notta/predictions dicom 2>/dev/null
timeout $(( MINUTES * 60 + 90 )) python3 -m vertebraformer_nn demo -o "$WORK/demo" --minutes "$MINUTES" 2>&1 \
  | grep -v -E "it/s|s/it|cases: " | tail -60
el "demo"
find demo -type f \( -name "*.md" -o -name "*.json" -o -name "*.csv" -o -name "*.png" -o -name "*.txt" \) -size -5M \
  | grep -v -E "nnUNet_raw|nnUNet_preprocessed|/sim/" | tar czf "$OUT/demo.tar.gz" -T -
timeout 150 python3 "$REPO/benchmarks/network_speed.py" --patch 128 128 128 --preset base --device cuda 2>&1 \
  | tail -16 | tee "$OUT/speed.txt"
el end
