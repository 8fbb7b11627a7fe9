# Prototype of the 21st sitting, kept as run (how lesion_contrast.py's values were chosen; README 'How the values
# were chosen'). Reads ../lesion_extent_2026-12-05/run.sh's arm "now" in /tmp/lesion_extent; sys.path /tmp/s21 = this folder.
import json, sys, numpy as np
ev = {}
O = "/tmp/lesion_extent"
def nref_total(s, arm="now"):
    cs = json.load(open(f"{O}/eval_{arm}_{s}.json"))["cases"]
    tot = 0
    for c in cs.values():
        if c.get("status") == "ok" and c.get("lesions"):
            tot += c["lesions"]["thresholds"]["0.1"]["tp"] + c["lesions"]["thresholds"]["0.1"]["fn"]
    return tot
def ap(items, n, t):
    # items: (score, case, ref, iou); greedy in score order; one hit per ref
    items = sorted(items, key=lambda x: -x[0])
    used = set(); tp = []
    for sc, case, ref, iou in items:
        ok = iou >= t and ref and (case, ref) not in used
        if ok: used.add((case, ref))
        tp.append(ok)
    tp = np.array(tp, bool); ctp = np.cumsum(tp); prec = ctp / np.arange(1, len(tp) + 1); rec = ctp / n
    # AP: sum of precision at each TP / n (non-interpolated); interpolated version
    pi = np.maximum.accumulate(prec[::-1])[::-1]
    return float((pi[tp]).sum() / n) if n else float("nan")
if __name__ == "__main__":
    rows = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "cands_now.json"))
    groups = {"unseen36": ["hs2", "ld4", "ld0"], "fold0": ["fold0"], "fold5": ["fold5"]}
    import math
    for g, ss in groups.items():
        R = [r for r in rows if r["set"] in ss]
        n = sum(nref_total(s) for s in ss)
        tp = [r for r in R if r["iou"] >= 0.1]; fp = [r for r in R if r["iou"] < 0.1]
        def c(r): return r["inside"] - r["bone"] if not math.isnan(r["bone"]) else 0.0
        print(g, "n ref", n, "cands", len(R), "tp", len(tp))
        for name, L in (("tp", tp), ("fp", fp)):
            a = np.array([abs(c(r)) for r in L]); cn = np.array([abs(c(r)) / r["sd"] if r["sd"] == r["sd"] and r["sd"] > 0 else 0 for r in L])
            nan = sum(math.isnan(r["bone"]) for r in L)
            print(f"  {name}: |contrast| q25/50/75 {np.percentile(a,[25,50,75]).round(0)}  |c|/sd {np.percentile(cn,[25,50,75]).round(2)} nan {nan}  score med {np.median([r['score'] for r in L]):.2f}")
        for label, f in (("score", lambda r: r["score"]),
                         ("score*min(1,|c|/150)", lambda r: r["score"] * min(1, abs(c(r)) / 150)),
                         ("score*min(1,|c|/100)", lambda r: r["score"] * min(1, abs(c(r)) / 100)),
                         ("score*min(1,|c|/sd)", lambda r: r["score"] * min(1, abs(c(r)) / r["sd"]) if r["sd"] == r["sd"] and r["sd"] > 0 else 0),
                         ("score*min(1,|c|/(2sd))", lambda r: r["score"] * min(1, abs(c(r)) / (2*r["sd"])) if r["sd"] == r["sd"] and r["sd"] > 0 else 0),
                         ):
            items = [(f(r), (r["set"], r["case"]), r["ref"], r["iou"]) for r in R]
            print(f"  {label:26s} AP@0.1 {100*ap(items, n, 0.1):.1f}  AP@0.3 {100*ap(items, n, 0.3):.1f}")
