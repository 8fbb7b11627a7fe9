"""Tables of the randomisation ablation: training per arm, real CT (original and ten variants), unseen phantoms."""
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

A = Path(os.environ.get("W", "/tmp/s30")) / "abl"  # run.sh's work folder
R = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent)
ARMS = [("all", "VertebraFormerTrainer_budget", "every group (the built-in model's trainer)"),
        ("all2", "VertebraFormerTrainer_budget", "every group, a second run (run.sh step 4)"),
        ("none", "VertebraFormerTrainer_budget_noRandomisation", "no group"),
        ("noIntensity", "VertebraFormerTrainer_budget_noIntensityRandomisation", "without hu, contrast, bias"),
        ("noAcquisition", "VertebraFormerTrainer_budget_noAcquisitionRandomisation", "without noise, kernel, resolution"),
        ("noContent", "VertebraFormerTrainer_budget_noContentRandomisation", "without metal, fov"),
        ("none91", "VertebraFormerTrainer_budget_noRandomisation", "no group, 91 epochs (run.sh step 5)"),
        ("all91", "VertebraFormerTrainer_budget", "every group, 91 epochs (run.sh step 6)"),
        ("builtin", "VertebraFormerTrainer_budget", "every group, 91 epochs: the built-in model (its fine model)")]
#: the second run of `all` and the 91-epoch arms trained into their own results folders
RESULTS = {"all2": "nnUNet_results_rep", "none91": "nnUNet_results_full", "all91": "nnUNet_results_all91"}
#: trained elsewhere (no training log here): what the model card says
CARD = {"builtin": "91 | 53 | (model card: 4815 s on 2 CPU cores, 2026-12-02 phantoms)"}


def one(pattern):
    hits = sorted(R.glob(pattern))
    return json.load(open(hits[-1])) if hits else None


def training(arm, trainer):
    log = sorted((A / RESULTS.get(arm, "nnUNet_results") / "Dataset599_MultiSpine" / f"{trainer}__VertebraFormerCPUPlans__3d_fullres"
                  / "fold_0").glob("training_log*.txt"))
    text = log[-1].read_text() if log else ""
    epochs = len(re.findall(r"Epoch time", text))
    times = [float(t) for t in re.findall(r"Epoch time: ([\d.]+) s", text)]
    val = re.findall(r"val metrics: spine_dice ([\d.na]+), id_accuracy ([\d.na]+)", text)
    return epochs, (np.mean(times) if times else float("nan")), (" / ".join(val[-1]) if val else "-")


print("| arm | groups | epochs | s/epoch | last epoch val spine Dice / id accuracy |\n|---|---|---|---|---|")
for arm, tr, what in ARMS:
    if arm in CARD:
        print(f"| {arm} | {what} | {CARD[arm]} |")
        continue
    e, s, d = training(arm, tr)
    print(f"| {arm} | {what} | {e} | {s:.0f} | {d} |")

print("\n**Real CT, as they are** (binary spine Dice; levels right of the reference's; chest: levels written)\n")
print("| arm | verse014 | tptbox | example_ct | levels right (of 15) | chest |\n|---|---|---|---|---|---|")
for arm, tr, what in ARMS:
    rc = one(f"real_ct_2*_abl-{arm}.json")
    if rc is None:
        continue
    by = {c["case"]: c for c in rc}
    cells = []
    for case in ("verse014", "tptbox", "example_ct"):
        c = by[case]
        right = sum(l["right"] for l in c["levels"])
        cells.append(f"{c['dice']:.3f}, {right}/{len(c['levels'])}")
    total = sum(sum(l["right"] for l in by[c]["levels"]) for c in ("verse014", "tptbox", "example_ct"))
    chest = by.get("chest", {}).get("predicted", [])
    chest_s = f"{chest[0]}-{chest[-1]} ({len(chest)})" if chest else "none"
    print(f"| {arm} | " + " | ".join(cells) + f" | {total} | {chest_s} |")

print("\n**Real CT under the ten test-time variants** (mean binary spine Dice over the variants, [min, max]; levels "
      "right of 15: mean [min, max])\n")
print("| arm | verse014 | tptbox | example_ct | levels right |\n|---|---|---|---|---|")
for arm, tr, what in ARMS:
    rp = one(f"real_ct_perturbed_*_abl-{arm}.json")
    if rp is None:
        continue
    cells = []
    for case in ("verse014", "tptbox", "example_ct"):
        d = [c["dice"] for v in rp["results"].values() for c in v if c["case"] == case and c.get("dice") is not None]
        cells.append(f"{np.mean(d):.3f} [{min(d):.2f}, {max(d):.2f}]")
    lv = rp["summary"]["levels_right"]
    print(f"| {arm} | " + " | ".join(cells) + f" | {lv['mean']:.1f} [{lv['min']}, {lv['max']}] |")

print("\n**12 unseen-style phantoms** (lowdose, seed 7; `vertebraformer evaluate`, 95 % BCa intervals)\n")
print("| arm | spine Dice | Dice | id rate | every vertebra right |\n|---|---|---|---|---|")
for arm, tr, what in ARMS:
    f = A / f"pred_{arm}" / "unseen_eval.json"
    if not f.is_file():
        continue
    s = json.load(open(f))["summary"]["overall"]

    def cell(m):
        return f"{100 * m['value']:.1f} [{100 * m['ci'][0]:.1f}, {100 * m['ci'][1]:.1f}]"
    print(f"| {arm} | {cell(s['segmentation']['binary_dice'])} | {cell(s['segmentation']['dice'])} | "
          f"{cell(s['numbering']['id_rate'])} | {100 * s['numbering']['all_correct']['value']:.0f} % |")
