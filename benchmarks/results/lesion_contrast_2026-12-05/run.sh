#!/bin/bash
# Lesion candidates judged on the CT (lesion_ct_contrast, lesion_ct_band_mm; inference/lesion_contrast.py), on
# saved probabilities: no network runs. The sets and their saved probabilities are those of
# ../lesion_extent_2026-12-05/run.sh: chosen on the built-in model's predictions of 36 phantoms of unseen seeds and
# styles (hs2, ld4, ld0), checked on the quick protocol's fine-tuned networks (fold 0 and fold 5 test cases of
# ../2026-12-05_quick). Every arm has the lesion values of that record's "now" arm set explicitly. The ld0 set's
# probabilities are the built-in model's predictions of ../lesion_finetune_2026-12-05/run.sh ($L0; the same
# phantoms, model and code: their hs2 probabilities equal ../double_instances_2026-12-04's byte for byte). Run from
# the repository root with the venv active; ~15 min on 2 cores.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q7}; T=${T:-/tmp/tta}; H=${H:-/tmp/held_out}; L0=${L0:-/tmp/s18/pred_builtin_ld0}
R=$PWD/benchmarks/results/lesion_contrast_2026-12-05; O=${O:-/tmp/lesion_contrast}
base="--set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=100"
arms=("off:$base --set lesion_ct_contrast=0 --set lesion_ct_band_mm=0"
      "weight:$base --set lesion_ct_contrast=1 --set lesion_ct_band_mm=0"
      "band:$base --set lesion_ct_contrast=0 --set lesion_ct_band_mm=3"
      "on:$base --set lesion_ct_contrast=1 --set lesion_ct_band_mm=3")
sets=("hs2:$H/hs2:$H/hs2_ref" "ld4:$H/ld4:$H/ld4_ref" "ld0:$L0:$T/ld0_ref"
      "fold0:$Q/predictions/vf_fold0:$Q/reference" "fold5:$Q/predictions/vf_fold5:$Q/reference")
for spec in "${sets[@]}"; do s=${spec%%:*}; rest=${spec#*:}; in=${rest%%:*}; ref=${rest#*:}
  mkdir -p $O/in_$s
  for f in $in/*_vfprobs.npz; do  # the protocol's perturbed variants (<case>__<kind><n>) left out
    case $(basename $f) in *__*) ;; *) ln -sf $f $O/in_$s/;; esac
  done
  for arm in "${arms[@]}"; do name=${arm%%:*}
    vertebraformer ensemble -i $O/in_$s -o $O/${name}_$s ${arm#*:} > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $O/${name}_$s -o $O/eval_${name}_$s.json --quiet --skip-missing \
      > /dev/null 2>&1 || true
  done
done
{ for name in weight band on; do
    python benchmarks/paired_evaluations.py $O/eval_${name}_hs2.json,$O/eval_${name}_ld4.json,$O/eval_${name}_ld0.json \
      $O/eval_off_hs2.json,$O/eval_off_ld4.json,$O/eval_off_ld0.json --name-a "36 unseen, $name" --name-b off | grep lesion
    for fold in 0 5; do
      python benchmarks/paired_evaluations.py $O/eval_${name}_fold$fold.json $O/eval_off_fold$fold.json \
        --name-a "protocol fold $fold, $name" --name-b off | grep lesion
    done
  done; } | tee $R/paired.txt
# the real CT (no lesion reference): the built-in model's saved probabilities of ../bone_edge_2026-12-05/run.sh
# ($REAL) renumbered with CT judging off and on; what is written and how the candidates rank
REAL=${REAL:-/tmp/s20/rc_builtin/predictions}
for name in off on; do arm=; [ $name = off ] && arm="--set lesion_ct_contrast=0 --set lesion_ct_band_mm=0"
  python benchmarks/real_ct.py --work $O/real_$name --tag lesion-contrast-$name --results $O/reports \
    --renumber $REAL $arm > $O/real_$name.log 2>&1
done
python - $O <<'PY' | tee $R/real_ct_lesions.txt
import glob, json, os, sys
O = sys.argv[1]
for path in sorted(glob.glob(f"{O}/real_off/predictions/*.json")):
    case = os.path.basename(path)[:-5]
    if case.endswith("_ctd"):
        continue
    for name in ("off", "on"):
        r = json.load(open(f"{O}/real_{name}/predictions/{case}.json"))
        top = "; ".join(f"{c['level'] or '-'} {c['volume_ml']:.2f} ml peak {c['peak_probability']:.2f} score "
                        f"{c['score']:.2f} contrast {c['contrast_hu']} HU" for c in r["lesion_candidates"][:4])
        print(f"{case:11s} {name:3s}: {len(r['lesions'])} written, {len(r['lesion_candidates'])} candidates; "
              f"first four: {top}")
PY
python $R/pictures.py $O $(dirname $REAL)/input $R/real_ct_candidates.png
python $R/ap_table.py $O | tee $R/ap_table.md
