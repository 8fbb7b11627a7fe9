# both arms: the shipped coarse stage and postprocessing.json beside each, numbering inputs captured on real CT and
# the two unseen-style phantom sets, then vertebraformer evaluate on the phantoms
set -e
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=/work/shared/data/real
. /work/main/.venv/bin/activate
B=/work/main/vertebraformer_nn/builtin_model
R=/tmp/ab/results/Dataset599_MultiSpine
cd /work/main
for arm in ${ARMS:-nohead head}; do
  case $arm in nohead) plans=VertebraFormerCPUPlans_nohead;; head) plans=VertebraFormerCPUPlans;; esac
  M=$R/VertebraFormerTrainer_budget__${plans}__3d_fullres
  cp $B/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/postprocessing.json $M/
  [ -e $R/VertebraFormerTrainer_budget__${plans}__3d_lowres ] || ln -s $B/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_lowres $R/VertebraFormerTrainer_budget__${plans}__3d_lowres
  export CAPDIR=/tmp/cap/$arm; mkdir -p $CAPDIR
  for s in real lowdose thickslice; do
    case $s in real) IN=/tmp/rc/input;; lowdose) IN=/tmp/ab/demo/SIM/extra_lowdose;; thickslice) IN=/tmp/ab/P/extra_thickslice;; esac
    date; echo $arm $s
    python benchmarks/results/disc_head_2026-12-03/capture3.py $IN /tmp/ab/pred_${arm}_$s -m $M -f 0 > /tmp/ab/cap_${arm}_$s.log 2>&1
  done
  vertebraformer evaluate -ref /tmp/ab/demo/reference/unseen_lowdose -pred /tmp/ab/pred_${arm}_lowdose -o /tmp/ab/eval_${arm}_lowdose.json --quiet > /tmp/ab/eval_${arm}_lowdose.txt 2>&1 || true
  vertebraformer evaluate -ref /tmp/ab/ref_thickslice -pred /tmp/ab/pred_${arm}_thickslice -o /tmp/ab/eval_${arm}_thickslice.json --quiet > /tmp/ab/eval_${arm}_thickslice.txt 2>&1 || true
  mkdir -p /tmp/ab/rc_$arm; ln -sfn /tmp/rc/input /tmp/ab/rc_$arm/input; rm -rf /tmp/ab/rc_$arm/predictions; ln -sfn /tmp/ab/pred_${arm}_real /tmp/ab/rc_$arm/predictions
done
date; echo EVAL DONE
