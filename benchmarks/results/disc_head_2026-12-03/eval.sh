# package the fine-tuned model like the built-in one, then capture the numbering inputs on real CT and phantoms
set -e
export nnUNet_compile=f
. /work/main/.venv/bin/activate
B=/work/main/vertebraformer_nn/builtin_model
R=/tmp/bd2/results/Dataset599_MultiSpine
M=$R/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
cp $B/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/postprocessing.json $M/
[ -e $R/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres ] || ln -s $B/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres $R/
rm -rf /tmp/bd2/pkg; mkdir -p /tmp/bd2/pkg
cd /work/main && python tools/package_builtin_model.py --model $M -f 0 --into /tmp/bd2/pkg
P=/tmp/bd2/pkg/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
ls -la $P $P/fold_0
export CAPDIR=/tmp/cap/r
for s in real lowdose thickslice; do
  case $s in real) IN=/tmp/tta/input;; *) IN=/tmp/s7/P/extra_$s;; esac
  date; echo $s
  python /tmp/cap/capture3.py $IN /tmp/bd2/pred_$s -m $P -f 0 > /tmp/bd2/cap_$s.log 2>&1
done
date; echo DONE
