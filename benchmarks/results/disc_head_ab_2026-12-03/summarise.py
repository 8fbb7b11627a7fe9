import json
from pathlib import Path

HERE = Path(__file__).resolve().parent  # eval_<arm>_<style>.json, copied here from /tmp/ab by hand
def v(x):
    if isinstance(x, dict):
        val = x.get("value"); ci = x.get("ci")
        return f"{100*val:.1f} [{100*ci[0]:.1f}, {100*ci[1]:.1f}]" if ci else f"{100*val:.1f}"
    return f"{100*x:.1f}" if isinstance(x, float) else str(x)
print("| arm | set | Dice | spine Dice | id rate | every vertebra right | lesion AP@0.1 | lesion AP@0.3 | lesion recall@0.1 |")
print("|---|---|---|---|---|---|---|---|---|")
for arm in ("nohead", "head"):
    for s in ("lowdose", "thickslice"):
        try: o = json.loads((HERE / f"eval_{arm}_{s}.json").read_text())["summary"]["overall"]
        except Exception as e: print(arm, s, "missing", e); continue
        seg, num, les = o["segmentation"], o["numbering"], o["lesions"]
        print(f"| {arm} | {s} | {v(seg['dice'])} | {v(seg['binary_dice'])} | {v(num['id_rate'])} | {v(num['all_correct'])} | "
              f"{v(les['0.1']['ap'])} | {v(les['0.3']['ap'])} | {v(les['0.1']['recall'])} |")
