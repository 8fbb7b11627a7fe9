# Prototype of the 21st sitting, kept as run (how lesion_contrast.py's values were chosen; README 'How the values
# were chosen'). Reads ../lesion_extent_2026-12-05/run.sh's arm "now" in /tmp/lesion_extent; sys.path /tmp/s21 = this folder.
"""Per candidate: contrast against the predicted vertebra's nearby trabecular bone, and match to true lesions."""
import glob, json, os, sys
import cc3d, numpy as np, SimpleITK as sitk
from scipy import ndimage
O = "/tmp/lesion_extent"; Q = "/tmp/vf_protocol_q7"; H = "/tmp/held_out"; T = "/tmp/tta"
sets = {"hs2": (f"{H}/s2/extra_hushift", ".nii.gz", f"{H}/hs2_ref"),
        "ld4": (f"{H}/s4/extra_lowdose", ".nii.gz", f"{H}/ld4_ref"),
        "ld0": (f"{T}/ld0/extra_lowdose", ".nii.gz", f"{T}/ld0_ref"),
        "fold0": (f"{Q}/inputs/fold0", "_0000.nii.gz", f"{Q}/reference"),
        "fold5": (f"{Q}/inputs/fold5", "_0000.nii.gz", f"{Q}/reference")}
arm = sys.argv[1] if len(sys.argv) > 1 else "now"
rows = []
for s, (ctd, suf, ref) in sets.items():
    ev = json.load(open(f"{O}/eval_{arm}_{s}.json"))["cases"]
    for case, c in sorted(ev.items()):
        if c.get("status") != "ok":
            continue
        cp = f"{O}/{arm}_{s}/{case}_lesion_candidates.nii.gz"
        if not os.path.exists(cp):
            continue
        cands = sitk.GetArrayFromImage(sitk.ReadImage(cp))
        img = sitk.ReadImage(f"{ctd}/{case}{suf}")
        hu = sitk.GetArrayFromImage(img).astype(np.float32)
        vert = sitk.GetArrayFromImage(sitk.ReadImage(f"{O}/{arm}_{s}/{case}.nii.gz"))
        rp = f"{ref}/{case}_lesion.nii.gz"
        truth = cc3d.connected_components(sitk.GetArrayFromImage(sitk.ReadImage(rp)) > 0) if os.path.exists(rp) else np.zeros_like(cands)
        info = json.load(open(f"{O}/{arm}_{s}/{case}.json"))
        nref = int(truth.max())
        objs = ndimage.find_objects(cands)
        for row in info["lesion_candidates"]:
            i = row["id"]
            sl = objs[i - 1]
            if sl is None:
                continue
            big = tuple(slice(max(a.start - 8, 0), a.stop + 8) for a in sl)
            m = cands[big] == i
            h = hu[big]; v = vert[big] > 0
            shell = ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=2) & v & (h < 400)
            inside = float(h[m].mean())
            bone = float(np.median(h[shell])) if shell.sum() > 10 else float("nan")
            sd = float(h[shell].std()) if shell.sum() > 10 else float("nan")
            t = truth[big]; ids, n = np.unique(t[m], return_counts=True)
            best, biou = 0, 0.0
            for j in ids[ids > 0]:
                tm = truth == j
                iou = (tm[big] & m).sum() / (tm.sum() + m.sum() - (tm[big] & m).sum())
                if iou > biou: best, biou = int(j), float(iou)
            rows.append(dict(set=s, case=case, id=i, score=row["score"], lesion=row["lesion"], level=row["level_code"],
                             ml=row["volume_ml"], inside=inside, bone=bone, sd=sd, ref=best, iou=biou, nref=nref))
        print(s, case, len(info["lesion_candidates"]), nref, file=sys.stderr)
json.dump(rows, open(f"cands_{arm}.json", "w"))
