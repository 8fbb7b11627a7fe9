# data and plans of the A/B: the built-in recipe's data (the demo's steps up to plan-and-preprocess, seed 7, 12 cases per
# source; the tiny trainer only so that the demo stops quickly), the same plans without the disc head, and 12
# thick-slice phantoms of seed 7 with their truth reference (the demo writes the lowdose ones)
set -e
export nnUNet_compile=f
. /work/main/.venv/bin/activate
vertebraformer demo -o /tmp/ab/demo --minutes 85 --cases-per-source 12 --max-folds 1 --seed 7 -tr VertebraFormerTrainer_tiny --start scratch
python - <<'PY'
import json
folder = "/tmp/ab/demo/nnUNet_preprocessed/Dataset599_MultiSpine/"
plans = json.load(open(folder + "VertebraFormerCPUPlans.json"))
plans["plans_name"] = "VertebraFormerCPUPlans_nohead"  # same data_identifier: the same preprocessed data
plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["use_boundary_head"] = False
json.dump(plans, open(folder + "VertebraFormerCPUPlans_nohead.json", "w"), indent=2)
PY
vertebraformer phantoms /tmp/ab/P --seed 7 --sources verse --extra-style thickslice --extra-cases 12 --quiet
python -c "from pathlib import Path; from vertebraformer_nn.demo.reference import truth_reference; truth_reference(Path('/tmp/ab/P'), 'extra_thickslice', Path('/tmp/ab/ref_thickslice'))"
# score2.py reads the phantom references from /tmp/s7/ref_extra_<style>
mkdir -p /tmp/s7 && ln -sfn /tmp/ab/demo/reference/unseen_lowdose /tmp/s7/ref_extra_lowdose && ln -sfn /tmp/ab/ref_thickslice /tmp/s7/ref_extra_thickslice
# the real cases, linked under the names benchmarks/real_ct.py gives them
cd /work/main && python -c "
import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; import real_ct
real_ct.link_inputs(Path('/work/shared/data/real'), Path('/tmp/rc/input'), real_ct.CASES)"
