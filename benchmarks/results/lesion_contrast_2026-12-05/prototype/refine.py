# Prototype of the 21st sitting, kept as run (how lesion_contrast.py's values were chosen; README 'How the values
# were chosen'). Reads ../lesion_extent_2026-12-05/run.sh's arm "now" in /tmp/lesion_extent; sys.path /tmp/s21 = this folder.
"""Prototype: candidate extents snapped to the CT's lesion contrast; AP with contrast rescoring."""
import glob, json, os, sys, math
import cc3d, numpy as np, SimpleITK as sitk
from scipy import ndimage
O = "/tmp/lesion_extent"; Q = "/tmp/vf_protocol_q7"; H = "/tmp/held_out"; T = "/tmp/tta"
sets = {"hs2": (f"{H}/s2/extra_hushift", ".nii.gz", f"{H}/hs2_ref"),
        "ld4": (f"{H}/s4/extra_lowdose", ".nii.gz", f"{H}/ld4_ref"),
        "ld0": (f"{T}/ld0/extra_lowdose", ".nii.gz", f"{T}/ld0_ref"),
        "fold0": (f"{Q}/inputs/fold0", "_0000.nii.gz", f"{Q}/reference"),
        "fold5": (f"{Q}/inputs/fold5", "_0000.nii.gz", f"{Q}/reference")}
BAND_MM = float(sys.argv[1]); SIGMA = float(sys.argv[2]); KCLEAR = float(sys.argv[3]); tag = sys.argv[4]
RIM = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
rows = []
for s, (ctd, suf, ref) in sets.items():
    ev = json.load(open(f"{O}/eval_now_{s}.json"))["cases"]
    for case, c in sorted(ev.items()):
        if c.get("status") != "ok":
            continue
        cp = f"{O}/now_{s}/{case}_lesion_candidates.nii.gz"
        cands = sitk.GetArrayFromImage(sitk.ReadImage(cp))
        img = sitk.ReadImage(f"{ctd}/{case}{suf}")
        sp = np.array(img.GetSpacing()[::-1])
        hu = sitk.GetArrayFromImage(img).astype(np.float32)
        vert = sitk.GetArrayFromImage(sitk.ReadImage(f"{O}/now_{s}/{case}.nii.gz"))
        rp = f"{ref}/{case}_lesion.nii.gz"
        truth = cc3d.connected_components(sitk.GetArrayFromImage(sitk.ReadImage(rp)) > 0) if os.path.exists(rp) else np.zeros_like(cands)
        tsize = np.bincount(truth.ravel())
        info = json.load(open(f"{O}/now_{s}/{case}.json"))
        objs = ndimage.find_objects(cands)
        pad = np.ceil(np.maximum(8, (BAND_MM + 6) / sp)).astype(int)
        for row in info["lesion_candidates"]:
            i = row["id"]; sl = objs[i - 1]
            if sl is None: continue
            big = tuple(slice(max(a.start - p, 0), a.stop + p) for a, p in zip(sl, pad))
            m = cands[big] == i
            h = hu[big]; v = vert[big] > 0
            shell = ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=2) & v & (h < 400)
            core = v & (ndimage.distance_transform_edt(v, sampling=sp) > RIM) if RIM > 0 else v
            mc = m & core if (m & core).any() else m
            new = m
            metal = float((h[m] >= 2000).mean()); hmax = float(np.percentile(h[m], 90))
            contrast, sd = 0.0, float("nan")
            if shell.sum() > 10:
                bone = float(np.median(h[shell])); sd = float(h[shell].std())
                contrast = float(h[mc].mean()) - bone
                if abs(contrast) >= KCLEAR * sd and BAND_MM > 0:
                    hs = ndimage.gaussian_filter(h, SIGMA / sp) if SIGMA > 0 else h
                    side = (hs - bone) * np.sign(contrast) > abs(contrast) / 2
                    # the band: voxels within BAND_MM of the candidate, inside the predicted vertebra
                    dist = ndimage.distance_transform_edt(~m, sampling=sp)
                    region = (dist <= BAND_MM) & (core | m)
                    seed = m & side
                    if seed.any():
                        lab = cc3d.connected_components(region & side)
                        keep = np.unique(lab[seed]); keep = keep[keep > 0]
                        new = np.isin(lab, keep)
            t = truth[big]; ids = np.unique(t[new | m]); best, biou, obest = 0, 0.0, 0.0
            for j in ids[ids > 0]:
                inter = ((t == j) & new).sum(); iou = inter / (tsize[j] + new.sum() - inter)
                ointer = ((t == j) & m).sum(); oiou = ointer / (tsize[j] + m.sum() - ointer)
                if iou > biou: best, biou = int(j), float(iou)
                obest = max(obest, oiou)
            rows.append(dict(set=s, case=case, id=i, score=row["score"], ref=best, iou=biou, oiou=obest,
                             contrast=contrast, sd=sd, metal=metal, p90=hmax, grew=int(new.sum()) - int(m.sum())))
json.dump(rows, open(f"ref_{tag}.json", "w"))
