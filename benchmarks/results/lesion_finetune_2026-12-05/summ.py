"""One line per evaluation JSON: id rate, Dice, binary Dice, lesion AP and candidate recall at IoU 0.1 / 0.3 (%)."""
import json, sys
for f in sys.argv[1:]:
    o = json.load(open(f))["summary"]["overall"]
    n, s, l = o["numbering"], o["segmentation"], o["lesions"]
    pct = lambda x: f"{100 * x['value']:.1f}"
    print(f"{f.split('/')[-1]:24s} id {pct(n['id_rate'])} dice {pct(s['dice'])} binary {pct(s['binary_dice'])} "
          f"AP@0.1 {pct(l['0.1']['ap'])} AP@0.3 {pct(l['0.3']['ap'])} candidate recall {pct(l['0.1']['candidate_recall'])}"
          f"/{pct(l['0.3']['candidate_recall'])} written {l['n_predicted']}")
