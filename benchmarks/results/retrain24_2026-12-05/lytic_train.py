"""Contrast of fold 0's training lesions (lesionsTr) against their vertebra's trabecular bone (as missed_lesions.py
 measures it); lytic = darker than that bone. Arguments: RAW_DATASET_FOLDER GROUND_TRUTH_INDEX."""
import glob, json, os, sys
import cc3d, numpy as np, SimpleITK as sitk
from scipy import ndimage
raw, index = sys.argv[1], sys.argv[2]
split = json.load(open(f"{raw.replace('nnUNet_raw','nnUNet_preprocessed')}/splits_final.json"))[0]["train"]
recs = {c["case"]: c for c in json.load(open(index))["cases"]}
rows = []
for path in sorted(glob.glob(f"{raw}/lesionsTr/*.nii.gz")):
    case = os.path.basename(path)[:-7]
    if case not in split: continue
    ids = sitk.GetArrayFromImage(sitk.ReadImage(path)); hu = sitk.GetArrayFromImage(sitk.ReadImage(f"{raw}/imagesTr/{case}_0000.nii.gz")).astype(np.float32)
    vert = sitk.GetArrayFromImage(sitk.ReadImage(f"{raw}/labelsTr/{case}.nii.gz")); vert = (vert > 0) & (vert < 100)
    rec = recs.get(case, {}); kinds = {l["id"]: l["type"] for l in rec.get("lesions", [])}
    lab = cc3d.connected_components(ids > 0)
    for k in range(1, int(lab.max()) + 1):
        m = lab == k
        bone = ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=2) & vert & (hu < 400)
        c = float(hu[m].mean() - hu[bone].mean()) if bone.any() else float("nan")
        kind = "blastic" if c > 0 else "lytic"  # by sign: the converted lesion ids need not be the index's
        rows.append((case, kind, c, c / rec["scan"]["noise_sd"] if rec else float("nan"), float(hu[bone].mean()) if bone.any() else float("nan")))
for kind in ("lytic", "blastic"):
    r = [x for x in rows if x[1] == kind]
    c = np.array([x[2] for x in r]); n = np.array([x[3] for x in r]); b = np.array([x[4] for x in r])
    print(f"{kind}: {len(r)} lesions in {len({x[0] for x in r})} training cases; contrast median {np.nanmedian(c):.0f} HU "
          f"(quartiles {np.nanpercentile(c,25):.0f}, {np.nanpercentile(c,75):.0f}); |CNR| median {np.nanmedian(abs(n)):.1f}; "
          f"|contrast| < 50 HU: {int((abs(c) < 50).sum())}; bone around median {np.nanmedian(b):.0f} HU")
