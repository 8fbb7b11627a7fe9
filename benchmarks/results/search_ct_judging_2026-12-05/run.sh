#!/bin/bash
# determine-postprocessing's lesion search with and without the candidates judged on the CT, on the quick
# protocol's fold-0 VertebraFormer model (fine and coarse checkpoints copied, its 17 validation cases, 5 of them
# lesion-annotated). "before": main at 39dbd50 (a git worktree), "after": the working tree. The validation cases'
# probabilities are predicted once (the first run) and reused by the others.
set -euo pipefail
# run from the repository root with the venv active; ~1 min on 2 cores (the first run predicts 17 cases)
export nnUNet_compile=f
Q=${Q:-/tmp/vf_protocol_q7}; W=${W:-/tmp/search_ct_judging}; OLD=${OLD:-$W/main_39dbd50}; NEW=${NEW:-$PWD}
[ -d $OLD ] || git worktree add --detach $OLD 39dbd50
export nnUNet_raw=$Q/nnUNet_raw nnUNet_preprocessed=$Q/nnUNet_preprocessed nnUNet_results=$W/results
src=$Q/nnUNet_results/Dataset590_MultiSpine
for c in 3d_fullres 3d_lowres; do d=VertebraFormerTrainer_budget__VertebraFormerCPUPlans__$c
  mkdir -p $W/results/Dataset590_MultiSpine/$d/fold_0
  cp $src/$d/{plans,dataset,dataset_fingerprint}.json $W/results/Dataset590_MultiSpine/$d/
  cp $src/$d/fold_0/checkpoint_final.pth $W/results/Dataset590_MultiSpine/$d/fold_0/
done
M=$W/results/Dataset590_MultiSpine/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres
names="lesion_candidate_floor lesion_smoothing_mm lesion_split_ratio lesion_extent_fraction lesion_score lesion_min_volume_mm3 lesion_threshold"
for arm in after before; do
  tree=$NEW; [ $arm = before ] && tree=$OLD
  (cd $tree && python -m vertebraformer_nn determine-postprocessing -m $M -f 0 -device cpu --parameters $names) \
    > $W/$arm.log 2>&1
  cp $M/postprocessing.json $W/postprocessing_$arm.json
done
python - $W <<'PY' | tee benchmarks/results/search_ct_judging_2026-12-05/table.md
import json, sys
W = sys.argv[1]
runs = {arm: json.load(open(f"{W}/postprocessing_{arm}.json"))["determined"] for arm in ("before", "after")}
print("| parameter | value | score before | score after | chosen before | chosen after |")
print("|---|---|---|---|---|---|")
for b, a in zip(runs["before"]["steps"], runs["after"]["steps"]):
    for rb, ra in zip(b["candidates"], a["candidates"]):
        print(f"| {b['parameter']} ({b['criterion']}) | {rb['value']} | {rb['score']} | {ra['score']} | "
              f"{b['chosen']} | {a['chosen']} |")
PY
