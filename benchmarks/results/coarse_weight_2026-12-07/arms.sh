# The three coarse_level_weight arms of one test set (sourced by run.sh and run_builtin.sh; O: the output folder):
# the kept probabilities linked (perturbed variants left out), renumbered at 0 / 0.5 / 1, evaluated, each paired
# against 1.
arms() {  # NAME PREDICTIONS REFERENCE
  local s=$O/$1; mkdir -p $s; cp $2/prediction_args.json $s/
  local n x
  for n in $2/*_vfprobs.npz; do case $n in *__*) ;; *) ln -sf $(readlink -f $n) $s/;; esac; done
  for x in 0 0.5 1; do
    vertebraformer ensemble -i $s -o ${s}_$x --no_preview --disable_progress_bar --set coarse_level_weight=$x \
      > /dev/null 2>&1
    vertebraformer evaluate -ref $3 -pred ${s}_$x -o ${s}_$x.json --quiet > /dev/null 2>&1  # exit 1: variants
  done
  echo "== $1"
  for x in 0 0.5; do
    python benchmarks/paired_evaluations.py ${s}_$x.json ${s}_1.json --means --name-a "$1 $x" --name-b "$1 1" \
      | sed -n 1,3p
  done
}
