# the from-scratch model with the disc head: its own post-processing search (fold 0, with the shipped coarse stage),
# packaged like the built-in one, then the numbering inputs captured on real CT and phantoms
set -e
export nnUNet_compile=f
. /work/main/.venv/bin/activate
export nnUNet_raw=/tmp/bw/raw nnUNet_preprocessed=/tmp/bd/pre nnUNet_results=/tmp/bd3/results
B=/work/main/vertebraformer_nn/builtin_model
R=/tmp/bd3/results/Dataset599_MultiSpine
M=$R/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
[ -e $R/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres ] || ln -s $B/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres $R/
date; echo determine-postprocessing
vertebraformer determine-postprocessing -m $M -f 0 -device cpu > /tmp/bd3/dp.log 2>&1
rm -rf /tmp/bd3/pkg; mkdir -p /tmp/bd3/pkg
cd /work/main && python tools/package_builtin_model.py --model $M -f 0 --into /tmp/bd3/pkg
P=/tmp/bd3/pkg/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
export CAPDIR=/tmp/cap/s
for s in real lowdose thickslice; do
  case $s in real) IN=/tmp/tta/input;; *) IN=/tmp/s7/P/extra_$s;; esac
  date; echo $s
  python /tmp/cap/capture3.py $IN /tmp/bd3/pred_$s -m $P -f 0 > /tmp/bd3/cap_$s.log 2>&1
done
date; echo DONE
