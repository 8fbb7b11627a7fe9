"""Which true lesions no candidate finds (IoU < 0.1 with every candidate): their kind, volume and contrast against
the trabecular bone of their own vertebra: mean HU inside minus the mean HU of the labelled vertebra's voxels 2 to 6
voxels from the lesion and below 400 HU (the cortex left out: a ring that holds cortex reads a lesion as darker than
the bone it sits in). With the phantoms' index (ground_truth/index.json), the kind is the generator's and the
contrast is also given per voxel against the scan's noise (CNR); without it, a lesion brighter than 500 HU is
blastic. Arguments: OUT_DIR (run.sh's $O) and SET:CT_FOLDER:CT_SUFFIX:REFERENCE[:INDEX] ..., the candidates being
those of the arm "now" (OUT_DIR/now_<SET>). ``--all`` (first): every lesion, found or not."""
import glob
import json
import os
import sys

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

CORTEX_HU = 400.0  # trabecular bone stays below it, cortex and blastic lesions above
BLASTIC_HU = 500.0


def read_index(path):
    """Phantom records by both their converted name (``case``) and their source name (``case_id``)."""
    if not path or not os.path.exists(path):
        return {}
    cases = json.load(open(path))["cases"]
    return {**{c["case_id"]: c for c in cases}, **{c["case"]: c for c in cases}}


def lesion_rows(out_dir, name, ct_dir, suffix, ref, index=None):
    records = read_index(index)
    for path in sorted(glob.glob(f"{ref}/*_lesion.nii.gz")):
        case = os.path.basename(path)[:-len("_lesion.nii.gz")]
        ct_path, cand_path = f"{ct_dir}/{case}{suffix}", f"{out_dir}/now_{name}/{case}_lesion_candidates.nii.gz"
        if not (os.path.exists(ct_path) and os.path.exists(cand_path)):
            continue  # a reference phantom this set did not predict
        record = records.get(case, {})
        kinds = {les["id"]: les["type"] for les in record.get("lesions", [])}
        ids = sitk.GetArrayFromImage(sitk.ReadImage(path))
        lesions = cc3d.connected_components(ids > 0)
        ct = sitk.ReadImage(ct_path)
        hu = sitk.GetArrayFromImage(ct).astype(np.float32)
        vertebrae = sitk.GetArrayFromImage(sitk.ReadImage(f"{ref}/{case}.nii.gz"))
        vertebrae = (vertebrae > 0) & (vertebrae < 100)  # 255: the ignore label of cut vertebrae
        cands = sitk.GetArrayFromImage(sitk.ReadImage(cand_path))
        for k in range(1, int(lesions.max()) + 1):
            m = lesions == k
            bone = (ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=2)
                    & vertebrae & (hu < CORTEX_HU))
            ious = [((cands == i) & m).sum() / ((cands == i) | m).sum() for i in np.unique(cands[m]) if i > 0]
            contrast = float(hu[m].mean() - hu[bone].mean()) if bone.any() else float("nan")
            kind = kinds.get(int(np.bincount(ids[m]).argmax()))
            yield {"set": name, "case": case, "ml": m.sum() * np.prod(ct.GetSpacing()) / 1000, "contrast": contrast,
                   "kind": kind or ("blastic" if hu[m].mean() > BLASTIC_HU else "lytic"),
                   "cnr": contrast / record["scan"]["noise_sd"] if record else float("nan"),
                   "iou": max(ious, default=0.0)}


if __name__ == "__main__":
    every = sys.argv[1] == "--all"
    args = sys.argv[1 + every:]
    rows = [r for spec in args[1:] for r in lesion_rows(args[0], *spec.split(":"))]
    for kind in ("lytic", "blastic"):
        group = [r for r in rows if r["kind"] == kind]
        if not group:
            continue
        found = [r for r in group if r["iou"] >= 0.1]
        found_contrast = np.median([r["contrast"] for r in found]) if found else float("nan")
        print(f"{kind}: {len(group)} lesions, {len(found)} found by a candidate at IoU >= 0.1 "
              f"({sum(r['iou'] >= 0.3 for r in group)} at 0.3); "
              f"volume median {np.median([r['ml'] for r in group]):.2f} ml, "
              f"contrast to the trabecular bone median {np.median([r['contrast'] for r in group]):.0f} HU "
              f"(found ones {found_contrast:.0f}), |CNR| median {np.nanmedian([abs(r['cnr']) for r in group]):.1f}")
    for r in sorted(rows, key=lambda r: (r["iou"] >= 0.1, r["set"], r["case"])):
        if every or r["iou"] < 0.1:
            print(f"  {'found' if r['iou'] >= 0.1 else 'missed'}: {r['set']} {r['case']} {r['kind']} {r['ml']:.2f} ml, "
                  f"contrast {r['contrast']:.0f} HU, CNR {r['cnr']:.1f}, best IoU {r['iou']:.2f}")
