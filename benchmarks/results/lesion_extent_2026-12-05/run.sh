#!/bin/bash
# Lesion candidates' extent (lesion_extent_fraction) and smallest size (lesion_min_volume_mm3) re-chosen on saved
# probabilities: no network runs. Chosen on the built-in model's predictions of 36 phantoms of unseen seeds and styles
# (hushift seed 2 and lowdose seed 4: ../double_instances_2026-12-04/held_out.sh, $H; lowdose seed 0:
# ../end_drop_2026-12-04/run.sh, $W and $T), then checked on the quick protocol's fine-tuned networks (fold 0 and fold
# 5 test cases of ../2026-12-05_quick, $Q = its --work). Run from the repository root with the venv active; ~15 min.
set -euo pipefail
export nnUNet_compile=f VERTEBRAFORMER_REAL_DATA=${VERTEBRAFORMER_REAL_DATA:-../shared/data/real}
Q=${Q:-/tmp/vf_protocol_q7}; T=${T:-/tmp/tta}; W=${W:-/tmp/end_drop}; H=${H:-/tmp/held_out}
R=$PWD/benchmarks/results/lesion_extent_2026-12-05; O=${O:-/tmp/lesion_extent}
# arm: the values of the 2026-12-05 quick report (0.5, 30 mm3), each candidate value alone, the new pair (0.2, 100)
arms=("before:--set lesion_extent_fraction=0.5 --set lesion_min_volume_mm3=30"
      "ext0.3:--set lesion_extent_fraction=0.3 --set lesion_min_volume_mm3=30"
      "ext0.2:--set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=30"
      "ext0.1:--set lesion_extent_fraction=0.1 --set lesion_candidate_floor=0.02 --set lesion_min_volume_mm3=30"
      "ext0.2_mv250:--set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=250"
      "now:--set lesion_extent_fraction=0.2 --set lesion_min_volume_mm3=100")
sets=("hs2:$H/hs2:$H/hs2_ref" "ld4:$H/ld4:$H/ld4_ref" "ld0:$W/ld0:$T/ld0_ref"
      "fold0:$Q/predictions/vf_fold0:$Q/reference" "fold5:$Q/predictions/vf_fold5:$Q/reference")
for spec in "${sets[@]}"; do s=${spec%%:*}; rest=${spec#*:}; in=${rest%%:*}; ref=${rest#*:}
  mkdir -p $O/in_$s
  for f in $in/*_vfprobs.npz; do  # the protocol's perturbed variants (<case>__<kind><n>) left out
    case $(basename $f) in *__*) ;; *) ln -sf $f $O/in_$s/;; esac
  done
  for arm in "${arms[@]}"; do name=${arm%%:*}
    vertebraformer ensemble -i $O/in_$s -o $O/${name}_$s ${arm#*:} > /dev/null 2>&1
    # the protocol's reference holds every phantom of its seed; those without a prediction here are skipped
    vertebraformer evaluate -ref $ref -pred $O/${name}_$s -o $O/eval_${name}_$s.json --quiet --skip-missing \
      > /dev/null 2>&1 || true
  done
done
{ for arm in "${arms[@]:1}"; do name=${arm%%:*}
    python benchmarks/paired_evaluations.py $O/eval_${name}_hs2.json,$O/eval_${name}_ld4.json,$O/eval_${name}_ld0.json \
      $O/eval_before_hs2.json,$O/eval_before_ld4.json,$O/eval_before_ld0.json --name-a "36 unseen, $name" \
      --name-b before | grep lesion
  done
  for fold in 0 5; do for name in ext0.2 now; do
    python benchmarks/paired_evaluations.py $O/eval_${name}_fold$fold.json $O/eval_before_fold$fold.json \
      --name-a "protocol fold $fold, $name" --name-b before | grep lesion
  done; done; } | tee $R/paired.txt
# how large the extents are against the true lesions they overlap most (36 unseen phantoms)
python - $O $H $T <<'PY' | tee $R/extents.txt
import glob, os, sys
import cc3d, numpy as np, SimpleITK as sitk
O, H, T = sys.argv[1:]
refs = {"hs2": f"{H}/hs2_ref", "ld4": f"{H}/ld4_ref", "ld0": f"{T}/ld0_ref"}
for arm in ("before", "ext0.3", "ext0.2", "ext0.1", "now"):
    rows = []
    for s, ref in refs.items():
        for path in sorted(glob.glob(f"{O}/{arm}_{s}/*_lesion_candidates.nii.gz")):
            truth = f"{ref}/{os.path.basename(path).replace('_lesion_candidates', '_lesion')}"
            if not os.path.exists(truth):
                continue
            lesions = cc3d.connected_components(sitk.GetArrayFromImage(sitk.ReadImage(truth)) > 0)
            cands = sitk.GetArrayFromImage(sitk.ReadImage(path))
            for k in range(1, int(lesions.max()) + 1):
                m = lesions == k
                ids, n = np.unique(cands[m], return_counts=True)
                if not (ids > 0).any():
                    continue  # a lesion no candidate touches
                best = cands == ids[ids > 0][np.argmax(n[ids > 0])]
                rows.append((best.sum() / m.sum(), (m & best).sum() / (m | best).sum()))
    r = np.array(rows)
    print(f"{arm:8s} {len(r)} true lesions touched by a candidate: candidate/true volume median "
          f"{np.median(r[:, 0]):.2f}, IoU median {np.median(r[:, 1]):.2f}, IoU >= 0.3 for {int((r[:, 1] >= 0.3).sum())}")
PY
# which true lesions no candidate finds: lytic or blastic, how large (the arm "now")
{ echo "36 unseen phantoms, built-in model:"
  python $R/missed_lesions.py $O hs2:$H/s2/extra_hushift:.nii.gz:$H/hs2_ref:$H/s2/ground_truth/index.json \
    ld4:$H/s4/extra_lowdose:.nii.gz:$H/ld4_ref:$H/s4/ground_truth/index.json \
    ld0:$T/ld0/extra_lowdose:.nii.gz:$T/ld0_ref:$T/ld0/ground_truth/index.json
  echo "quick protocol test cases, its fine-tuned networks (verse507 is a test case of both folds):"
  python $R/missed_lesions.py $O \
    fold0:$Q/inputs/fold0:_0000.nii.gz:$Q/reference:$Q/SIM/ground_truth/index.json \
    fold5:$Q/inputs/fold5:_0000.nii.gz:$Q/reference:$Q/SIM/ground_truth/index.json
} | tee $R/missed.txt
# the written lesions' threshold (the operating point; the AP does not see it), with the extents above, on the 36
for spec in "${sets[@]:0:3}"; do s=${spec%%:*}; ref=${spec##*:}
  for t in 0.5 0.7 0.8 0.9; do
    vertebraformer ensemble -i $O/in_$s -o $O/t${t}_$s --set lesion_extent_fraction=0.2 \
      --set lesion_min_volume_mm3=100 --set lesion_threshold=$t > /dev/null 2>&1
    vertebraformer evaluate -ref $ref -pred $O/t${t}_$s -o $O/eval_t${t}_$s.json --quiet > /dev/null
  done
done
python $R/written_f1.py $O 0.5 0.7 0.8 0.9 | tee $R/thresholds.txt
# the real CT, renumbered from the saved probabilities of ../end_drop_2026-12-04/run.sh
python benchmarks/real_ct.py --work $O/rc --tag lesion-extent --results $R --renumber $W/rc/predictions
