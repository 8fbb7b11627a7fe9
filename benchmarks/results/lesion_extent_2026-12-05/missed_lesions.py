"""Which true lesions no candidate finds (IoU < 0.1 with every candidate): their volume and their contrast against
the bone around them (mean HU inside minus mean HU of the labelled vertebra within 3 voxels: < 0 lytic, > 0
blastic). Arguments: OUT_DIR (run.sh's $O) and SET:CT_FOLDER:CT_SUFFIX:REFERENCE ..., the candidates being those of
the arm "now" (OUT_DIR/now_<SET>)."""
import glob
import json
import os
import sys

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def lesion_rows(out_dir, name, ct_dir, suffix, ref):
    for path in sorted(glob.glob(f"{ref}/*_lesion.nii.gz")):
        case = os.path.basename(path)[:-len("_lesion.nii.gz")]
        ct_path, cand_path = f"{ct_dir}/{case}{suffix}", f"{out_dir}/now_{name}/{case}_lesion_candidates.nii.gz"
        if not (os.path.exists(ct_path) and os.path.exists(cand_path)):
            continue  # a reference phantom this set did not predict
        lesions = cc3d.connected_components(sitk.GetArrayFromImage(sitk.ReadImage(path)) > 0)
        ct = sitk.ReadImage(ct_path)
        hu = sitk.GetArrayFromImage(ct).astype(np.float32)
        vertebrae = sitk.GetArrayFromImage(sitk.ReadImage(f"{ref}/{case}.nii.gz"))
        vertebrae = (vertebrae > 0) & (vertebrae < 100)  # 255: the ignore label of cut vertebrae
        cands = sitk.GetArrayFromImage(sitk.ReadImage(cand_path))
        for k in range(1, int(lesions.max()) + 1):
            m = lesions == k
            ring = ndimage.binary_dilation(m, iterations=3) & ~m & vertebrae
            ious = [((cands == i) & m).sum() / ((cands == i) | m).sum() for i in np.unique(cands[m]) if i > 0]
            yield {"set": name, "case": case, "ml": m.sum() * np.prod(ct.GetSpacing()) / 1000,
                   "contrast": float(hu[m].mean() - hu[ring].mean()) if ring.any() else float("nan"),
                   "iou": max(ious, default=0.0)}


if __name__ == "__main__":
    rows = [r for spec in sys.argv[2:] for r in lesion_rows(sys.argv[1], *spec.split(":"))]
    for kind, test in (("lytic (darker than the bone around it)", lambda r: r["contrast"] < 0),
                       ("blastic (brighter)", lambda r: r["contrast"] >= 0)):
        group = [r for r in rows if test(r)]
        found = [r for r in group if r["iou"] >= 0.1]
        print(f"{kind}: {len(group)} lesions, {len(found)} found by a candidate at IoU >= 0.1; volume median "
              f"{np.median([r['ml'] for r in group]):.2f} ml, contrast median {np.median([r['contrast'] for r in group]):.0f} HU")
    for r in sorted(rows, key=lambda r: (r["iou"] >= 0.1, r["set"], r["case"])):
        if r["iou"] < 0.1:
            print(f"  missed: {r['set']} {r['case']} {r['ml']:.2f} ml, contrast {r['contrast']:.0f} HU, best IoU {r['iou']:.2f}")
