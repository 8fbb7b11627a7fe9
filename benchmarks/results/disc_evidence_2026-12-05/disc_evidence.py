"""Where are the discs? The network's instance boundaries against two readings of the CT (2026-12-05).

    python disc_evidence.py --cases IN --pred PRED --ref REF [--real-pred REALPRED]

For every case of IN (CT files) with the built-in model's prediction PRED/<case> and the truth REF/<case> (VerSe
codes, 255 = cut by the field of view), along the head-foot axis (LPS, axial slices):
* the body core of each slice: the spine mask's voxels in the anterior 35 % of its AP extent, within 10 mm of its
  median left-right position; its median HU is the profile;
* truth discs: the slices where the truth's most frequent code in its own body core changes (the midpoint);
* "network": the same changes in the prediction's own body core (its instance boundaries);
* "dark valleys": minima of the profile (1.5 mm smoothing) with a prominence of 40 HU, 12 mm apart;
* "bright endplates": maxima above the running median (25 mm) by REL x (95th percentile - median), peaks within
  10 mm merged into one disc.
A detection within 5 mm of a truth disc is a hit (one each). Also: how many predicted instances straddle two truth
vertebrae (each at least 25 % of the instance's voxels that lie in a scored truth vertebra), per region.
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.signal import find_peaks

from vertebraformer_nn import labels as L

TOL_MM = 5.0


def read_lps(path):
    return sitk.DICOMOrient(sitk.ReadImage(path), "LPS")


def body_core_profile(ct, mask, spacing_x, ap_frac=0.35, half_width_mm=10.0, min_vox=20):
    prof = np.full(ct.shape[0], np.nan)
    core = np.zeros(mask.shape, bool)
    for z in range(ct.shape[0]):
        m = mask[z]
        if m.sum() < min_vox:
            continue
        y, x = np.nonzero(m)
        y0, y1 = np.percentile(y, 1), np.percentile(y, 99)
        yy, xx = np.ogrid[:m.shape[0], :m.shape[1]]
        c = m & (yy < y0 + ap_frac * (y1 - y0)) & (np.abs(xx - np.median(x)) * spacing_x < half_width_mm)
        if c.sum() >= min_vox // 2:
            core[z], prof[z] = c, np.median(ct[z][c])
    return prof, core


def code_changes(labels, core):
    mode = np.zeros(labels.shape[0], int)
    for z in range(labels.shape[0]):
        v = labels[z][core[z]]
        v = v[(v > 0) & (v < 255)]
        mode[z] = np.bincount(v).argmax() if v.size else 0
    rows = np.nonzero(mode)[0]
    return np.array([(a + b) / 2 for a, b in zip(rows, rows[1:]) if mode[a] != mode[b]])


def _filled(prof):
    ok = ~np.isnan(prof)
    p = prof.copy()
    idx = np.arange(len(p))
    p[~ok] = np.interp(idx[~ok], idx[ok], p[ok])
    return p, ok


def dark_valleys(prof, dz, prominence=40.0):
    p, ok = _filled(prof)
    p = ndi.gaussian_filter1d(p, 1.5 / dz)
    peaks, _ = find_peaks(-p, prominence=prominence, distance=max(1, int(12.0 / dz)))
    return np.array([k for k in peaks if ok[k]], float)


def bright_endplates(prof, dz, rel):
    p, ok = _filled(prof)
    if 1.0 / dz > 0.3:
        p = ndi.gaussian_filter1d(p, 1.0 / dz)
    base = ndi.median_filter(p, size=max(3, int(round(25.0 / dz)) | 1))
    thr = base + rel * np.maximum(np.percentile(p[ok], 95) - base, 1.0)
    peaks = [k for k in find_peaks(p, height=thr)[0] if ok[k]]
    clusters = []
    for k in peaks:
        if clusters and (k - clusters[-1][-1]) * dz <= 10.0:
            clusters[-1].append(k)
        else:
            clusters.append([k])
    return np.array([np.mean(c) for c in clusters], float)


def hits(found, truth, tol):
    used, tp = set(), 0
    for t in truth:
        near = [(abs(f - t), i) for i, f in enumerate(found) if i not in used and abs(f - t) <= tol]
        if near:
            used.add(min(near)[1])
            tp += 1
    return np.array([tp, len(found), len(truth)])


def straddling(pred, truth):
    name = {v: k for k, v in L.VERSE_CODE.items()}
    out = {}
    for lab in [v for v in np.unique(pred) if 0 < v < 100]:
        v = truth[pred == lab]
        v = v[(v > 0) & (v < 255)]
        if v.size < 100:
            continue
        codes, counts = np.unique(v, return_counts=True)
        region = name.get(int(codes[np.argmax(counts)]), "?")[0]
        n = out.setdefault(region, [0, 0])
        n[0] += 1
        n[1] += int((counts / v.size >= 0.25).sum() >= 2)
    return out


def case_rows(ct_path, pred_path, ref_path, rels):
    ct_img = read_lps(ct_path)
    dz, sx = ct_img.GetSpacing()[2], ct_img.GetSpacing()[0]
    ct = sitk.GetArrayFromImage(ct_img).astype(np.float32)
    pred = sitk.GetArrayFromImage(read_lps(pred_path))
    truth = sitk.GetArrayFromImage(read_lps(ref_path))
    prof, pcore = body_core_profile(ct, (pred > 0) & (pred < 100), sx)
    _, tcore = body_core_profile(ct, (truth > 0) & (truth < 255), sx)
    discs = code_changes(truth, tcore) * dz
    found = {"network": code_changes(pred, pcore) * dz, "dark valleys": dark_valleys(prof, dz) * dz}
    found.update({f"bright endplates {r}": bright_endplates(prof, dz, r) * dz for r in rels})
    return {k: hits(v, discs, TOL_MM) for k, v in found.items()}, straddling(pred, truth)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--rel", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--real", nargs=3, action="append", default=[], metavar=("CT", "PRED", "REF"),
                    help="a real case, listed on its own")
    args = ap.parse_args()
    total, regions = {}, {}
    for ct_path in sorted(glob.glob(os.path.join(args.cases, "*.nii.gz"))):
        case = os.path.basename(ct_path)
        rows, strad = case_rows(ct_path, os.path.join(args.pred, case), os.path.join(args.ref, case), args.rel)
        for k, v in rows.items():
            total[k] = total.get(k, 0) + v
        for r, (n, k) in strad.items():
            regions.setdefault(r, np.zeros(2, int))[:] += (n, k)
    print(f"| discs found (phantoms, {TOL_MM:g} mm) | hits | found | truth discs | precision | recall |")
    print("|---|---|---|---|---|---|")
    for k, (tp, nf, nt) in total.items():
        print(f"| {k} | {tp} | {nf} | {nt} | {tp / max(nf, 1):.2f} | {tp / max(nt, 1):.2f} |")
    print()
    for r in "CTL":
        if r in regions:
            n, k = regions[r]
            print(f"{r}: {k} of {n} predicted instances straddle two truth vertebrae ({100 * k / n:.0f} %)")
    for ct_path, pred_path, ref_path in args.real:
        rows, _ = case_rows(ct_path, pred_path, ref_path, args.rel)
        print(f"{os.path.basename(ct_path)}: " + "; ".join(f"{k} {v[0]}/{v[2]} ({v[1]} found)" for k, v in rows.items()))


if __name__ == "__main__":
    main()
